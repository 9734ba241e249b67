"""Choosing a headless OpenGL backend for MuJoCo before MuJoCo is imported.

MuJoCo reads ``MUJOCO_GL`` once, at import. On a machine without a display we
pick EGL when its library is present, else OSMesa, so that rendering works
headless without the user setting anything. An explicit ``MUJOCO_GL`` wins.
"""

from __future__ import annotations

import ctypes.util
import os

INSTALL_HINT = (
    "headless rendering needs EGL or OSMesa: on Debian/Ubuntu run "
    "'apt-get install libegl1 libgl1-mesa-dri' (then MUJOCO_GL=egl) or "
    "'apt-get install libosmesa6' (then MUJOCO_GL=osmesa)"
)


def headless_backend() -> str | None:
    """'egl' or 'osmesa' if one of their libraries can be found, else None."""
    if ctypes.util.find_library("EGL"):
        return "egl"
    if ctypes.util.find_library("OSMesa"):
        return "osmesa"
    return None


def select_headless_gl() -> None:
    """Set MUJOCO_GL for a display-less machine unless the user chose one."""
    if os.environ.get("MUJOCO_GL") or os.environ.get("DISPLAY"):
        return
    backend = headless_backend()
    if backend is not None:
        os.environ["MUJOCO_GL"] = backend

"""Rendering frames of recorded body states with MuJoCo's offscreen renderer."""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

from connectofly.videos.gl import INSTALL_HINT


def make_renderer(model: mujoco.MjModel, size: tuple[int, int]) -> mujoco.Renderer:
    """An offscreen renderer of ``size`` = (height, width) px, or a clear error."""
    height, width = size
    if height > model.vis.global_.offheight or width > model.vis.global_.offwidth:
        model.vis.global_.offheight = max(height, model.vis.global_.offheight)
        model.vis.global_.offwidth = max(width, model.vis.global_.offwidth)
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as error:  # MuJoCo raises several types for a missing GL
        raise RuntimeError(f"could not create an OpenGL context ({error}); {INSTALL_HINT}") from error
    # Shadows and reflections double the cost of a software-rendered frame.
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
    return renderer


class FrameState(NamedTuple):
    """What a video frame shows: the world's pose at one instant, what the eyes saw,
    and what the nervous system did.

    Attributes:
        time: simulated time, s.
        qpos: the model's generalized positions.
        mocap_pos: (nmocap, 3) positions of the arena objects, mm.
        mocap_quat: (nmocap, 4) their orientations.
        vision: (2, 721, 2) compound-eye readout, or None without vision.
        activity: the agent's neural activity (see
            :func:`connectofly.videos.panels.activity_panel`), or None.
    """

    time: float
    qpos: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray
    vision: np.ndarray | None = None
    activity: dict | None = None


def snapshot(data: mujoco.MjData, vision: np.ndarray | None = None, activity: dict | None = None) -> FrameState:
    """A copy of ``data``'s pose (and the eye readout) for rendering later, with
    the neural ``activity`` stored as given."""
    return FrameState(
        float(data.time), data.qpos.copy(), data.mocap_pos.copy(), data.mocap_quat.copy(),
        None if vision is None else np.array(vision), activity,
    )


def render_frame(
    renderer: mujoco.Renderer,
    model: mujoco.MjModel,
    data: mujoco.MjData,
    frame: FrameState,
    camera: int,
) -> np.ndarray:
    """RGB image (H, W, 3) uint8 of the world posed as in ``frame``, seen from ``camera``."""
    data.qpos[:] = frame.qpos
    data.mocap_pos[:] = frame.mocap_pos
    data.mocap_quat[:] = frame.mocap_quat
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)
    renderer.update_scene(data, camera=camera)
    return renderer.render()

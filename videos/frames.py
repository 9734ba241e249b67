"""Rendering frames of recorded body states with MuJoCo's offscreen renderer."""

from __future__ import annotations

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


def render_qpos(
    renderer: mujoco.Renderer,
    model: mujoco.MjModel,
    data: mujoco.MjData,
    qpos: np.ndarray,
    camera: int,
) -> np.ndarray:
    """RGB frame (H, W, 3) uint8 of the body posed at ``qpos``, seen from ``camera``."""
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)
    renderer.update_scene(data, camera=camera)
    return renderer.render()

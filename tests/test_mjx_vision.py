"""Visual arenas on the MJX backend: objects placed from the JAX trajectory, eyes rendered from mjx.Data."""

import jax
import mujoco
import numpy as np
import pytest

from connectofly.agents.visual_taxis import object_bearing, ommatidium_azimuths, ommatidium_directions
from connectofly.envs import arena, mjx_physics, raycast
from connectofly.envs.body import BodyIndex, build_primitive_model
from connectofly.envs.visual_tasks import make_visual_task, sample_taxis


@pytest.fixture(scope="module")
def taxis_world():
    task = make_visual_task("visual_taxis")
    model = build_primitive_model(task.objects)
    arena.check_mocap_layout(model, task.objects)
    body = mjx_physics.load(model)
    eye = (raycast.make_eye_rays(), raycast.select_scene_geoms(model), raycast.eye_camera_ids(model))
    return model, body, eye


def _place(body, data, trajectory):
    """``data`` with the arena objects where ``trajectory`` has them at ``data.time``."""
    pos, quat = arena.mocap_poses(trajectory, data.time)
    return mujoco.mjx.forward(body.model, data.replace(mocap_pos=pos, mocap_quat=quat))


def test_mjx_eye_matches_the_c_eye_on_the_same_arena(taxis_world):
    model, body, (rays, selection, cameras) = taxis_world
    trajectory = sample_taxis(jax.random.key(1))
    start = mjx_physics.reset(body, model, model.key_qpos[0])
    mjx_data = jax.jit(lambda d, tr: _place(body, d, tr))(start, trajectory)
    from_mjx = np.asarray(jax.jit(raycast.render_from_data)(rays, selection, cameras, mjx_data))

    c_data = mujoco.MjData(model)
    c_data.qpos[:] = model.key_qpos[0]
    c_data.mocap_pos[:], c_data.mocap_quat[:] = arena.mocap_poses(arena.to_numpy(trajectory), 0.0)
    mujoco.mj_forward(model, c_data)
    from_c = np.asarray(raycast.render_from_data(rays, selection, cameras, c_data))
    assert (from_c.sum(-1) < 0.1).sum() >= 1  # the target is in view
    np.testing.assert_allclose(from_mjx, from_c, atol=2e-3)


def test_batched_mjx_flies_each_see_their_own_target(taxis_world):
    model, body, (rays, selection, cameras) = taxis_world
    keys = jax.random.split(jax.random.key(7), 2)
    trajectories = jax.vmap(sample_taxis)(keys)

    start = mjx_physics.reset(body, model, model.key_qpos[0])

    @jax.jit
    @jax.vmap
    def eyes(trajectory):
        return raycast.render_from_data(rays, selection, cameras, _place(body, start, trajectory))

    readouts = np.asarray(eyes(trajectories))
    c_data = mujoco.MjData(model)
    c_data.qpos[:] = model.key_qpos[0]
    mujoco.mj_forward(model, c_data)
    azimuths = ommatidium_azimuths(ommatidium_directions(model, c_data, BodyIndex.from_model(model).thorax_body))
    for readout, origin in zip(readouts, np.asarray(trajectories.origin)):
        true_bearing = np.arctan2(origin[0, 1], origin[0, 0])
        assert object_bearing(readout, azimuths) == pytest.approx(true_bearing, abs=np.deg2rad(8))

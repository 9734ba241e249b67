"""The optic lobes in the control loop, on the C and the MJX backend.

Reference: the same network run offline (``optic_lobe.simulate``) on the vision
frames the loop saw; the loop must step it exactly once per new frame, carrying
the state between control steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.agents.optic_lobe_vision import EyeLobes, WithOpticLobes, eye_lobes, lobe_input, mirror_right_eye
from connectofly.agents.visual_taxis import VisualTaxisAgent
from connectofly.circuits import hex_lattice
from connectofly.circuits import optic_lobe as ol
from connectofly.envs.fly_env import FlyEnv

CONTROL_DT, VISION_HZ, N_STEPS = 1e-3, 250.0, 24  # 4 control steps per frame, 6 frames


@pytest.fixture(scope="module")
def lobes() -> EyeLobes:
    return eye_lobes(control_dt=CONTROL_DT, vision_hz=VISION_HZ)


def _offline(lobes: EyeLobes, frames: np.ndarray) -> np.ndarray:
    """(2, n_nodes) voltages after running ``frames`` (n, 2, 721) from grey."""
    grey = ol.steady_state(lobes.params, lobes.frame_dt)
    luminance = np.moveaxis(np.asarray(lobe_input(frames)), 1, 0)  # (2, n, 721)
    return np.stack([
        np.asarray(ol.simulate(lobes.params, grey, jnp.asarray(eye), lobes.frame_dt)[0].voltage)
        for eye in luminance
    ])


def test_c_env_loop_steps_the_lobes_once_per_vision_frame(lobes):
    env = FlyEnv(task="visual_taxis", duration=1.0, control_dt=CONTROL_DT, vision_hz=VISION_HZ)
    agent = WithOpticLobes(VisualTaxisAgent.for_env(env), lobes)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    params, carry = agent.default_params(), agent.init(rng)
    seen = []
    for _ in range(N_STEPS):
        seen.append(obs["vision"].copy())
        carry, action = agent.act(params, carry, obs, rng)
        obs, *_ = env.step(action)
    seen = np.array(seen)
    frames = seen[:: lobes.observations_per_frame]
    # the env holds each frame for 4 observations and the frames change as the fly moves
    np.testing.assert_array_equal(seen[1], seen[0])
    assert np.abs(frames[-1] - frames[0]).max() > 1e-3
    _, lobe_carry = carry
    assert int(lobe_carry.observations) == N_STEPS
    np.testing.assert_allclose(lobes.voltage(lobe_carry), _offline(lobes, frames), atol=1e-5)
    # the eyes drive the lobes: photoreceptors and lamina moved away from grey
    grey = lobes.init()
    for cell_type, at_least in (("R1", 0.1), ("L1", 1e-3)):  # 24 ms, tau 50 ms
        moved = lobes.activity(lobe_carry, cell_type) - lobes.activity(grey, cell_type)
        assert np.abs(np.asarray(moved)).max() > at_least, cell_type


def test_lobes_run_inside_a_jitted_vmapped_mjx_rollout(lobes):
    from mujoco import mjx

    from connectofly.envs import arena, mjx_physics, raycast
    from connectofly.envs.body import build_primitive_model
    from connectofly.envs.fly_env import substeps_per_control
    from connectofly.envs.visual_tasks import make_visual_task, sample_taxis

    task = make_visual_task("visual_taxis")
    model = build_primitive_model(task.objects)
    body = mjx_physics.load(model)
    rays, selection, cameras = (
        raycast.make_eye_rays(), raycast.select_scene_geoms(model), raycast.eye_camera_ids(model)
    )
    neutral = jnp.concatenate([jnp.asarray(model.key_ctrl[0][body.index.joint_actuators]), jnp.zeros(6)])
    n_substeps = substeps_per_control(CONTROL_DT)

    def rollout(trajectory):
        def control_step(carry, _):
            data, lobe_carry = carry
            pos, quat = arena.mocap_poses(trajectory, data.time)
            data = data.replace(mocap_pos=pos, mocap_quat=quat)
            data = mjx.forward(body.model, data)  # geom poses for the eyes
            vision = raycast.render_from_data(rays, selection, cameras, data)
            lobe_carry = lobes.advance(lobe_carry, vision)
            data = mjx_physics.step(body, data, neutral, n_substeps)
            return (data, lobe_carry), vision

        start = mjx_physics.reset(body, model, model.key_qpos[0])
        (_, lobe_carry), visions = jax.lax.scan(
            control_step, (start, lobes.init()), None, length=N_STEPS // 2
        )
        return lobe_carry, visions

    trajectories = jax.vmap(sample_taxis)(jax.random.split(jax.random.key(5), 2))
    carries, visions = jax.jit(jax.vmap(rollout))(trajectories)
    visions, voltages = np.asarray(visions), np.asarray(lobes.voltage(carries))
    for fly in range(2):
        frames = visions[fly, :: lobes.observations_per_frame]
        np.testing.assert_allclose(voltages[fly], _offline(lobes, frames), atol=1e-5)
    # each fly saw its own target, so their lobes differ
    assert np.abs(voltages[0] - voltages[1]).max() > 1e-3


def test_mirror_image_views_drive_the_two_lobes_identically(lobes):
    """Moving edges the two eyes see as mirror images (right eye = left eye through the
    lattice mirror) give the same activity in both lobes, direction-selective types included."""
    from connectofly.envs.eye_geometry import mirror_lattice_index

    u, v = hex_lattice.columns(15)
    x, _ = hex_lattice.to_cartesian(u, v)
    frames = []
    for k in range(8):  # an edge sweeping along the image x axis of the left eye
        left = np.where(x < -20 + 5 * k, 0.9, 0.1)
        frames.append(np.stack([left, left[mirror_lattice_index()]])[..., None] * np.array([1.0, 0.0]))
    carry = lobes.init()
    for frame in frames:
        for _ in range(lobes.observations_per_frame):
            carry = lobes.advance(carry, jnp.asarray(frame))
    voltage = np.asarray(lobes.voltage(carry))
    t4a = ol.neurons_of_type(lobes.connectome, "T4a")
    atol = 1e-5
    # the edge moved them (by ~1e-3 on the flow-trained lobes), far beyond the tolerance below
    assert np.abs(voltage[0, t4a] - voltage[0, t4a].mean()).max() > 50 * atol
    np.testing.assert_allclose(voltage[0], voltage[1], atol=atol)


def test_mirror_right_eye_reorders_only_the_right_eye_on_any_eye_axis():
    from connectofly.envs.eye_geometry import mirror_lattice_index

    values = np.random.default_rng(0).normal(size=(3, 2, 721)).astype(np.float32)  # (types, eyes, columns)
    mirrored = np.asarray(mirror_right_eye(values))
    np.testing.assert_array_equal(mirrored[:, 0], values[:, 0])
    np.testing.assert_array_equal(mirrored[:, 1], values[:, 1, mirror_lattice_index()])
    np.testing.assert_array_equal(np.asarray(mirror_right_eye(values.swapaxes(0, 1), eye_axis=0)),
                                  mirrored.swapaxes(0, 1))
    np.testing.assert_array_equal(np.asarray(mirror_right_eye(mirrored)), values)  # its own inverse


def test_eye_lobes_reject_a_wrong_lattice_or_frame_rate(lobes):
    small = ol.load_connectome(2)
    with pytest.raises(ValueError, match="721"):
        EyeLobes(ol.init(jax.random.PRNGKey(0), small), small, CONTROL_DT)
    with pytest.raises(ValueError, match="whole number"):
        EyeLobes(lobes.params, lobes.connectome, control_dt=1e-3, vision_hz=300.0)
    with pytest.raises(ValueError, match="vision"):
        WithOpticLobes(VisualTaxisAgent(CONTROL_DT, np.zeros((2, 721))), lobes).act(
            None, (None, lobes.init()), {}, np.random.default_rng()
        )

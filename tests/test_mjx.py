"""The MJX backend: the primitive NeuroMechFly in JAX against the exact C model, and sharded over devices.

One jitted program, 50 physics steps of one fly, serves the step, standing and
sharding checks (each MJX program compiles for tens of seconds on 2 cores).
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from connectofly.agents import make_agent
from connectofly.agents.cpg import initial_state, tripod_params
from connectofly.agents.mjx_rollout import cpg_walk
from connectofly.agents.rollout import run_episode
from connectofly.envs import mjx_physics
from connectofly.envs.body import build_model, build_primitive_model
from connectofly.envs.fly_env import FlyEnv

N_STEPS = 50  # physics steps (5 ms) per call of the shared program


@pytest.fixture(scope="module")
def primitive():
    model = build_primitive_model()
    return model, mjx_physics.load(model)


@pytest.fixture(scope="module")
def step_50(primitive):
    """``(data, action) -> data`` after N_STEPS physics steps, jitted once for the module."""
    _, body = primitive
    return jax.jit(lambda data, action: mjx_physics.step(body, data, action, N_STEPS))


def _holding(model, adhesion) -> jax.Array:
    """The keyframe's joint targets and the given adhesion."""
    return jnp.concatenate([jnp.asarray(model.key_ctrl[0]), jnp.asarray(adhesion, jnp.float32)])


def test_primitive_variant_keeps_the_body_and_drops_what_mjx_cannot_load(primitive):
    model, _ = primitive
    exact = build_model()
    assert model.nmesh == 0 and model.nsensor == 0
    assert model.nu == 42  # adhesion is a force in this variant
    np.testing.assert_array_equal(model.body_mass, exact.body_mass)
    np.testing.assert_array_equal(model.key_qpos[0], exact.key_qpos[0])
    assert [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)] == [
        mujoco.mj_id2name(exact, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(exact.njnt)
    ]
    with pytest.raises(ValueError, match="primitive"):
        mjx_physics.load(exact)


def test_mjx_step_matches_mujoco_c_on_the_same_model(primitive, step_50):
    model, body = primitive
    data_c = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data_c, 0)
    mujoco.mj_step(model, data_c, nstep=N_STEPS)
    data = step_50(mjx_physics.reset(body, model, model.key_qpos[0]), _holding(model, np.zeros(6)))
    np.testing.assert_allclose(np.asarray(data.qpos), data_c.qpos, atol=1e-4)


def test_standing_fly_ground_reaction_equals_weight_plus_adhesion_pull(primitive, step_50):
    model, body = primitive
    weight = model.body_subtreemass[body.index.thorax_body] * -model.opt.gravity[2]
    start = mjx_physics.reset(body, model, model.key_qpos[0])
    read = jax.jit(lambda data: mjx_physics.read(body, data))

    def settle(adhesion, n_steps=3000):
        data = start
        for _ in range(n_steps // N_STEPS):
            data = step_50(data, _holding(model, adhesion))
        return read(data)

    free = settle(np.zeros(6))
    assert float(free.contact_forces[..., 2].sum()) == pytest.approx(weight, rel=0.15)
    stuck = settle(np.ones(6))  # each claw pulled down with ADHESION_GAIN µN
    expected = weight + 6 * mjx_physics.ADHESION_GAIN
    assert float(stuck.contact_forces[..., 2].sum()) == pytest.approx(expected, rel=0.15)


def test_cpg_walks_as_fast_on_mjx_as_on_the_exact_c_model(primitive):
    """Parity: same CPG, same initial phases, 1 s; speeds within 25 %, both upright."""
    model, body = primitive
    seed = 0
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tripod_params())
    phases = initial_state(np.random.default_rng(seed)).phases
    positions, up_z = jax.jit(lambda p: cpg_walk(body, model, params, p, 1000))(phases)
    mjx_speed = float(positions[-1, 0] - positions[0, 0])  # mm in 1 s
    env = FlyEnv(duration=1.0)
    c_rollout = run_episode(env, make_agent("cpg", env.control_dt), seed=seed)
    assert c_rollout.termination is None and float(up_z) > 0
    assert mjx_speed == pytest.approx(c_rollout.mean_forward_speed(), rel=0.25)


# Flies, one per (host-platform) device, in a fresh process (JAX fixes the number
# of devices when it starts), from the states given, holding the keyframe's
# targets with the claws gripping.
_SHARDED_FLIES = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from mujoco import mjx
    from connectofly.envs import mjx_physics
    from connectofly.envs.body import build_primitive_model
    from connectofly.envs.mjx_env import shard_worlds

    assert len(jax.devices()) == 2, jax.devices()
    n_steps, states, out = int(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
    model = build_primitive_model()
    body = mjx_physics.load(model)
    flies = jax.tree.unflatten(jax.tree.structure(mjx.make_data(model)), [states[f"arr_{i}"] for i in range(len(states.files))])
    action = jnp.concatenate([jnp.asarray(model.key_ctrl[0]), jnp.ones(6)])
    flies = jax.jit(jax.vmap(lambda data: mjx_physics.step(body, data, action, n_steps)))(shard_worlds(flies))
    assert len(flies.qpos.sharding.device_set) == 2
    np.save(out, np.asarray(flies.qpos))
    """
)


def test_flies_sharded_over_two_devices_step_as_one_fly_on_one(primitive, step_50, tmp_path):
    """The env and PPO shard the same way (``shard_worlds``); a whole sharded PPO update is
    checked in the slow tier (tests/test_mjx_sharding.py)."""
    model, body = primitive
    start = mjx_physics.reset(body, model, model.key_qpos[0])
    pushed = start.replace(qvel=start.qvel.at[:3].set(jnp.array([5.0, -3.0, 2.0])))  # mm/s of the thorax
    np.savez(tmp_path / "flies.npz", *jax.tree.leaves(jax.tree.map(lambda a, b: np.stack([a, b]), start, pushed)))
    out = tmp_path / "qpos.npy"
    result = subprocess.run(
        [sys.executable, "-c", _SHARDED_FLIES, str(N_STEPS), str(tmp_path / "flies.npz"), str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    one_by_one = [np.asarray(step_50(fly, _holding(model, np.ones(6))).qpos) for fly in (start, pushed)]
    assert not np.allclose(*one_by_one)  # the push mattered
    np.testing.assert_allclose(np.load(out), np.stack(one_by_one), atol=1e-5)

"""The MJX backend: the primitive NeuroMechFly in JAX against the exact C model."""

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


@pytest.fixture(scope="module")
def primitive():
    model = build_primitive_model()
    return model, mjx_physics.load(model)


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


def test_mjx_step_matches_mujoco_c_on_the_same_model(primitive):
    model, body = primitive
    data_c = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data_c, 0)
    mujoco.mj_step(model, data_c, nstep=50)
    data = mjx_physics.reset(body, model, model.key_qpos[0])
    action = jnp.concatenate([jnp.asarray(model.key_ctrl[0]), jnp.zeros(6)])
    data = jax.jit(lambda d: mjx_physics.step(body, d, action, 50))(data)
    np.testing.assert_allclose(np.asarray(data.qpos), data_c.qpos, atol=1e-4)


def test_standing_fly_ground_reaction_equals_weight_plus_adhesion_pull(primitive):
    model, body = primitive
    weight = model.body_subtreemass[body.index.thorax_body] * -model.opt.gravity[2]
    data = mjx_physics.reset(body, model, model.key_qpos[0])

    @jax.jit
    def settle(data, adhesion):
        action = jnp.concatenate([jnp.asarray(model.key_ctrl[0]), adhesion])
        data = mjx_physics.step(body, data, action, 3000)
        return mjx_physics.read(body, data)

    free = settle(data, jnp.zeros(6))
    assert float(free.contact_forces[..., 2].sum()) == pytest.approx(weight, rel=0.15)
    stuck = settle(data, jnp.ones(6))  # each claw pulled down with ADHESION_GAIN µN
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

"""The functional MJX env: batched steps, per-world auto-reset, divergence, bad input, VectorEnv, the brax view.

One env with a 3-step episode, compiled once for a batch of 3 worlds, serves
every test (MJX compiles take tens of seconds on 2 cores).
"""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.envs.fly_env import observation_space
from connectofly.envs.mjx_env import MjxEnv
from connectofly.envs.mjx_vector_env import MjxVectorEnv

N_WORLDS = 3


@pytest.fixture(scope="module")
def env():
    return MjxEnv(task="turn", duration=0.003)


@pytest.fixture(scope="module")
def start(env):
    return env.batch_reset(jax.random.split(jax.random.key(0), N_WORLDS))


def _neutral(env, n=N_WORLDS):
    return jnp.tile(env.neutral_action, (n, 1))


def test_observations_match_the_cpu_env_layout(env, start):
    space = observation_space(env.task.command_size, vision=False)
    assert set(start.obs) == set(space.spaces)
    for key, box in space.spaces.items():
        assert start.obs[key].shape == (N_WORLDS, *box.shape), key
        assert start.obs[key].dtype == jnp.float32
    commands = np.asarray(start.obs["command"][:, 0])
    assert len(set(commands.round(6))) == N_WORLDS and np.abs(commands).max() <= 2.0  # one ω* per world


def test_steps_are_deterministic_and_end_the_episode_at_duration(env, start):
    states, dones = start, []
    for _ in range(3):
        states = env.batch_step(states, _neutral(env))
        dones.append(np.asarray(states.done))
        assert np.isfinite(np.asarray(states.reward)).all()
    assert not dones[0].any() and not dones[1].any() and dones[2].all()
    assert np.asarray(states.info["truncated"]).all()
    np.testing.assert_array_equal(np.asarray(states.info["step"]), 0)  # auto-reset: a new episode
    again = start
    for _ in range(3):
        again = env.batch_step(again, _neutral(env))
    np.testing.assert_array_equal(np.asarray(again.obs["joint_angles"]), np.asarray(states.obs["joint_angles"]))
    # The final observation is the last step's, not the new episode's.
    assert not np.allclose(states.info["final_obs"]["joint_velocities"], states.obs["joint_velocities"])


def test_a_diverged_world_is_flagged_and_reset_alone(env, start):
    good = env.batch_step(start, _neutral(env))
    broken_qvel = start.data.qvel.at[1].set(jnp.nan)
    broken = env.batch_step(replace(start, data=start.data.replace(qvel=broken_qvel)), _neutral(env))
    np.testing.assert_array_equal(np.asarray(broken.metrics["diverged"]), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(broken.done), [False, True, False])
    np.testing.assert_array_equal(np.asarray(broken.info["step"]), [1, 0, 1])
    assert float(broken.reward[1]) == 0.0
    for leaf in jax.tree.leaves(broken.obs):
        assert np.isfinite(np.asarray(leaf)).all()
    for world in (0, 2):  # untouched by world 1's blow-up
        np.testing.assert_array_equal(np.asarray(broken.data.qpos[world]), np.asarray(good.data.qpos[world]))


def test_nan_actions_become_the_neutral_pose_and_are_counted(env, start):
    actions = _neutral(env).at[2, 5].set(jnp.nan)
    stepped = env.batch_step(start, actions)
    np.testing.assert_array_equal(np.asarray(stepped.metrics["bad_action"]), [0.0, 0.0, 1.0])
    neutral = env.batch_step(start, _neutral(env))
    np.testing.assert_array_equal(np.asarray(stepped.data.qpos[2]), np.asarray(neutral.data.qpos[2]))


def test_bad_action_shapes_and_dtypes_raise_before_tracing(env, start):
    with pytest.raises(ValueError, match="shape"):
        env.batch_step(start, jnp.zeros((N_WORLDS, 47)))
    with pytest.raises(ValueError, match="worlds"):
        env.batch_step(start, jnp.zeros((N_WORLDS + 1, 48)))
    with pytest.raises(ValueError, match="dtype"):
        env.batch_step(start, np.zeros((N_WORLDS, 48), dtype=bool))


def test_vector_env_returns_numpy_batches_and_is_seeded(env):
    envs = MjxVectorEnv(N_WORLDS, env=env)
    obs, _ = envs.reset(seed=3)
    assert envs.single_observation_space.contains({k: v[0] for k, v in obs.items()})
    actions = np.tile(np.asarray(env.neutral_action), (N_WORLDS, 1))
    obs, rewards, terminated, truncated, infos = envs.step(actions)
    assert isinstance(rewards, np.ndarray) and rewards.shape == (N_WORLDS,)
    assert terminated.dtype == bool and truncated.dtype == bool and not (terminated | truncated).any()
    assert set(infos) >= {"forward_speed", "diverged", "final_obs"}
    first = obs["joint_angles"].copy()
    envs.reset(seed=3)
    np.testing.assert_array_equal(envs.step(actions)[0]["joint_angles"], first)
    with pytest.raises(RuntimeError, match="reset"):
        MjxVectorEnv(N_WORLDS, env=env).step(actions)


def test_brax_training_wrappers_trace_over_the_brax_view(env, start):
    """brax's training wrappers (episode length, auto-reset, vmap) compose with the view: traced
    (``eval_shape``), not compiled, since the values are the env's (checked above); the slow tier runs them."""
    from brax.envs.wrappers.training import wrap

    from connectofly.envs.brax_env import BraxFlyEnv

    view = BraxFlyEnv(env)
    assert view.action_size == 48 and view.observation_size == 42 * 3 + 3 * 3 + 4 + 6 * 8 * 3 + 6 * 3 + 1
    wrapped = wrap(view, episode_length=2, action_repeat=1)
    state = jax.eval_shape(wrapped.reset, jax.random.split(jax.random.PRNGKey(0), N_WORLDS))  # raw keys, as brax uses
    stepped = jax.eval_shape(wrapped.step, state, jax.ShapeDtypeStruct((N_WORLDS, 48), jnp.float32))
    for s in (state, stepped):
        assert s.obs.shape == (N_WORLDS, view.observation_size) and s.obs.dtype == jnp.float32
        assert s.reward.shape == s.done.shape == s.info["truncation"].shape == (N_WORLDS,)
        assert set(s.metrics) == set(start.metrics)


@pytest.mark.slow
def test_brax_training_wrappers_reset_and_step_the_brax_view(env):
    from brax.envs.wrappers.training import wrap

    from connectofly.envs.brax_env import BraxFlyEnv

    view = BraxFlyEnv(env)
    assert view.action_size == 48 and view.observation_size == 42 * 3 + 3 * 3 + 4 + 6 * 8 * 3 + 6 * 3 + 1
    wrapped = wrap(view, episode_length=2, action_repeat=1)
    state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), N_WORLDS))  # raw keys, as brax uses
    step = jax.jit(wrapped.step)
    for _ in range(2):
        state = step(state, jnp.zeros((N_WORLDS, 48)))
    assert state.obs.shape == (N_WORLDS, view.observation_size)
    assert np.isfinite(np.asarray(state.obs)).all() and np.isfinite(np.asarray(state.reward)).all()
    np.testing.assert_array_equal(np.asarray(state.info["truncation"]), 1.0)  # brax's episode length ended it

"""Worlds sharded over two (host-platform) devices step exactly as on one device; so does a PPO update."""

import os
import subprocess
import sys
import textwrap

_SHARDED_VS_SINGLE = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from connectofly.envs.mjx_env import MjxEnv, shard_worlds

    assert len(jax.devices()) == 2, jax.devices()
    env = MjxEnv(task="walk", duration=0.01)
    keys = jax.random.split(jax.random.key(0), 4)
    actions = jnp.tile(env.neutral_action, (4, 1)) + 0.05 * jax.random.normal(jax.random.key(1), (4, 48))
    single = env.batch_step(env.batch_reset(keys), actions)
    sharded = env.batch_step(shard_worlds(env.batch_reset(keys)), shard_worlds(actions))
    assert len(sharded.data.qpos.sharding.device_set) == 2
    np.testing.assert_allclose(np.asarray(sharded.data.qpos), np.asarray(single.data.qpos), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sharded.reward), np.asarray(single.reward), rtol=1e-5, atol=1e-5)
    print("sharded == single")

    from connectofly.training.ppo import PPO, PPOConfig

    ppo = PPO(env, PPOConfig(num_envs=2, unroll_length=2, num_minibatches=1, epochs=1))
    state = ppo.init(0)  # two devices: the worlds are sharded
    assert len(state.env_state.data.qpos.sharding.device_set) == 2
    sharded_state, sharded_metrics = jax.jit(ppo.update)(state)
    on_one = jax.device_put(state, jax.devices()[0])
    single_state, single_metrics = jax.jit(ppo.update)(on_one)
    # The rollouts agree; the updated weights to within a few Adam steps (3e-4
    # each), as reductions over worlds run in another order.
    for name in ("reward_per_step", "mean_forward_speed"):
        np.testing.assert_allclose(sharded_metrics[name], single_metrics[name], rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.tree.leaves(sharded_state.params), jax.tree.leaves(single_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-3)
    print("sharded PPO update == single")
    """
)


def test_sharded_rollout_equals_the_unsharded_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", _SHARDED_VS_SINGLE], capture_output=True, text=True,
                            env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded == single" in result.stdout
    assert "sharded PPO update == single" in result.stdout

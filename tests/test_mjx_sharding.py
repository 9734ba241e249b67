"""A PPO update with its worlds sharded over two (host-platform) devices equals the unsharded one.

Slow: the update compiles twice in a fresh process (JAX fixes the number of host
devices when it starts). The fast tier steps sharded worlds and checks that PPO
shards them in tests/test_mjx_env.py.
"""

import os
import subprocess
import sys
import textwrap

import pytest

_PPO_UPDATE = textwrap.dedent(
    """
    import jax, numpy as np
    from connectofly.envs.mjx_env import MjxEnv
    from connectofly.training.ppo import PPO, PPOConfig

    assert len(jax.devices()) == 2, jax.devices()
    ppo = PPO(MjxEnv(task="walk", duration=0.01), PPOConfig(num_envs=2, unroll_length=2, num_minibatches=1, epochs=1))
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


@pytest.mark.slow
def test_a_sharded_ppo_update_equals_the_unsharded_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", _PPO_UPDATE], capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded PPO update == single" in result.stdout

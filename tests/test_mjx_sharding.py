"""A batch of MJX worlds sharded over two devices steps exactly as on one.

JAX fixes its device count when it starts, so the run happens in a
subprocess with two host (CPU) devices.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from connectofly.envs.mjx_env import MjxEnv
    from connectofly.envs.sharding import WORLD_AXIS, shard_batch, world_mesh

    assert jax.device_count() == 2, jax.devices()
    mesh = world_mesh()
    try:
        shard_batch(jnp.zeros((3, 2)), mesh)
    except ValueError as error:
        assert "multiple of 2" in str(error)
    else:
        raise AssertionError("3 worlds split over 2 devices")

    env = MjxEnv(task="turn", duration=0.003)
    states = env.batch_reset(jax.random.split(jax.random.key(0), 4))
    noise = 0.05 * jax.random.normal(jax.random.key(1), (4, 48))
    actions = jnp.tile(env.neutral_action, (4, 1)) + noise
    single, sharded = states, shard_batch(states, mesh)
    for _ in range(2):
        single = env.batch_step(single, actions)
        sharded = env.batch_step(sharded, shard_batch(actions, mesh))

    qpos = sharded.data.qpos
    assert len(qpos.sharding.device_set) == 2 and qpos.sharding.spec[0] == WORLD_AXIS, qpos.sharding
    assert {shard.data.shape for shard in qpos.addressable_shards} == {(2, qpos.shape[1])}
    assert len(single.data.qpos.sharding.device_set) == 1
    assert float(jnp.abs(single.data.qpos - states.data.qpos).max()) > 1e-4  # the flies moved
    for a, b in zip(jax.tree.leaves((single.data, single.obs, single.reward)),
                    jax.tree.leaves((sharded.data, sharded.obs, sharded.reward)), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    print("sharded run matches")
    """
)


def test_sharded_batch_steps_like_the_unsharded_batch():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "sharded run matches" in result.stdout

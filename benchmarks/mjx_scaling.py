"""MJX steps/s per world vs batch size, beside MuJoCo C, in one run.

Rows: MuJoCo C ``mj_step`` on the exact flygym model and on the primitive
variant (one world), then MJX on the primitive variant at each batch size
(``jit(vmap(scan))`` over one control step of 10 physics steps holding the
neutral pose with adhesion on). Also the compile times users wait for: that
control step, the env's batched ``autoreset_step`` and one PPO update of the
default CLI config (unset ``JAX_COMPILATION_CACHE_DIR``, or these are cache loads).

Run:  python benchmarks/mjx_scaling.py [--batches 1 16 64 256] [--control-steps 20]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import mujoco

from connectofly.envs import mjx_physics
from connectofly.envs.body import build_model, build_primitive_model

SUBSTEPS = 10


def c_steps_per_second(model: mujoco.MjModel, n_steps: int = 3000) -> float:
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    start = time.perf_counter()
    mujoco.mj_step(model, data, nstep=n_steps)
    return n_steps / (time.perf_counter() - start)


def mjx_rates(model: mujoco.MjModel, batch: int, control_steps: int) -> tuple[float, float]:
    """(compile seconds, physics steps/s per world) at one batch size."""
    body = mjx_physics.load(model)
    action = jnp.concatenate([jnp.asarray(model.key_ctrl[0], jnp.float32), jnp.ones(6)])
    single = mjx_physics.reset(body, model, model.key_qpos[0])
    data = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch, *x.shape)), single)
    control_step = jax.jit(jax.vmap(lambda d: mjx_physics.step(body, d, action, SUBSTEPS)))
    start = time.perf_counter()
    data = jax.block_until_ready(control_step(data))
    compile_seconds = time.perf_counter() - start
    # XLA:CPU's first executions after compiling can stall for tens of seconds;
    # they are warm-up, not throughput.
    for _ in range(3):
        data = jax.block_until_ready(control_step(data))
    start = time.perf_counter()
    for _ in range(control_steps):
        data = control_step(data)
    jax.block_until_ready(data)
    return compile_seconds, control_steps * SUBSTEPS / (time.perf_counter() - start)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_compile_seconds() -> dict[str, float]:
    """Compile times of the env step (16 worlds, reset included) and of one default PPO update."""
    from connectofly.envs.mjx_env import MjxEnv
    from connectofly.training.ppo import PPO, PPOConfig

    config = PPOConfig()
    env = MjxEnv("walk")
    states = env.batch_reset(jax.random.split(jax.random.key(0), config.num_envs))
    actions = jnp.broadcast_to(env.neutral_action, (config.num_envs, env.neutral_action.shape[0]))
    step = jax.jit(jax.vmap(env.autoreset_step))
    times = {f"env autoreset_step, batch {config.num_envs}": seconds(lambda: step.lower(states, actions).compile())}
    ppo = PPO(env, config)
    _, times[f"PPO update ({config.num_envs} worlds x {config.unroll_length} steps)"] = ppo.compiled_update(ppo.init(0))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--control-steps", type=int, default=20)
    args = parser.parse_args()
    primitive = build_primitive_model()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, mujoco {mujoco.__version__}")
    print("\n| backend | model | batch | steps/s per world | aggregate steps/s | real-time factor (aggregate) |")
    print("|---|---|---|---|---|---|")
    for name, model in (("exact (meshes, noslip)", build_model()), ("primitive", primitive)):
        rate = c_steps_per_second(model)
        print(f"| MuJoCo C | {name} | 1 | {rate:,.0f} | {rate:,.0f} | {rate * 1e-4:.2f} |", flush=True)
    compile_times = {}
    for batch in args.batches:
        compile_seconds, rate = mjx_rates(primitive, batch, args.control_steps)
        compile_times[batch] = compile_seconds
        print(f"| MJX (jax) | primitive | {batch} | {rate:,.0f} | {rate * batch:,.0f} | {rate * batch * 1e-4:.2f} |", flush=True)
    print("\ncompile time of one control step (10 physics steps), s: "
          + ", ".join(f"batch {b}: {t:.1f}" for b, t in compile_times.items()))
    for name, value in training_compile_seconds().items():
        print(f"compile time of the {name}: {value:.1f} s", flush=True)


if __name__ == "__main__":
    main()

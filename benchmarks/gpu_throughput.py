"""The accelerator check: aggregate simulated seconds per wall second, and PPO steps/s.

One prepared script for a GPU machine (≤ 10 min on one H200 at the default
sizes). For each MJX implementation (``jax``; ``warp`` where the installed MJX
can load it) and batch size it times ``jit(vmap(scan))`` of MJX physics steps
on the primitive NeuroMechFly holding its keyframe pose (no adhesion), and reports

    aggregate real-time factor = batch × simulated seconds / wall seconds.

The goal (issue 3) is ≥ 1,000 flies at ≥ 10× real time in aggregate on one
H200. Then it times PPO updates of the default algorithm at ``--ppo-envs``
worlds (``impl=jax``; env steps per second, compile excluded).

An implementation that cannot run here is reported with its error, not
skipped silently. On a CPU, try it small:

    python benchmarks/gpu_throughput.py --batches 8 --physics-steps 20 --ppo-envs 8 --ppo-updates 1
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx

from connectofly.envs.body import build_primitive_model

PHYSICS_DT = 1e-4  # s, the body's timestep


def physics_rate(model: mujoco.MjModel, impl: str, batch: int, n_steps: int) -> dict:
    """Compile seconds and aggregate simulated s / wall s of ``n_steps`` physics steps in ``batch`` worlds."""
    mjx_model = mjx.put_model(model, impl=impl)
    single = mjx.make_data(mjx_model, impl=impl)
    single = single.replace(qpos=jnp.asarray(model.key_qpos[0]), ctrl=jnp.asarray(model.key_ctrl[0]))
    data = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch, *x.shape)), single)

    def run(d):
        return jax.lax.scan(lambda d, _: (mjx.step(mjx_model, d), None), d, None, length=n_steps)[0]

    rollout = jax.jit(jax.vmap(run))
    start = time.perf_counter()
    compiled = rollout.lower(data).compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(data))  # warm-up
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(data))
    wall = time.perf_counter() - start
    finite = bool(jnp.isfinite(out.qpos).all())
    return {
        "compile_s": round(compile_seconds, 1),
        "wall_s": round(wall, 3),
        "steps_per_s_per_world": n_steps / wall,
        "aggregate_real_time_factor": batch * n_steps * PHYSICS_DT / wall,
        "finite": finite,
    }


def ppo_rate(num_envs: int, updates: int) -> dict:
    from connectofly.envs.mjx_env import MjxEnv
    from connectofly.training.ppo import PPO, PPOConfig

    minibatches = max(1, min(32, num_envs // 8))
    while num_envs % minibatches:
        minibatches -= 1
    ppo = PPO(MjxEnv("walk", duration=0.5), PPOConfig(num_envs=num_envs, num_minibatches=minibatches))
    state = ppo.init(0)
    update, compile_seconds = ppo.compiled_update(state)
    state, _ = update(state)  # warm-up
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(updates):
        state, metrics = update(state)
    jax.block_until_ready(state)
    wall = time.perf_counter() - start
    steps = updates * ppo.config.steps_per_update
    return {
        "num_envs": num_envs,
        "compile_s": round(compile_seconds, 1),
        "env_steps_per_s": steps / wall,
        "simulated_s_per_wall_s": steps * ppo.env.control_dt / wall,
        "reward_per_step_last": float(metrics["reward_per_step"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--impls", nargs="+", default=["jax", "warp"], choices=["jax", "warp"])
    parser.add_argument("--physics-steps", type=int, default=200, help="timed physics steps per world (20 ms)")
    parser.add_argument("--ppo-envs", type=int, default=4096)
    parser.add_argument("--ppo-updates", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    device = jax.devices()[0]
    print(f"jax {jax.__version__}, mujoco {mujoco.__version__}, device: {device.platform} {device.device_kind}")
    model = build_primitive_model()
    results = {"physics": [], "ppo": None}
    print("\n| impl | batch | compile s | steps/s per world | aggregate real-time factor | finite |")
    print("|---|---|---|---|---|---|")
    for impl in args.impls:
        for batch in args.batches:
            try:
                row = {"impl": impl, "batch": batch, **physics_rate(model, impl, batch, args.physics_steps)}
                print(f"| {impl} | {batch} | {row['compile_s']} | {row['steps_per_s_per_world']:,.0f} | "
                      f"{row['aggregate_real_time_factor']:,.1f} | {row['finite']} |", flush=True)
            except Exception as error:  # an impl this machine lacks (warp without NVIDIA), or out of memory
                row = {"impl": impl, "batch": batch, "error": f"{type(error).__name__}: {error}"[:300]}
                print(f"| {impl} | {batch} | unavailable: {row['error'][:120]} | | | |", flush=True)
            results["physics"].append(row)
    if args.ppo_updates > 0:
        results["ppo"] = ppo_rate(args.ppo_envs, args.ppo_updates)
        ppo = results["ppo"]
        print(f"\nPPO (impl jax, {ppo['num_envs']} worlds): compile {ppo['compile_s']} s, "
              f"{ppo['env_steps_per_s']:,.0f} env steps/s = {ppo['simulated_s_per_wall_s']:,.1f} simulated s per wall s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

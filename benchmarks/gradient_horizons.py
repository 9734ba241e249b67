"""Cost of gradients through MJX physics versus horizon.

For rollouts of 0.02, 0.1 and 0.5 s of simulated time (1 ms control steps,
10 physics steps each) of the CPG on the primitive NeuroMechFly, prints the
compile time, the run time of the loss alone and of loss + gradient (their
ratio is the price of reverse mode), and XLA's own account of the temporary
memory each compiled program needs (``memory_analysis``). Control steps are
checkpointed, so memory should grow about linearly with the number of control
steps and stay far below storing every physics step.

    python benchmarks/gradient_horizons.py --horizons 0.02 0.1 0.5
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from connectofly.envs import mjx_physics
from connectofly.envs.body import build_primitive_model
from connectofly.training.bptt_cpg import differentiable_model, initial_gait, loss


def compiled(function, *args):
    start = time.perf_counter()
    executable = jax.jit(function).lower(*args).compile()
    return executable, time.perf_counter() - start


def run_seconds(executable, *args, repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(executable(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizons", type=float, nargs="+", default=[0.02, 0.1, 0.5], help="seconds")
    args = parser.parse_args()

    model = differentiable_model(build_primitive_model())
    body = mjx_physics.load(model)
    gait = initial_gait()
    phases = jax.random.uniform(jax.random.key(0), (1, 6), maxval=2 * np.pi)
    print(f"{'horizon s':>9} {'steps':>6} {'compile fwd s':>13} {'compile grad s':>14} {'fwd s':>7} "
          f"{'fwd+grad s':>10} {'ratio':>6} {'temp MB fwd':>11} {'temp MB grad':>12}")
    for horizon in args.horizons:
        n = int(round(horizon / 1e-3))
        forward, compile_forward = compiled(lambda g, p: loss(g, body, model, p, n), gait, phases)
        backward, compile_backward = compiled(
            lambda g, p: jax.value_and_grad(loss)(g, body, model, p, n), gait, phases
        )
        t_forward = run_seconds(forward, gait, phases)
        t_backward = run_seconds(backward, gait, phases)
        mb_forward = forward.memory_analysis().temp_size_in_bytes / 2**20
        mb_backward = backward.memory_analysis().temp_size_in_bytes / 2**20
        print(f"{horizon:9.2f} {n * 10:6d} {compile_forward:13.1f} {compile_backward:14.1f} {t_forward:7.2f} "
              f"{t_backward:10.2f} {t_backward / t_forward:6.2f} {mb_forward:11.1f} {mb_backward:12.1f}", flush=True)


if __name__ == "__main__":
    main()

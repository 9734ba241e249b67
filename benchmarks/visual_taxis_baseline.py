"""Success rate of the vision-steered baseline on ``connectofly/VisualTaxis-v0``.

The baseline (:class:`connectofly.agents.visual_taxis.VisualTaxisAgent`) and,
as a control, the same hybrid walker without vision (walking straight), run
on the same seeds (same target layouts). Prints a table and the success rates,
and draws the paths to ``--plot``.

    python benchmarks/visual_taxis_baseline.py --seeds 20 --plot outputs/visual_taxis.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from connectofly.agents import make_agent  # noqa: E402
from connectofly.agents.rollout import run_episode  # noqa: E402
from connectofly.agents.visual_taxis import VisualTaxisAgent  # noqa: E402
from connectofly.envs.fly_env import FlyEnv  # noqa: E402


def run(agent, env, seed: int) -> dict:
    start = time.perf_counter()
    rollout = run_episode(env, agent, seed=seed)
    target = env.unwrapped._trajectory.origin[0]
    path = np.array(rollout.positions)[:, :2]
    return {
        "success": rollout.termination == "success",
        "time": rollout.duration,
        "start_distance": float(np.linalg.norm(target - path[0])),
        "end_distance": float(np.linalg.norm(target - path[-1])),
        "path": path,
        "target": target,
        "wall": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--duration", type=float, default=3.0, help="episode length, s")
    parser.add_argument("--plot", default="outputs/visual_taxis.png")
    args = parser.parse_args()

    env = FlyEnv(task="visual_taxis", duration=args.duration)
    agents = {"vision": VisualTaxisAgent.for_env(env), "blind": make_agent("hybrid", env.control_dt)}
    results = {name: [] for name in agents}
    for seed in tqdm(range(args.seeds), desc="seeds"):
        for name, agent in agents.items():
            results[name].append(run(agent, env, seed))

    print(f"{'seed':>4} {'d0 mm':>6} | {'vision: ok':>10} {'t s':>5} {'d_end':>6} | {'blind: ok':>9} {'d_end':>6}")
    for seed, (v, b) in enumerate(zip(results["vision"], results["blind"])):
        print(f"{seed:4d} {v['start_distance']:6.1f} | {str(v['success']):>10} {v['time']:5.2f} {v['end_distance']:6.2f}"
              f" | {str(b['success']):>9} {b['end_distance']:6.2f}")
    for name, runs in results.items():
        successes = [r for r in runs if r["success"]]
        mean_time = np.mean([r["time"] for r in successes]) if successes else float("nan")
        sim = sum(r["time"] for r in runs)
        wall = sum(r["wall"] for r in runs)
        print(f"{name}: success {len(successes)}/{len(runs)}, mean time to success {mean_time:.2f} s, "
              f"{sim / wall:.2f}x real time")

    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    for ax, (name, runs) in zip(axes, results.items()):
        for r in runs:
            colour = "tab:green" if r["success"] else "tab:red"
            ax.plot(*r["path"].T, color=colour, lw=1)
            ax.plot(*r["target"], "ko", ms=4)
        ax.set_title(f"{name}: {sum(r['success'] for r in runs)}/{len(runs)} reached")
        ax.set_aspect("equal")
        ax.set_xlabel("x (mm)")
    axes[0].set_ylabel("y (mm)")
    fig.suptitle("VisualTaxis-v0: paths (green reached, red not) and targets (black)")
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120, bbox_inches="tight")
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()

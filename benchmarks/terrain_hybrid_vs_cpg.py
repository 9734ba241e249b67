"""Hybrid vs CPG controller on NeuroMechFly v2's rough terrains, over many seeds.

For each terrain and controller, walks ``--seeds`` episodes of ``--duration``
s and reports forward displacement (mm) and falls (flips). The seed sets the
initial CPG phases and the initial pose noise. Prints a Markdown table.

Run:  python benchmarks/terrain_hybrid_vs_cpg.py [--seeds 10] [--duration 1.0]
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm.auto import tqdm

from connectofly.agents import make_agent
from connectofly.agents.rollout import run_episode
from connectofly.envs.fly_env import FlyEnv


def forward_distances(terrain: str, controller: str, seeds: range, duration: float) -> tuple[np.ndarray, int]:
    env = FlyEnv(terrain=terrain, duration=duration)
    agent = make_agent(controller, env.control_dt)
    distances, falls = [], 0
    for seed in tqdm(seeds, desc=f"{controller} on {terrain}", leave=False):
        rollout = run_episode(env, agent, seed=seed)
        distances.append(rollout.displacement[0])
        falls += rollout.termination is not None
    return np.array(distances), falls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--terrains", nargs="+", default=["gapped", "blocks"])
    args = parser.parse_args()
    print(f"| terrain | controller | forward distance mm (mean ± sd, n={args.seeds}) | min | max | falls |")
    print("|---|---|---|---|---|---|")
    for terrain in args.terrains:
        for controller in ("cpg", "hybrid"):
            d, falls = forward_distances(terrain, controller, range(args.seeds), args.duration)
            print(f"| {terrain} | {controller} | {d.mean():.2f} ± {d.std(ddof=1):.2f} | {d.min():.2f} | {d.max():.2f} | {falls} |", flush=True)


if __name__ == "__main__":
    main()

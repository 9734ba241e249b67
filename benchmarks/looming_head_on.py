"""Escape from a looming sphere aimed at the fly from the front, by controller.

``Looming``'s own layouts come from anywhere within ±120° and rush at the fly's
start, so a fly that just walks on leaves the sphere's path in almost every
episode (every controller escapes all 20 of the benchmark's seeds). This sweep
aims the sphere from the frontal sector only, where walking on runs into it:
bearings -45° … 45° in 5° steps, rushing from 40 mm at 40 mm/s from 0.2 s
(:func:`~connectofly.envs.visual_tasks.looming_layout`), one 2 s episode each.
Prints a Markdown table (escapes with Wilson 95 % intervals) and which bearings
each controller was caught at.

Run:  python benchmarks/looming_head_on.py [--controllers hybrid,visual_taxis,visual_escape,connectome]
      [--readout agents/weights/dn_readout_visual_taxis.npz]   # adds a "connectome [file]" row
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from connectofly.agents.registry import make_controller
from connectofly.agents.rollout import run_episode
from connectofly.envs import arena, visual_tasks
from connectofly.envs.fly_env import FlyEnv
from connectofly.training.bench import wilson_interval

BEARINGS_DEG = np.arange(-45, 46, 5)
START_TIME = 0.2  # s, the earliest of sample_looming's


def caught_bearings(env: FlyEnv, agent, label: str) -> list[int]:
    """The bearings (deg) of ``BEARINGS_DEG`` at which ``agent`` is caught."""
    caught = []
    for bearing in tqdm(BEARINGS_DEG, desc=label, leave=False):
        layout = arena.to_numpy(visual_tasks.looming_layout(np.deg2rad(float(bearing)), START_TIME))
        if run_episode(env, agent, options={"layout": layout}).termination == "caught":
            caught.append(int(bearing))
    return caught


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controllers", default="hybrid,visual_taxis,visual_escape,connectome,connectome_vnc")
    parser.add_argument("--readout", type=Path, default=None, help="a readout.npz for an extra connectome row")
    args = parser.parse_args()
    env = FlyEnv(task="looming", duration=2.0)
    agents = {name: make_controller(name, env) for name in args.controllers.split(",") if name}
    if args.readout is not None:
        agents[f"connectome [{args.readout.name}]"] = make_controller("connectome", env, readout=args.readout)
    n = len(BEARINGS_DEG)
    print(f"| controller | escaped (of {n}) | 95 % interval | caught at (deg) |")
    print("|---|---|---|---|")
    for label, agent in agents.items():
        caught = caught_bearings(env, agent, label)
        rate, low, high = wilson_interval(n - len(caught), n)
        print(f"| {label} | {n - len(caught)} ({rate:.0%}) | [{low:.0%}, {high:.0%}] | "
              f"{', '.join(map(str, caught)) or '–'} |", flush=True)


if __name__ == "__main__":
    main()

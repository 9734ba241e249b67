"""How does the connectome VNC turn? Its yaw rate and speed over a grid of forward × steering inputs.

Each cell is a closed-loop episode of the shipped VNC weights (MuJoCo C body,
flat ground) under a tonic (forward, left steer, 0, 0) descending input; the
yaw rate is the mean after the 0.5 s transient (+ left). The connectome agent's
drive → VNC map (``agents/connectome.py::vnc_descending``) is calibrated on this
table (docs/closed_loop.md, "The VNC motor stage").

    .venv/bin/python scripts/vnc_turn_map.py [--forward 1.25,1.5,1.75] [--steer 0.25,0.5,0.75,1,1.25] [--seeds 2]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np


@functools.cache
def shipped_model():
    """The shipped VNC weights, loaded once per worker process."""
    from connectofly.training.vnc_evaluate import load_model

    return load_model()


def episode(cell: tuple[float, float, int]) -> tuple[float, float, bool]:
    """(yaw rate rad/s, speed mm/s, upright) of one episode."""
    from connectofly.training.vnc_evaluate import run_on_body

    forward, steer, seed = cell
    run = run_on_body(shipped_model(), np.array([forward, steer, 0.0, 0.0]), duration=1.5, seed=seed)
    return run.yaw_rate, run.speed, run.upright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forward", default="1.25,1.5,1.75")
    parser.add_argument("--steer", default="0.25,0.5,0.75,1,1.25")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers must be at least 1")
    try:
        forwards = [float(x) for x in args.forward.split(",")]
        steers = [float(x) for x in args.steer.split(",")]
    except ValueError:
        parser.error("--forward and --steer take comma-separated numbers, e.g. 1.25,1.5")
    cells = list(itertools.product(forwards, steers, range(args.seeds)))
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = dict(zip(cells, pool.map(episode, cells)))
    print("| forward \\ steer | " + " | ".join(f"{s:g}" for s in steers) + " |")
    print("|---" * (len(steers) + 1) + "|")
    for forward in forwards:
        cells_text = []
        for steer in steers:
            runs = [results[(forward, steer, seed)] for seed in range(args.seeds)]
            yaw, speed = np.mean([r[0] for r in runs]), np.mean([r[1] for r in runs])
            falls = sum(not r[2] for r in runs)
            cells_text.append(f"{yaw:+.2f} rad/s, {speed:.1f} mm/s" + (f" ({falls} fell)" if falls else ""))
        print(f"| {forward:g} | " + " | ".join(cells_text) + " |")


if __name__ == "__main__":
    main()

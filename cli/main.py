"""The ``connectofly`` command line.

    connectofly walk                       # CPG fly walks 2 s on flat ground
    connectofly walk --controller hybrid --terrain blocks --duration 1.5
    connectofly walk --task visual_taxis --controller visual_taxis --duration 3
    connectofly train --algo ppo --env Walk --updates 60
    connectofly vnc --out outputs/vnc       # the leg-motor connectome walks the body
    connectofly --help

Each walk writes ``<output-dir>/<run-name>/walk.mp4`` and ``summary.json``;
a training run also writes checkpoints, TensorBoard scalars and a learning
curve (:mod:`connectofly.cli.train`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("connectofly")


def _add_walk_parser(subparsers) -> None:
    from connectofly.agents import AGENTS
    from connectofly.envs.body import TERRAINS
    from connectofly.envs.visual_tasks import VISUAL_TASKS

    walk = subparsers.add_parser(
        "walk",
        help="a fly walks with a baseline controller; writes a video and a summary",
        description=(
            "Simulate NeuroMechFly walking with a baseline controller (MuJoCo C physics, "
            "dt 0.1 ms), then render a video from the recorded states. Writes "
            "OUTPUT_DIR/RUN_NAME/walk.mp4 and summary.json (distance, mean speed, steps/s)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    walk.add_argument(
        "--task", choices=("walk", *VISUAL_TASKS), default="walk",
        help="walk on the terrain, or a visual task (the video then shows the eyes' images)",
    )
    walk.add_argument(
        "--controller", choices=sorted([*AGENTS, VISUAL_CONTROLLER]), default="cpg",
        help=f"baseline controller ({VISUAL_CONTROLLER!r} steers by vision; visual tasks only)",
    )
    walk.add_argument("--terrain", choices=TERRAINS, default="flat", help="arena")
    walk.add_argument("--duration", type=float, default=2.0, help="simulated seconds")
    walk.add_argument("--seed", type=int, default=0, help="random seed (initial pose noise, CPG phases)")
    walk.add_argument("--output-dir", type=Path, default=Path("outputs"), help="where runs are written")
    walk.add_argument("--run-name", default=None, help="folder name of this run (default: walk-<controller>-<terrain>-<UTC time>)")
    walk.add_argument("--fps", type=float, default=30.0, help="video frame rate")
    walk.add_argument("--playback-speed", type=float, default=0.2, help="video time / simulated time")
    walk.add_argument("--no-video", action="store_true", help="skip rendering (summary only)")
    walk.set_defaults(handler=run_walk)


VISUAL_CONTROLLER = "visual_taxis"


def make_controller(name: str, env):
    """A baseline agent by name; the vision-steered one is built for ``env``'s eyes."""
    from connectofly.agents import make_agent
    from connectofly.agents.visual_taxis import VisualTaxisAgent

    if name == VISUAL_CONTROLLER:
        if "vision" not in env.observation_space.spaces:
            raise ValueError(f"--controller {VISUAL_CONTROLLER} needs a visual task (--task)")
        return VisualTaxisAgent.for_env(env)
    return make_agent(name, env.control_dt)


def run_walk(args: argparse.Namespace) -> dict:
    from connectofly.agents.rollout import run_episode
    from connectofly.envs.fly_env import FlyEnv
    from connectofly.videos.writer import frame_interval, write_video

    if args.duration <= 0:
        raise ValueError(f"--duration {args.duration} must be positive (s)")
    run_name = args.run_name or (
        f"{args.task}-{args.controller}-{args.terrain}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    )
    run_dir = args.output_dir / run_name
    run_dir.mkdir(parents=True, exist_ok=True)

    env = FlyEnv(task=args.task, terrain=args.terrain, duration=args.duration)
    agent = make_controller(args.controller, env)
    interval = None if args.no_video else frame_interval(args.fps, args.playback_speed)
    log.info("simulating %.2f s: %s on %s terrain", args.duration, args.controller, args.terrain)
    rollout = run_episode(env, agent, seed=args.seed, frame_interval=interval, progress=True)

    summary = {
        "task": args.task,
        "controller": args.controller,
        "terrain": args.terrain,
        "seed": args.seed,
        "duration_s": round(rollout.duration, 6),
        "distance_mm": float(np.linalg.norm(rollout.displacement[:2])),
        "mean_forward_speed_mm_s": rollout.mean_forward_speed(),
        "termination": rollout.termination,
        "physics_steps": rollout.physics_steps,
        "steps_per_second": rollout.physics_steps / rollout.wall_time,
        "real_time_factor": rollout.duration / rollout.wall_time,
    }
    if interval is not None:
        start = time.perf_counter()
        video = write_video(
            env.model, rollout.frames, run_dir / "walk.mp4",
            camera=env.physics.index.camera, fps=args.fps, progress=True,
        )
        summary["video"] = str(video)
        summary["render_seconds"] = time.perf_counter() - start
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {run_dir}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connectofly",
        description=(
            "Connectome-constrained fruit-fly circuits driving the NeuroMechFly body in MuJoCo. "
            "Run 'connectofly COMMAND --help' for the options of a command."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_walk_parser(subparsers)
    from connectofly.cli import optic_flow, train, vnc

    train.add_parser(subparsers)
    optic_flow.add_parser(subparsers)
    vnc.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        args.handler(args)
    except (ValueError, RuntimeError) as error:
        print(f"connectofly: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

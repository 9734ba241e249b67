"""The ``connectofly`` command line.

    connectofly walk                       # CPG fly walks 2 s on flat ground
    connectofly walk --controller hybrid --terrain blocks --duration 1.5
    connectofly walk --task visual_taxis --controller visual_taxis --duration 3
    connectofly render                     # closed loop: connectome agent walks to a target
    connectofly bench --out outputs/bench  # controllers x tasks x seeds: table, plots, videos
    connectofly train --algo ppo --env Walk --updates 60
    connectofly vnc --out outputs/vnc       # the leg-motor connectome walks the body
    connectofly tuning --lobe trained       # polarity and T4/T5 direction selectivity of a lobe
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

from connectofly.cli.checks import check_folder, check_lobe, non_negative_int, positive_float, run_name

log = logging.getLogger("connectofly")
CONNECTOME_CONTROLLERS = ("connectome", "connectome_vnc")


def _add_walk_parser(subparsers, name: str, help: str, task: str, controller: str) -> None:
    from connectofly.agents.registry import CONTROLLERS
    from connectofly.envs.body import TERRAINS
    from connectofly.envs.visual_tasks import VISUAL_TASKS

    walk = subparsers.add_parser(
        name,
        help=help,
        description=(
            "Simulate NeuroMechFly with a controller (MuJoCo C physics, dt 0.1 ms), then render a "
            "video from the recorded states: the 3-D view, on visual tasks both eyes' images, and "
            "for the connectome controllers the optic-lobe activity maps (--cell-types), the "
            "descending units and (connectome_vnc) the motor-neuron raster. Writes "
            "OUTPUT_DIR/RUN_NAME/walk.mp4 and summary.json (distance, speed, steps/s). Controllers: "
            + "; ".join(f"{n}: {c.about}" for n, c in CONTROLLERS.items())
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    walk.add_argument(
        "--task", choices=("walk", *VISUAL_TASKS), default=task,
        help="walk on the terrain, or a visual task (the video then shows the eyes' images)",
    )
    walk.add_argument("--controller", choices=sorted(CONTROLLERS), default=controller, help="controller")
    walk.add_argument("--terrain", choices=TERRAINS, default="flat", help="arena")
    walk.add_argument("--duration", type=positive_float, default=2.0, help="simulated seconds")
    walk.add_argument("--seed", type=non_negative_int, default=0, help="random seed (layout, initial pose noise, CPG phases)")
    walk.add_argument("--silence", default="", help="connectome controllers: '+'-joined optic-lobe cell types "
                      "or VNC hemilineages whose output is blocked, e.g. 'Tm1+Tm2'")
    walk.add_argument("--cell-types", default="T4a,T5a,Tm1", help="connectome controllers: optic-lobe types shown")
    walk.add_argument("--lobe", default=None, help="connectome controllers: the optic lobes, one of "
                      "('trained', 'untrained'), a trainable.npz, or a flyvis checkpoint or model folder "
                      "(default: the lobes the readout was fitted on)")
    walk.add_argument("--output-dir", type=Path, default=Path("outputs"), help="where runs are written")
    walk.add_argument("--run-name", type=run_name, default=None, help="folder name of this run (default: <task>-<controller>-<terrain>-<UTC time>)")
    walk.add_argument("--fps", type=positive_float, default=30.0, help="video frame rate")
    walk.add_argument("--playback-speed", type=positive_float, default=0.2, help="video time / simulated time")
    walk.add_argument("--no-video", action="store_true", help="skip rendering (summary only)")
    walk.set_defaults(handler=run_walk)


def run_walk(args: argparse.Namespace) -> dict:
    from connectofly.agents.registry import make_controller
    from connectofly.agents.rollout import run_episode
    from connectofly.envs.fly_env import FlyEnv
    from connectofly.videos.writer import frame_interval, write_video

    name = args.run_name or f"{args.task}-{args.controller}-{args.terrain}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    run_dir = check_folder(args.output_dir / name, "--output-dir")
    env = FlyEnv(task=args.task, terrain=args.terrain, duration=args.duration)
    silence = tuple(n for n in args.silence.split("+") if n)
    options = {"silence": silence} if silence else {}
    if args.lobe is not None:
        if args.controller not in CONNECTOME_CONTROLLERS:
            raise ValueError(f"--lobe: only the connectome controllers {CONNECTOME_CONTROLLERS} have optic lobes")
        options["lobe"] = check_lobe(args.lobe, "--lobe")
    agent = make_controller(args.controller, env, **options)
    interval = None if args.no_video else frame_interval(args.fps, args.playback_speed)
    activity = None
    if hasattr(agent, "activity") and interval is not None:
        cell_types = tuple(t for t in args.cell_types.split(",") if t)
        agent.activity(agent.init(np.random.default_rng(0)), cell_types)  # refuses unknown types before simulating
        activity = lambda carry: agent.activity(carry, cell_types)  # noqa: E731
    log.info("simulating %.2f s: %s on %s terrain", args.duration, args.controller, args.terrain)
    rollout = run_episode(env, agent, seed=args.seed, frame_interval=interval, progress=True, activity=activity)

    summary = {
        "task": args.task,
        "controller": args.controller,
        "terrain": args.terrain,
        "seed": args.seed,
        "silenced": list(silence),
        "duration_s": round(rollout.duration, 6),
        "distance_mm": float(np.linalg.norm(rollout.displacement[:2])),
        "mean_forward_speed_mm_s": rollout.mean_forward_speed(),
        "termination": rollout.termination,
        "task_success_fraction": float(np.mean(rollout.task_success)) if rollout.task_success else None,
        "physics_steps": rollout.physics_steps,
        "steps_per_second": rollout.physics_steps / rollout.wall_time,
        "steady_steps_per_second": rollout.steady_steps_per_second(),
        "real_time_factor": rollout.duration / rollout.wall_time,
    }
    run_dir.mkdir(parents=True, exist_ok=True)  # the input was good and the simulation ran: the run's files
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


class Parser(argparse.ArgumentParser):
    """An argparse parser (and, through ``add_subparsers``, its subcommands' parsers) whose
    errors reach :func:`main` as a ``ValueError``, to end as one line rather than the usage text."""

    def error(self, message: str):
        raise ValueError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="connectofly",
        description=(
            "Connectome-constrained fruit-fly circuits driving the NeuroMechFly body in MuJoCo. "
            "Run 'connectofly COMMAND --help' for the options of a command."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more; on an error, the full traceback")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_walk_parser(subparsers, "walk", "a fly walks with a controller; writes a video and a summary", "walk", "cpg")
    _add_walk_parser(subparsers, "render", "the closed loop (eyes, optic lobes, descending units, legs) in one "
                     "video with neural activity panels", "visual_taxis", "connectome")
    from connectofly.cli import bench, data, dn_readout, lobe_import, optic_flow, train, tuning, vnc

    bench.add_parser(subparsers)
    data.add_parser(subparsers)
    dn_readout.add_parser(subparsers)
    lobe_import.add_parser(subparsers)
    train.add_parser(subparsers)
    optic_flow.add_parser(subparsers)
    tuning.add_parser(subparsers)
    vnc.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; return its exit code.

    Bad input (a refused argument, or one a command refuses before it writes
    anything) and a file that cannot be written end in one line on stderr and
    code 2 (with ``--verbose``, the traceback instead); Ctrl-C ends in one line
    and code 130, as a shell reports SIGINT.
    """
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
        args.handler(args)
    except KeyboardInterrupt:
        print("connectofly: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as error:
        if args is not None and args.verbose:
            raise  # the traceback, for a bug report
        print("connectofly: error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``connectofly dn-readout``: train the connectome agent's descending readout by imitation (DAgger).

    connectofly dn-readout --out outputs/dn_readout_taxis
    connectofly dn-readout --tasks follow_object --teacher ppo_mlp --out outputs/dn_readout_follow
    connectofly dn-readout --motor vnc --out outputs/dn_readout_taxis_vnc
    connectofly dn-readout --tasks looming --teacher visual_escape --out outputs/dn_readout_looming
    connectofly dn-readout --lobe outputs/optic_flow/trainable.npz --out outputs/dn_readout_my_lobe

The package ships one readout per task, ``agents/weights/dn_readout_<task>.npz``
(copy a ``readout.npz`` there to make it the default of ``--controller connectome``).
The readout reads the optic lobes chosen by ``--lobe`` (by default the shipped
optic-flow-trained ones) and its file carries their parameters, so the agent
always runs it on the lobes it was fitted on.

Writes ``readout.npz`` (load it with ``ConnectomeAgent.for_env(env, readout=path)``),
``history.json`` (samples, held-out R² and non-zero weights per round) and
``readout.png`` (the weights per cell type and azimuth sector).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from connectofly.cli.checks import check_folder, check_lobe


def add_parser(subparsers) -> None:
    from connectofly.agents.connectome import MOTOR_STAGES
    from connectofly.agents.optic_lobe_vision import LOBE_CHOICES
    from connectofly.training.dn_readout import TEACHERS, ReadoutConfig

    defaults = ReadoutConfig()
    parser = subparsers.add_parser(
        "dn-readout", help="train the connectome agent's optic lobe → descending readout (imitation, DAgger)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/dn_readout"), help="output folder")
    parser.add_argument("--tasks", default=",".join(defaults.tasks), help="visual tasks to collect episodes on")
    parser.add_argument("--teacher", choices=TEACHERS, default=defaults.teacher,
                        help="whose drive the readout imitates: the vision baseline's (approaching or escaping) "
                             "or the task's PPO-MLP policy")
    parser.add_argument("--episodes", type=int, default=defaults.episodes_per_task, help="episodes per task per round")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="DAgger rounds (round 0: teacher steers)")
    parser.add_argument("--duration", type=float, default=defaults.duration, help="episode length, s")
    parser.add_argument("--motor", choices=MOTOR_STAGES, default=defaults.motor,
                        help="the student's motor stage while it steers: the hybrid walker or the connectome VNC")
    parser.add_argument("--lobe", default=defaults.lobe,
                        help=f"the optic lobes: one of {LOBE_CHOICES} (flyvis's initialization), the trainable.npz "
                             f"of a connectofly optic-flow run, or a flyvis checkpoint or model folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> dict:
    from connectofly.agents.optic_lobe_vision import LOBE_CHOICES
    from connectofly.envs.visual_tasks import VISUAL_TASKS
    from connectofly.training.dn_readout import ReadoutConfig, train

    tasks = tuple(t for t in args.tasks.split(",") if t)
    unknown = [t for t in tasks if t not in VISUAL_TASKS]
    if unknown or not tasks:
        raise ValueError(f"--tasks: unknown {unknown or 'empty list'}; valid: {VISUAL_TASKS}")
    if args.episodes < 2 or args.rounds < 1 or args.duration <= 0:
        raise ValueError("need --episodes ≥ 2, --rounds ≥ 1, --duration > 0")
    check_folder(args.out, "--out")
    if args.lobe not in LOBE_CHOICES:
        check_lobe(args.lobe, "--lobe")
    config = ReadoutConfig(tasks, args.teacher, args.episodes, args.rounds, args.duration, args.motor, args.lobe)
    result = train(config, args.out)
    print(json.dumps(result["history"], indent=2))
    print(f"wrote {args.out}")
    return result

"""``connectofly tuning``: how an optic lobe answers flashes and moving edges.

Runs flyvis's protocols (:mod:`connectofly.circuits.tuning`) on a lobe: ON/OFF
flashes give every cell type's flash response index (FRI) and its contrast
polarity, compared with the 32 types whose polarity is measured in the fly;
ON/OFF edges in 12 directions give the direction selectivity (flyvis's DSI) and
preferred direction of T4a-d (ON edges) and T5a-d (OFF edges), compared with
Maisak et al. 2013. A type that does not answer an edge polarity (peak below
``SILENT_PEAK``) is reported silent, with no DSI or direction. Results depend on
the time step (``tau_eff = max(tau, dt)``), which every table states.

Prints the polarity table and the T4/T5 table and writes, in ``--out``:
``tuning.json`` (every number, including the from-grey DSI variant),
``polarity.md``, ``motion.md``, ``fri.png``, ``flash_responses.png`` and
``t4_t5_tuning.png`` (polar plots).

Example (about a minute on a laptop CPU)::

    connectofly tuning --lobe trained --out outputs/tuning_trained
    connectofly tuning --lobe outputs/optic_flow/trainable.npz --dt 0.02 --out outputs/tuning_mine
    connectofly tuning --lobe ~/flyvis/data/results/flow/0000/000 --out outputs/tuning_flyvis_000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from connectofly.cli.checks import check_folder, check_lobe, non_negative_int, positive_float


def add_parser(subparsers) -> None:
    from connectofly.agents.optic_lobe_vision import EYE_EXTENT, LOBE_CHOICES
    from connectofly.circuits.stimuli import EDGE_SPEEDS

    parser = subparsers.add_parser(
        "tuning",
        help="FRI and polarity of every cell type, T4/T5 direction selectivity, of any optic lobe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lobe", default="trained",
                        help=f"one of {LOBE_CHOICES}, a trainable.npz (connectofly optic-flow or lobe-import), "
                             "or a flyvis checkpoint or model folder (default: %(default)s, the shipped lobe)")
    parser.add_argument("--extent", type=non_negative_int, default=EYE_EXTENT,
                        help="lattice extent in columns (default: %(default)s, the eye's)")
    parser.add_argument("--dt", type=positive_float, default=0.01, help="network time step, s (default: %(default)s)")
    parser.add_argument("--speeds", type=_speeds, default=EDGE_SPEEDS,
                        help="comma-separated edge speeds, columns/s (default: flyvis's six)")
    parser.add_argument("--out", type=Path, default=Path("outputs/tuning"), help="folder written (default: %(default)s)")
    parser.set_defaults(handler=run)


def _speeds(text: str) -> tuple[float, ...]:
    values = tuple(positive_float(part) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError("give at least one speed")
    return values


def run(args: argparse.Namespace) -> dict:
    from connectofly.agents.optic_lobe_vision import LOBE_CHOICES
    from connectofly.circuits import optic_lobe as ol
    from connectofly.circuits import tuning

    trainable = check_lobe(args.lobe, "--lobe")
    out = check_folder(args.out, "--out")
    connectome = ol.load_connectome(args.extent)
    params = ol.OpticLobeParams(trainable, ol.build_graph(connectome))
    print(f"flashes and edges through the {args.lobe} lobe at extent {args.extent}, dt {args.dt:g} s", flush=True)
    measured = tuning.lobe_tuning(params, connectome, args.dt, speeds=args.speeds)
    summary = {"lobe": str(args.lobe), "extent": args.extent, **measured.summary()}
    polarity = tuning.polarity_markdown({args.lobe if args.lobe in LOBE_CHOICES else "lobe": measured.polarity()}, args.dt)
    motion = tuning.motion_markdown(measured.motion(), measured.edges)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuning.json").write_text(json.dumps(summary, indent=2))
    (out / "polarity.md").write_text(polarity + "\n")
    (out / "motion.md").write_text(motion + "\n")
    measured.save_plots(out)
    print(polarity, motion, f"wrote {out}", sep="\n\n")
    return summary

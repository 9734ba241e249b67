"""``connectofly lobe-import``: a flyvis network as our optic lobe's ``trainable.npz``.

Reads a checkpoint of flyvis 1.2.0 (Lappalainen et al. 2024) without torch, a
file ``.../chkpts/chkpt_NNNNN`` or a model folder such as flyvis's pretrained
``flow/0000/000`` (then the checkpoint flyvis's ``NetworkView`` loads by default),
and writes its resting potentials, time constants and synaptic strengths per
cell type and edge type (:mod:`connectofly.circuits.flyvis_checkpoint`), the
file every ``--lobe`` option reads::

    connectofly lobe-import ~/flyvis/data/results/flow/0000/000 --out outputs/flyvis_0000_000.npz
    connectofly walk --task visual_taxis --controller connectome --lobe outputs/flyvis_0000_000.npz

(``--lobe`` also takes the checkpoint or model folder itself.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from connectofly.cli.checks import check_folder


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "lobe-import", help="a flyvis checkpoint or model folder as an optic-lobe trainable.npz (no torch needed)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", type=Path, help="flyvis checkpoint file (chkpts/chkpt_NNNNN) or model folder")
    parser.add_argument("--out", type=Path, default=Path("outputs/flyvis_lobe.npz"), help="the .npz to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> dict:
    from connectofly.circuits import flyvis_checkpoint as fc
    from connectofly.circuits import optic_lobe as ol

    if args.out.suffix != ".npz" or args.out.is_dir():
        raise ValueError(f"--out {args.out}: must be a file name ending in .npz")
    check_folder(args.out.parent, "--out")
    spec = ol.read_spec()
    file = fc.find_checkpoint(args.source)
    checkpoint = fc.read_torch_checkpoint(file)
    trainable = fc.trainable_from_checkpoint(checkpoint, spec, str(file))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ol.save_trainable(args.out, trainable, spec)
    summary = {"checkpoint": str(file), "out": str(args.out)}
    for key in ("iteration", "val_loss", "time"):
        if isinstance(checkpoint.get(key), (int, float, str)):
            summary[key] = checkpoint[key] if isinstance(checkpoint[key], (int, str)) else float(checkpoint[key])
    print(json.dumps(summary, indent=2))
    return summary

"""``connectofly optic-flow``: train the optic lobe by BPTT on synthetic optic flow.

Trains :mod:`connectofly.training.optic_flow` (every field of its ``FlowConfig``
is an option), resuming from the run folder's checkpoints, then measures the
tuning of the trained network beside the untrained one. Writes the trained
parameters, ``trainable.npz`` (per cell type and edge type, so they run at any
extent: ``connectofly dn-readout --lobe <run>/trainable.npz`` puts them in the
closed loop), ``tuning.json``
(flash response indices, T4/T5 direction selectivity and preferred
directions), ``polarity.md`` (ON/OFF polarity of every type against
measurements), ``motion.md`` (T4/T5 direction selectivity against Maisak et al.
2013), ``loss.png``, ``fri.png``, ``flash_responses.png`` and ``t4_t5_tuning.png``
(:mod:`connectofly.circuits.tuning`, the same analysis as ``connectofly tuning``).

Example (about a minute)::

    connectofly optic-flow --steps 200 --out outputs/optic_flow_demo
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields
from pathlib import Path

from connectofly.cli.checks import (
    check_folder, non_negative_float, non_negative_int, positive_float, positive_int,
)

# argparse types of FlowConfig's numeric fields: each refuses what is out of its field's range
FIELD_TYPES = {
    "extent": non_negative_int, "dt": positive_float, "n_frames": positive_int, "warmup_frames": non_negative_int,
    "batch": positive_int, "texture_pixels": positive_int, "pixels_per_column": positive_float,
    "max_speed": positive_float, "learning_rate": non_negative_float,  # 0 freezes a group; below 0 climbs the loss
    "bias_learning_rate": non_negative_float, "decoder_learning_rate": non_negative_float,
    "hidden_channels": non_negative_int, "settle_frames": non_negative_int, "tau_spread": non_negative_float,
    "strength_scale": positive_float, "max_rotation": non_negative_float, "max_expansion": non_negative_float,
    "objects": non_negative_int, "object_radius": positive_float, "object_luminance": non_negative_float,
    "steps": positive_int, "checkpoint_every": positive_int, "seed": non_negative_int,
}


def add_parser(subparsers) -> None:
    from connectofly.training.optic_flow import FlowConfig

    parser = subparsers.add_parser(
        "optic-flow",
        help="train the optic lobe by BPTT on synthetic optic flow; tuning of the result",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/optic_flow"), help="run folder")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out")
    for field in fields(FlowConfig):
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            parser.add_argument(flag, type=FIELD_TYPES.get(field.name, type(field.default)), default=field.default)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> dict:
    from connectofly.cli.train import configure_libraries
    from connectofly.training import optic_flow

    configure_libraries()
    config = optic_flow.FlowConfig(**{k: getattr(args, k) for k in asdict(optic_flow.FlowConfig())})
    check_folder(args.out, "--out")
    losses = optic_flow.train(config, args.out, resume=not args.no_resume)
    if losses:
        print(f"loss: first {losses[0]:.4f}, last {losses[-1]:.4f} ({len(losses)} steps this run)")
    result = optic_flow.evaluate(args.out, config)
    print((args.out / "motion.md").read_text(), end="")
    print(f"wrote {args.out}")
    return result

"""``connectofly vnc``: train the leg-motor VNC to walk, measure it on the body, silence hemilineages.

Three stages, each resumed from the run folder:

1. the in-air rhythm on one leg (:mod:`connectofly.training.vnc_rhythm`) →
   ``rhythm.npz``;
2. the six-leg gait by BPTT in the air (:mod:`connectofly.training.vnc_walk`):
   orbax checkpoints, TensorBoard scalars and ``history.jsonl`` → ``params.npz``;
3. closed loop on the body (:mod:`connectofly.training.vnc_evaluate`):
   speed and stepping frequency against forward drive, steering, backward,
   the phase matrix, silencing experiments → ``summary.json``, ``loss.png``,
   ``speed_vs_drive.png``, ``phase_matrix.png``, ``activity.png``,
   ``silencing.md``, ``walk.mp4``.

Example (about 30 minutes on 2 CPU cores; the weights shipped in
``agents/weights/vnc_walk.npz`` were made by ``--steps 400`` and then a
resumed ``--steps 800``, see docs/vnc.md)::

    connectofly vnc --out outputs/vnc --silence 13A+13B,19A

``--evaluate-only`` re-runs stage 3 on a trained folder (e.g. with other
``--silence`` groups).

Body in the loop: ``--body-generations N`` adds a stage 2b after stage 2
that tunes the MN stage (excitability and resting drive per leg segment and
motor pool) on the MuJoCo C body by evolution strategies
(:mod:`connectofly.training.vnc_body`; ``body_tuning/`` holds its history,
state and ``fitness.png``); ``--steps 0 --init W`` skips the in-air training
and tunes ``W`` as it is.

Fine-tuning: ``--init`` starts stage 2 from trained six-leg parameters
(``embedded`` for the shipped ones) instead of stage 1, with MNs that are
silent or unexcitable revived first
(:func:`connectofly.training.vnc_walk.revive_motor_neurons`);
``--align-phases`` then re-weights each MN's synapses so that it follows its
channel's target phase (:func:`connectofly.training.vnc_walk.align_motor_phases`),
and ``--train readout`` trains only the MN stage (premotor → MN strengths,
MN biases and excitabilities), leaving the rhythm as it is. The run measured
in docs/vnc.md (about 9 minutes on 2 CPU cores)::

    connectofly vnc --out outputs/vnc_readout --init embedded --align-phases --train readout \
        --steps 600 --amplitude-weight 3 --drives 1.0,1.25,1.5,1.75,2.0 --seeds 5 --no-video
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from connectofly.cli.checks import (
    check_folder, check_npz, non_negative_float, non_negative_int, positive_float, positive_int,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "vnc",
        help="train the VNC to walk the body (BPTT), then measure gait, steering and silencing on the body",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/vnc"), help="run folder")
    parser.add_argument("--rhythm-steps", type=positive_int, default=400, help="stage 1 updates")
    parser.add_argument("--steps", type=non_negative_int, default=800,
                        help="stage 2 (gait) updates; 0 with --init: no in-air training, the --init weights as they are")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--init", default=None,
                        help="start stage 2 from these six-leg parameters (params.npz, or 'embedded'); skips stage 1")
    parser.add_argument("--align-phases", action="store_true",
                        help="with --init: re-weight MN synapses to the target phases before stage 2")
    parser.add_argument("--train", choices=("network", "readout"), default="network",
                        help="stage 2 trains the whole network or only the MN stage (readout)")
    parser.add_argument("--learning-rate", type=positive_float, default=None, help="stage 2 Adam learning rate "
                        "(default: GaitConfig's, 0.03)")
    parser.add_argument("--amplitude-weight", type=non_negative_float, default=0.0,
                        help="loss weight of each channel's step amplitude regardless of phase")
    parser.add_argument("--body-generations", type=non_negative_int, default=0,
                        help="then tune the MN stage on the body by evolution strategies for this many generations "
                             "(training/vnc_body.py; about 1 min each on 2 cores)")
    parser.add_argument("--body-population", type=int, default=16, help="ES candidates per generation (even)")
    parser.add_argument("--body-drives", default="1.5,2.0", help="forward drives every ES candidate walks at")
    parser.add_argument("--body-duration", type=positive_float, default=1.5, help="seconds per ES episode on the body")
    parser.add_argument("--evaluate-only", action="store_true", help="skip training; needs OUT/params.npz")
    parser.add_argument("--drives", default="0.75,1.0,1.25,1.5,1.75,2.0,2.25", help="forward drives to test")
    parser.add_argument("--duration", type=positive_float, default=2.0, help="seconds per run on the body")
    parser.add_argument("--seeds", type=positive_int, default=1, help="episodes per forward drive (speeds and falls)")
    parser.add_argument("--proprioception", action="store_true",
                        help="on the body, feed its sensors to the network's proprioceptive units (untrained "
                             "weights; off by default, as the shipped weights were trained and tuned)")
    parser.add_argument("--silence", default="", help="hemilineage groups to silence, e.g. '13A+13B,19A'")
    parser.add_argument("--no-video", action="store_true")
    parser.set_defaults(handler=run)


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> dict:
    from connectofly.cli.train import configure_libraries

    configure_libraries()
    drives = _floats(args.drives, "--drives")
    groups = tuple(tuple(g.split("+")) for g in filter(None, args.silence.split(",")))
    check_folder(args.out, "--out")
    if args.duration <= 0.5:
        raise ValueError(f"--duration {args.duration} must exceed the 0.5 s transient")
    if groups:
        _check_hemilineages(groups)
    params_path = args.out / "params.npz"
    if args.evaluate_only:
        if not params_path.exists():
            raise ValueError(f"{params_path} does not exist: train first (without --evaluate-only)")
    else:
        if args.align_phases and args.init is None:
            raise ValueError("--align-phases needs --init (trained weights to re-weight)")
        body_config = _body_config(args) if args.body_generations else None
        train(args.out, args.rhythm_steps, args.steps, args.seed, _init_path(args.init), args.train,
              args.learning_rate, args.amplitude_weight, args.align_phases)
        if body_config is not None:
            tune_on_body(args.out, body_config)
    from connectofly.training import vnc_evaluate

    model = vnc_evaluate.load_model(params_path)
    summary = vnc_evaluate.evaluate(model, args.out, drives, duration=args.duration, silence=groups,
                                    seed=args.seed, video=not args.no_video, seeds=args.seeds,
                                    proprioception=args.proprioception)
    for row in summary["forward"]:
        print(f"forward {row['descending']['forward']:.2f}: {row['speed_mm_s']:5.1f} mm/s, "
              f"{row['frequency_hz']:4.1f} Hz, tripod index {row['tripod_index']:+.2f}, upright {row['upright']}")
    for row in summary["forward_seeds"]:
        upright_speed = row["mean_speed_upright_mm_s"]
        print(f"forward {row['forward']:.2f}, {len(row['upright'])} episodes: mean {row['mean_speed_mm_s']:5.1f} mm/s, "
              f"upright {row['upright_fraction']:.0%}, mean when upright "
              + ("–" if upright_speed != upright_speed else f"{upright_speed:.1f} mm/s"))  # NaN: none upright
    for name in ("steer_left", "steer_right", "backward"):
        row = summary[name]
        print(f"{name}: {row['speed_mm_s']:.1f} mm/s, yaw {row['yaw_rate_rad_s']:+.2f} rad/s")
    print((args.out / "silencing.md").read_text())
    print(f"wrote {args.out}")
    return summary


def _body_config(args: argparse.Namespace):
    """The ES configuration of ``--body-*`` (checked before anything long runs)."""
    from connectofly.training.vnc_body import BodyTuneConfig

    if args.body_population < 2 or args.body_population % 2:
        raise ValueError(f"--body-population must be an even number >= 2, got {args.body_population}")
    return BodyTuneConfig(drives=_floats(args.body_drives, "--body-drives"), population=args.body_population,
                          generations=args.body_generations, duration=args.body_duration, seed=args.seed,
                          proprioception=args.proprioception)


def tune_on_body(out: Path, config) -> None:
    """Stage 2b: ES on the body from the in-air weights (kept as ``body_tuning/start.npz``) → ``params.npz``.

    Resumed from ``body_tuning/`` like the other stages.
    """
    import shutil

    import numpy as np

    from connectofly.training import vnc_body

    folder = out / "body_tuning"
    folder.mkdir(parents=True, exist_ok=True)
    start = folder / "start.npz"
    if not start.exists():
        shutil.copyfile(out / "params.npz", start)
    tuned, history = vnc_body.tune(start, folder, config)
    np.savez(out / "params.npz", **{k: np.asarray(v) for k, v in tuned.trainable.items()})
    vnc_body.plot_history(history, folder / "fitness.png")
    print(f"body tuning: centre fitness {history[0]['centre_fitness']:.2f} (generation 1) → "
          f"{history[-1]['centre_fitness']:.2f} mm/s (generation {history[-1]['generation']}); {folder}")


def _check_hemilineages(groups: tuple[tuple[str, ...], ...]) -> None:
    """Refuse unknown --silence names before anything long runs."""
    from connectofly.training.vnc_evaluate import premotor_hemilineages

    known = premotor_hemilineages()
    unknown = sorted({name for group in groups for name in group} - known)
    if unknown:
        raise ValueError(f"--silence: unknown hemilineages {unknown}; known: {sorted(known)}")


def _init_path(init: str | None) -> Path | None:
    """The six-leg parameters ``--init`` names, checked to be a whole ``.npz`` of this network's parameters."""
    from connectofly.training import vnc_evaluate

    if init is None:
        return None
    if init == "embedded":
        return vnc_evaluate.embedded_weights()
    path = check_npz(init, "--init")
    try:
        vnc_evaluate.load_model(path)
    except ValueError as error:  # the parameters of another network
        raise ValueError(f"--init {error}") from None
    return path


def train(out: Path, rhythm_steps: int, steps: int, seed: int, init: Path | None = None, groups: str = "network",
          learning_rate: float | None = None, amplitude_weight: float = 0.0, align_phases: bool = False) -> None:
    """Stages 1 and 2 (each skipped when its output exists; stage 2 resumes from checkpoints).

    With ``init``, stage 2 starts from those six-leg parameters, silent MNs revived (and with
    ``align_phases`` MN synapses re-weighted to the target phases), instead of stage 1.
    """
    import shutil

    import numpy as np

    from connectofly.circuits import motor_map, vnc, vnc_connectome
    from connectofly.training import vnc_rhythm, vnc_walk

    if steps == 0:
        if init is None:
            raise ValueError("--steps 0 needs --init (the weights to use as they are)")
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "params.npz").exists():
            shutil.copyfile(init, out / "params.npz")
        return
    config = vnc_walk.GaitConfig(seed=seed, amplitude_weight=amplitude_weight,
                                 **({} if learning_rate is None else {"learning_rate": learning_rate}))
    out.mkdir(parents=True, exist_ok=True)
    one_leg, mmap, spec = vnc_rhythm.build(seed)
    if init is None:
        rhythm_path = out / "rhythm.npz"
        if rhythm_path.exists():
            one_leg = vnc_rhythm.load_trainable(one_leg, str(rhythm_path))
        else:
            one_leg, _ = vnc_rhythm.train(one_leg, mmap, spec.n_sensory, rhythm_steps,
                                          vnc_rhythm.RhythmConfig(seed=seed))
            np.savez(rhythm_path, **{k: np.asarray(v) for k, v in one_leg.trainable.items()})
    six = vnc_walk.six_legs(one_leg, spec, vnc_connectome.load_fanc_t1l_premotor_to_mn())
    if init is not None:
        six, revived = vnc_walk.revive_motor_neurons(vnc_rhythm.load_trainable(six, str(init)), mmap,
                                                     spec.n_sensory, config)
        print(f"revived {int(revived.sum())} silent or unexcitable MNs (front / middle / hind: "
              f"{' / '.join(str(int(n)) for n in revived.sum(axis=1))})")
        if align_phases:
            six, errors = vnc_walk.align_motor_phases(six, mmap, spec.n_sensory, config)
            for when, e in zip(("before", "after"), errors):
                print(f"channel phase error {when} alignment, deg (rows front / middle / hind; "
                      f"columns {', '.join(motor_map.CHANNEL_NAMES)}):\n{np.round(e).astype(int)}")
    trained, history = vnc_walk.train(six, mmap, spec.n_sensory, steps, config, out_dir=out,
                                      trained=vnc_walk.READOUT if groups == "readout" else vnc_walk.TRAINED)
    np.savez(out / "params.npz", **{k: np.asarray(v) for k, v in trained.trainable.items()})
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    if rows:
        vnc_walk.plot_history(rows, out / "loss.png")
    if history:
        print(json.dumps({"first": history[0], "last": history[-1]}, indent=1))
    print("sign violations:", vnc.sign_violations(trained))

"""``connectofly bench``: controllers × tasks × seeds → table, plots, videos; silencing experiments.

    connectofly bench --out outputs/bench                      # default suite, 20 seeds
    connectofly bench --controllers visual_taxis,connectome --tasks visual_taxis --seeds 5
    connectofly bench --controllers connectome --tasks visual_taxis --silence T4a+T4b+T4c+T4d
    connectofly bench --controllers connectome --tasks visual_taxis --silence T4a+T4b+T4c+T4d --adapted
    connectofly bench --controllers connectome --tasks visual_taxis --readout outputs/bptt-VisualTaxis-seed0/readout.npz
    connectofly bench --backend mujoco,mjx --controllers visual_taxis,connectome --tasks visual_taxis

Episodes already in ``OUT/episodes.jsonl`` (same controller, task, terrain, seed
and duration) are reused, so an interrupted run resumes and a new controller
joins an existing table; ``--fresh`` runs everything again. Writes
``episodes.jsonl``, ``episodes.csv``, ``summary.csv``, ``summary.md`` (mean and 95 % interval
of success, speed, time to target, tracking, falls), ``bench.png``, ``paths.png``
and, unless ``--no-video``, one video per controller and task (the first seed)
under ``videos/``. ``--silence`` adds, for each connectome controller, a variant
with those optic-lobe cell types or VNC hemilineages silenced, and writes the
before/after table ``silencing.md``; with ``--adapted`` the variant's readout
measures the lobes' output from the silenced lobes' own rest (see
:meth:`~connectofly.agents.connectome.ConnectomeAgent.for_env`). ``--readout``
adds, for each connectome controller, a variant with that descending readout
(a ``readout.npz`` of ``connectofly train`` or ``connectofly dn-readout``) in
place of the one embedded for the task, labelled by the readout's run folder.
``--backend mjx`` runs the controllers that have an MJX version (``cpg``,
``visual_taxis``, ``visual_escape``, ``ppo_mlp``, ``connectome``, ``connectome_vnc``) with all seeds
batched on the MJX backend, from the same starts as the C episodes of those
seeds (:mod:`connectofly.training.mjx_bench`); ``--backend mujoco,mjx`` puts both
in one table.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from connectofly.cli.checks import check_folder, check_readout, positive_float, positive_int

log = logging.getLogger("connectofly")
DEFAULT_CONTROLLERS = "hybrid,visual_taxis,ppo_mlp,connectome,connectome_vnc"
DEFAULT_TASKS = "visual_taxis,follow_object"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark controllers on tasks over seeds (table, plots, videos)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"), help="output folder")
    parser.add_argument("--controllers", default=DEFAULT_CONTROLLERS, help="comma-separated registered controllers")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated tasks (walk or visual tasks)")
    parser.add_argument("--terrain", default="flat", help="arena terrain")
    parser.add_argument("--seeds", type=positive_int, default=20, help="seeds 0..N-1 per controller and task")
    parser.add_argument("--duration", type=positive_float, default=3.0, help="episode length, s")
    parser.add_argument("--workers", type=positive_int, default=2, help="parallel worker processes (MuJoCo C episodes)")
    parser.add_argument("--backend", default="mujoco",
                        help="comma-separated physics backends: 'mujoco' (C, exact body, one episode per worker), "
                             "'mjx' (primitive body, plain CPG for the hybrid walker, all seeds batched; labels end in @mjx), "
                             "or 'mujoco,mjx' for both side by side")
    parser.add_argument("--silence", default="", help="cells to silence in the connectome controllers, "
                        "'+'-joined optic-lobe types or VNC hemilineages, e.g. 'T5a+T5b+T5c+T5d'")
    parser.add_argument("--adapted", action="store_true",
                        help="with --silence: the descending readout measures rate changes from the silenced optic "
                             "lobes' own rest, not the intact one (DNs adapted to the tonic change)")
    parser.add_argument("--readout", type=Path, default=None,
                        help="a readout.npz to bench beside the embedded one, in each connectome controller")
    parser.add_argument("--no-video", action="store_true", help="skip the per-controller videos")
    parser.add_argument("--fresh", action="store_true",
                        help="run every episode, even those an earlier run in --out already holds")
    parser.set_defaults(handler=run)


def parse_list(text: str, what: str, valid) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ValueError(f"--{what}: unknown {unknown or 'empty list'}; valid: {sorted(valid)}")
    return names


def readout_entries(controllers: list[str], readout: Path | None):
    """The ``--readout`` variants, after checking that the file fits the connectome agent."""
    from connectofly.training.bench import Entry

    if readout is None:
        return []
    connectome = [c for c in controllers if c.startswith("connectome")]
    if not connectome:
        raise ValueError("--readout needs a connectome controller in --controllers")
    check_readout(readout, "--readout")
    return [Entry(c, readout=str(readout)) for c in connectome]


def on_backends(entries: list, backends: list[str], tasks: list[str], terrain: str) -> list:
    """Each entry on each backend, after checking that MJX can run what is asked of it."""
    from dataclasses import replace

    from connectofly.agents.registry import mjx_controllers
    from connectofly.envs.visual_tasks import VISUAL_TASKS

    if "mjx" in backends:
        missing = sorted({e.controller for e in entries} - set(mjx_controllers()))
        if missing:
            raise ValueError(f"--backend mjx: {missing} have no MJX version; those that have: {mjx_controllers()}")
        if terrain != "flat" or any(t not in VISUAL_TASKS for t in tasks):
            raise ValueError(f"--backend mjx runs the visual tasks {VISUAL_TASKS} on flat ground; got --tasks "
                             f"{','.join(tasks)} --terrain {terrain}")
    return [replace(entry, backend=backend) for backend in backends for entry in entries]


def entries_for(controllers: list[str], silence: tuple[str, ...], adapted: bool = False):
    from connectofly.agents.connectome import split_silenced
    from connectofly.circuits.optic_lobe import read_spec
    from connectofly.training.bench import Entry

    if not silence:
        if adapted:
            raise ValueError("--adapted needs --silence")
        return [Entry(c) for c in controllers]
    lobe, hemilineages = split_silenced(read_spec().cell_types, silence)  # refuses unknown names now
    if adapted and not lobe:
        raise ValueError("--adapted needs optic-lobe cell types in --silence")
    silenceable = [c for c in controllers if c.startswith("connectome") and (c == "connectome_vnc" or not hemilineages)]
    if not silenceable:
        raise ValueError(f"--silence {'+'.join(silence)} needs a connectome controller that contains those cells "
                         f"(VNC hemilineages need connectome_vnc)")
    return [Entry(c) for c in controllers] + [Entry(c, silence, adapted) for c in silenceable]


def run(args: argparse.Namespace) -> dict:
    from connectofly.agents.registry import CONTROLLERS
    from connectofly.envs.visual_tasks import VISUAL_TASKS
    from connectofly.training import bench

    check_folder(args.out, "--out")
    controllers = parse_list(args.controllers, "controllers", CONTROLLERS)
    tasks = parse_list(args.tasks, "tasks", ("walk", *VISUAL_TASKS))
    for task in tasks:
        blind_task = task not in VISUAL_TASKS
        if blind_task and any(CONTROLLERS[c].vision for c in controllers):
            raise ValueError(f"--tasks {task} has no vision; drop the visual controllers or the task")
    backends = parse_list(args.backend, "backend", bench.BACKENDS)
    silence = tuple(n for n in args.silence.split("+") if n)
    entries = entries_for(controllers, silence, args.adapted) + readout_entries(controllers, args.readout)
    entries = on_backends(entries, backends, tasks, args.terrain)
    jobs = bench.jobs_for(entries, tasks, list(range(args.seeds)), args.terrain, args.duration,
                          None if args.no_video else args.out / "videos")
    log.info("%d episodes: %s on %s, %d seeds, %d workers", len(jobs), [e.label for e in entries], tasks,
             args.seeds, args.workers)
    done = {} if args.fresh else bench.load_rows(args.out)
    # a held episode runs again when its video is asked for and missing
    todo = [job for job in jobs if bench.job_key(job) not in done or (job.video and not Path(job.video).exists())]
    if len(todo) < len(jobs):
        log.info("reusing %d episodes from %s (--fresh runs them again)", len(jobs) - len(todo), args.out)
    rows = bench.run_suite(todo, workers=args.workers, on_row=lambda row: bench.append_row(row, args.out))
    new = dict(zip(map(bench.job_key, todo), rows))
    rows = [new.get(bench.job_key(job)) or done[bench.job_key(job)] for job in jobs]
    summary = bench.summarize(rows)
    bench.write_results(rows, summary, args.out)
    bench.plot_summary(summary, args.out / "bench.png")
    bench.plot_paths(rows, args.out / "paths.png")
    if silence:
        intact = {(e.controller, e.backend): e.label for e in entries if not e.silence}
        tables = [f"## {e.label}\n\n" + bench.before_after(rows, intact[e.controller, e.backend], e.label)
                  for e in entries if e.silence]
        (args.out / "silencing.md").write_text("\n".join(tables))
    (args.out / "config.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items() if k != "handler"},
                                                     indent=2) + "\n")
    print(bench.markdown_table(summary))
    print(f"wrote {args.out}")
    return {"summary": summary}

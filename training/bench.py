"""The controller benchmark suite behind ``connectofly bench``.

Every controller (:mod:`connectofly.agents.registry`) runs every task on the
same seeds (same layouts, same initial pose noise) on the MuJoCo C backend, or,
for the controllers with an MJX version, batched on MJX
(:mod:`connectofly.training.mjx_bench`; the label ends in ``@mjx``).
Per episode it records:

| metric | meaning |
|---|---|
| ``success`` | ``visual_taxis``/``avoid_obstacles``: reached the target; ``follow_object``: tracking (bearing within ±30°, distance 5 ± 2.5 mm) at least ``FOLLOW_SUCCESS`` of the time, without falling; ``walk``/``looming``: did not fall |
| ``speed`` | mean horizontal speed of the thorax, path length / time, mm/s |
| ``time_to_target`` | s until success (episodes that end on success) |
| ``tracking`` | fraction of steps the task's success flag was on |
| ``fell`` | the fly flipped over or the physics diverged |

Per controller and task the summary gives the mean and a 95 % confidence
interval (percentile bootstrap for means, none below 5 values; Wilson for
rates). Episodes run in parallel
worker processes; each worker builds its env and controllers once.
"""

from __future__ import annotations

import csv
import json
import math
import textwrap
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from connectofly.training.workers import worker_pool

FOLLOW_SUCCESS = 0.5  # fraction of the episode spent tracking
METRICS = ("success", "speed", "time_to_target", "tracking", "fell")


BACKENDS = ("mujoco", "mjx")


@dataclass(frozen=True)
class Entry:
    """One controller variant: a registered controller, optionally with silenced cells
    (``adapted``: its descending readout measured from the silenced lobes' rest) or,
    for a connectome controller, another descending ``readout`` (a ``readout.npz`` path),
    on a physics ``backend`` (``mjx``: batched, :mod:`connectofly.training.mjx_bench`)."""

    controller: str
    silence: tuple[str, ...] = ()
    adapted: bool = False
    readout: str | None = None
    backend: str = "mujoco"

    @property
    def label(self) -> str:
        silenced = f" −{'+'.join(self.silence)}" if self.silence else ""
        readout = ""
        if self.readout:  # a trainer's run folder names its readout.npz
            path = Path(self.readout)
            readout = f" [{path.parent.name if path.stem == 'readout' else path.stem}]"
        backend = " @mjx" if self.backend == "mjx" else ""
        return self.controller + silenced + (" (adapted)" if self.adapted else "") + readout + backend

    def controller_options(self) -> dict:
        """Keyword arguments of the controller's factory for this variant."""
        options = {"silence": self.silence, "adapted": self.adapted} if self.silence else {}
        return options | ({"readout": self.readout} if self.readout else {})


@dataclass(frozen=True)
class Job:
    entry: Entry
    task: str
    terrain: str
    seed: int
    duration: float
    video: str | None = None  # write this episode's video here


def episode_row(job: Job, rollout) -> dict:
    """The metrics of one episode (see the module table)."""
    positions = np.array(rollout.positions)[:, :2]
    path_length = float(np.linalg.norm(np.diff(positions, axis=0), axis=1).sum())
    termination = rollout.termination or ""
    fell = termination == "flipped" or termination.startswith("diverged")
    tracking = float(np.mean(rollout.task_success)) if rollout.task_success else 0.0
    if job.task in ("visual_taxis", "avoid_obstacles"):
        success = termination == "success"
    elif job.task == "follow_object":
        success = tracking >= FOLLOW_SUCCESS and not fell
    else:
        success = not fell
    return {
        "controller": job.entry.label, "task": job.task, "terrain": job.terrain, "seed": job.seed,
        "success": success, "speed": path_length / rollout.duration if rollout.duration else 0.0,
        "time_to_target": rollout.duration if termination == "success" else math.nan,
        "tracking": tracking, "fell": fell, "termination": termination or "time limit",
        "duration": rollout.duration, "duration_limit": job.duration, "wall_s": rollout.wall_time,
        "path": positions[:: max(1, len(positions) // 200)].round(3).tolist(),
    }


_CACHE: dict = {}


def _env_and_agent(job: Job):
    from connectofly.agents.registry import make_controller
    from connectofly.envs.fly_env import FlyEnv

    env_key = (job.task, job.terrain, job.duration)
    if env_key not in _CACHE:
        _CACHE[env_key] = FlyEnv(task=job.task, terrain=job.terrain, duration=job.duration)
    env = _CACHE[env_key]
    agent_key = (env_key, job.entry)
    if agent_key not in _CACHE:
        _CACHE[agent_key] = make_controller(job.entry.controller, env, **job.entry.controller_options())
    return env, _CACHE[agent_key]


def run_job(job: Job) -> dict:
    """Run one episode (and write its video if asked); in a worker process."""
    from connectofly.agents.rollout import run_episode
    from connectofly.videos.writer import DEFAULT_FPS, DEFAULT_PLAYBACK_SPEED, frame_interval, write_video

    env, agent = _env_and_agent(job)
    interval = frame_interval(DEFAULT_FPS, DEFAULT_PLAYBACK_SPEED) if job.video else None
    activity = getattr(agent, "activity", None) if job.video else None
    rollout = run_episode(env, agent, seed=job.seed, frame_interval=interval, activity=activity)
    if job.video:
        write_video(env.model, rollout.frames, job.video, camera=env.unwrapped.physics.index.camera)
    return episode_row(job, rollout)


def run_suite(jobs: list[Job], workers: int = 1, progress: bool = True,
              on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """All jobs' rows, in job order: MuJoCo C episodes one by one (``workers`` > 1 runs them
    in spawned processes), MJX ones batched per controller variant and task. ``on_row`` sees
    each row as soon as its episode ends (to save it: a failing episode then loses only itself)."""
    mjx = [job for job in jobs if job.entry.backend == "mjx"]
    if mjx:
        from connectofly.training.mjx_bench import run_jobs

        done = dict(zip(map(id, mjx), run_jobs(mjx, progress, on_row)))
        c_rows = iter(run_suite([job for job in jobs if job.entry.backend != "mjx"], workers, progress, on_row))
        return [done[id(job)] if id(job) in done else next(c_rows) for job in jobs]
    with tqdm(total=len(jobs), desc="episodes", unit="ep", disable=not progress) as bar:
        if workers <= 1:
            rows = []
            for job in jobs:
                rows.append(run_job(job))
                on_row(rows[-1])
                bar.update()
            return rows
        with worker_pool(workers) as pool:
            futures = [pool.submit(run_job, job) for job in jobs]
            for future in as_completed(futures):
                if future.exception() is None:
                    on_row(future.result())
                bar.update()
            return [future.result() for future in futures]

MIN_FOR_INTERVAL = 5  # fewer finite values give the mean alone
BOOTSTRAP_RESAMPLES = 10_000


def mean_interval(values) -> tuple[float, float, float]:
    """Mean and its 95 % percentile-bootstrap interval over the finite ``values``.

    A bootstrap interval stays inside the values' range (a time to target is
    never negative, a tracking fraction never above 1), which a Student-t
    interval on a few skewed samples does not. Below ``MIN_FOR_INTERVAL``
    values there is no interval (nan bounds); with no values, all nan. The
    resampling is seeded, so a summary is reproducible.
    """
    values = np.asarray([v for v in values if np.isfinite(v)], float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < MIN_FOR_INTERVAL:
        return mean, math.nan, math.nan
    resamples = np.random.default_rng(0).integers(0, len(values), (BOOTSTRAP_RESAMPLES, len(values)))
    low, high = np.percentile(values[resamples].mean(axis=1), [2.5, 97.5])
    return mean, float(low), float(high)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float, float]:
    """Rate and its 95 % Wilson score interval."""
    if n == 0:
        return math.nan, math.nan, math.nan
    rate = successes / n
    centre = (rate + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return rate, centre - half, centre + half


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (controller, task): n, and each metric's mean with its 95 % interval."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["controller"], row["task"]), []).append(row)
    summary = []
    for (controller, task), episodes in groups.items():
        line = {"controller": controller, "task": task, "n": len(episodes)}
        for metric in METRICS:
            values = [r[metric] for r in episodes]
            if metric in ("success", "fell"):
                estimate = wilson_interval(int(sum(values)), len(values))
            else:
                estimate = mean_interval(values)
            line.update({metric: estimate[0], f"{metric}_low": estimate[1], f"{metric}_high": estimate[2]})
        summary.append(line)
    return summary


def _cell(line: dict, metric: str, percent: bool) -> str:
    scale, unit = (100.0, "%") if percent else (1.0, "")
    mean, low, high = (line[metric] * scale, line[f"{metric}_low"] * scale, line[f"{metric}_high"] * scale)
    if math.isnan(mean):
        return "–"
    if math.isnan(low):
        return f"{mean:.2f}{unit}" if not percent else f"{mean:.0f}{unit}"
    return f"{mean:.0f}{unit} [{low:.0f}, {high:.0f}]" if percent else f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def markdown_table(summary: list[dict]) -> str:
    header = ("| task | controller | n | success | speed mm/s | time to target s | tracking | falls |\n"
              "|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {s['task']} | {s['controller']} | {s['n']} | {_cell(s, 'success', True)} | {_cell(s, 'speed', False)} "
        f"| {_cell(s, 'time_to_target', False)} | {_cell(s, 'tracking', False)} | {_cell(s, 'fell', True)} |\n"
        for s in summary
    )
    return header + body


def job_key(job: Job) -> tuple:
    return (job.entry.label, job.task, job.terrain, job.seed, job.duration)


def row_key(row: dict) -> tuple:
    return (row["controller"], row["task"], row["terrain"], row["seed"], row["duration_limit"])


def load_rows(out: Path) -> dict[tuple, dict]:
    """Episodes an earlier run wrote to ``out/episodes.jsonl``, by :func:`row_key`."""
    path = out / "episodes.jsonl"
    if not path.exists():
        return {}
    return {row_key(row): row for row in map(json.loads, path.read_text().splitlines())}


def append_row(row: dict, out: Path) -> None:
    """Add one episode to ``out/episodes.jsonl`` (read back by :func:`load_rows`)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "episodes.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def write_results(rows: list[dict], summary: list[dict], out: Path) -> None:
    """``episodes.csv`` (``rows`` without their paths), ``summary.csv`` and ``summary.md``;
    ``episodes.jsonl`` keeps every episode ever run in ``out``, with paths (:func:`load_rows`)."""
    out.mkdir(parents=True, exist_ok=True)
    kept = load_rows(out) | {row_key(row): row for row in rows}
    (out / "episodes.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept.values()))
    columns = [k for k in rows[0] if k != "path"]
    with open(out / "episodes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    (out / "summary.md").write_text(markdown_table(summary))


def plot_summary(summary: list[dict], path: Path) -> None:
    """Success rate and speed per controller, one group of bars per task, 95 % intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(s["task"] for s in summary))
    controllers = list(dict.fromkeys(s["controller"] for s in summary))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(controllers)
    for ax, metric, scale, label in ((axes[0], "success", 100, "success rate (%)"), (axes[1], "speed", 1, "speed (mm/s)")):
        for i, controller in enumerate(controllers):
            lines = [next((s for s in summary if s["task"] == t and s["controller"] == controller), None) for t in tasks]
            x = np.arange(len(tasks)) + (i - (len(controllers) - 1) / 2) * width
            mean = np.array([scale * s[metric] if s else np.nan for s in lines])
            low = np.array([scale * s[f"{metric}_low"] if s else np.nan for s in lines])
            high = np.array([scale * s[f"{metric}_high"] if s else np.nan for s in lines])
            errors = np.nan_to_num(np.stack([mean - low, high - mean]))
            ax.bar(x, mean, width, yerr=errors, capsize=3, label=controller)
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_ylabel(label)
    axes[0].set_ylim(0, 105)
    # Below the panels, not inside one: a legend inside a panel hides the bars it labels.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(controllers), 6), fontsize=9, frameon=False)
    n = max(s["n"] for s in summary)
    fig.suptitle(f"connectofly bench: {n} seeds per controller and task (error bars: 95 % intervals)")
    legend_rows = -(-len(controllers) // 6)
    fig.tight_layout(rect=(0, 0.06 * legend_rows, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_paths(rows: list[dict], path: Path) -> None:
    """The thorax paths of every episode, one panel per (task, controller); green: success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    controllers = list(dict.fromkeys(r["controller"] for r in rows))
    fig, axes = plt.subplots(len(tasks), len(controllers), figsize=(3.2 * len(controllers), 3.2 * len(tasks)),
                             squeeze=False, sharex=True, sharey=True)
    for (i, task), (j, controller) in ((a, b) for a in enumerate(tasks) for b in enumerate(controllers)):
        ax = axes[i, j]
        episodes = [r for r in rows if r["task"] == task and r["controller"] == controller]
        for r in episodes:
            xy = np.array(r["path"])
            ax.plot(xy[:, 0], xy[:, 1], color="tab:green" if r["success"] else "tab:red", lw=0.8)
        label = textwrap.fill(controller, 32)  # silenced variants' labels run long
        ax.set_title(f"{label}\n{task}: {sum(r['success'] for r in episodes)}/{len(episodes)}", fontsize=9)
        ax.set_aspect("equal")
    fig.suptitle("thorax paths from the origin (facing +x); green: success, red: not")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def before_after(rows: list[dict], intact: str, silenced: str) -> str:
    """Markdown table comparing a silenced variant with the intact controller, task by task."""
    summary = {(s["controller"], s["task"]): s for s in summarize(rows)}
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lines = ["| task | metric | intact | silenced | change |", "|---|---|---|---|---|"]
    for task in tasks:
        before, after = summary.get((intact, task)), summary.get((silenced, task))
        if before is None or after is None:
            continue
        for metric, percent in (("success", True), ("speed", False), ("tracking", False), ("time_to_target", False)):
            change = after[metric] - before[metric]
            shown = f"{100 * change:+.0f} points" if percent else f"{change:+.2f}"
            lines.append(f"| {task} | {metric} | {_cell(before, metric, percent)} | {_cell(after, metric, percent)} "
                         f"| {shown} |")
    return "\n".join(lines) + "\n"


def jobs_for(entries: list[Entry], tasks: list[str], seeds: list[int], terrain: str, duration: float,
             video_dir: Path | None) -> list[Job]:
    """Every entry on every task and seed; the first seed's episode writes a video when ``video_dir`` is set."""
    jobs = []
    for task in tasks:
        for entry in entries:
            for seed in seeds:
                video = None
                if video_dir is not None and seed == seeds[0]:
                    name = (entry.label.replace(" −", "-minus-").replace("+", "_").replace(" [", "-")
                            .replace("]", "").replace(" @", "-"))
                    video = str(video_dir / f"{task}-{name}.mp4")
                jobs.append(Job(entry, task, terrain, seed, duration, video))
    return jobs

"""``connectofly bench --backend mjx``: all seeds of a controller and task as one batch on MJX.

Each (controller, task) runs its seeds as a ``vmap`` of the closed loop of
:mod:`connectofly.agents.mjx_closed_loop`, in jitted chunks of ``CHUNK`` seconds
(a progress bar; the batch stops once every episode has ended). Episode ``s``
starts as the C backend's episode ``s`` does (:func:`~connectofly.agents.mjx_closed_loop.seeded_start`:
same layout, joint noise and motor state), and ends where ``FlyEnv`` would
have ended it: diverged, flipped, caught, or on success for the tasks that end
on it; what was simulated after that is discarded. The rows are
:func:`connectofly.training.bench.episode_row`'s, so MJX and C episodes share one
table (the controller's label carries ``@mjx``).

Differences from the C backend, by design of the MJX backend: the body is the
mesh-free primitive NeuroMechFly on flat ground, a controller that walks with
the hybrid walker on C walks with the plain CPG (no reflexes), and ``wall_s``
is the batch's wall time over its episodes.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from tqdm.auto import tqdm

from connectofly.agents import mjx_closed_loop as loop
from connectofly.agents.rollout import Rollout
from connectofly.envs import mjx_physics
from connectofly.envs.fly_env import substeps_per_control
from connectofly.envs.mjx_env import diverged
from connectofly.envs.tasks import is_flipped
from connectofly.training.bench import Job, episode_row

CHUNK = 0.1  # simulated seconds per jitted call


class StepRecord(NamedTuple):
    """What one control step leaves of each fly (after its physics)."""

    position: jax.Array  # (3,) thorax, mm
    success: jax.Array  # the task's success flag
    failure: jax.Array  # the task's failure (looming: caught)
    flipped: jax.Array
    diverged: jax.Array
    qpos: jax.Array  # for the video
    mocap_pos: jax.Array
    mocap_quat: jax.Array


def step_record(scene: loop.Scene) -> Callable:
    thorax = scene.body.index.thorax_body

    def record(data) -> StepRecord:
        body = mjx_physics.read(scene.body, data)
        outcome = scene.task.score(body, data.mocap_pos[:, :2])  # the objects are where they are at data.time
        return StepRecord(data.xpos[thorax], outcome.success, outcome.failure, is_flipped(body), diverged(data),
                          data.qpos, data.mocap_pos, data.mocap_quat)

    return record


def pose_record(scene: loop.Scene, data) -> StepRecord:
    """What the path and a video need of a state that no step has reached yet (the start);
    its flags are off."""
    false = jnp.bool_(False)
    return StepRecord(data.xpos[scene.body.index.thorax_body], false, false, false, false, data.qpos,
                      data.mocap_pos, data.mocap_quat)


def termination_flags(records: StepRecord, ends_on_success: bool) -> np.ndarray:
    """Where ``FlyEnv`` would end an episode, per step (any leading shape)."""
    task_end = records.failure | (records.success & ends_on_success)
    return np.asarray(records.diverged | records.flipped | task_end)


def termination(records: StepRecord, ends_on_success: bool) -> np.ndarray:
    """(n_steps,) per step of one episode: the reason ``FlyEnv`` would end it there, '' if none
    (physics failures first, as in ``FlyEnv.step``)."""
    reasons = np.full(len(records.success), "", dtype=object)
    if ends_on_success:
        reasons[np.asarray(records.success)] = "success"
    reasons[np.asarray(records.failure)] = "caught"
    reasons[np.asarray(records.flipped)] = "flipped"
    reasons[np.asarray(records.diverged)] = "diverged: non-finite or runaway MJX state"
    return reasons


def episode_rollout(start: StepRecord, records: StepRecord, scene: loop.Scene, wall_time: float) -> Rollout:
    """One fly's records (``(n_steps, ...)``) cut where its episode ended, as a :class:`Rollout`."""
    reasons = termination(records, scene.task.ends_on_success)
    ended = np.flatnonzero(reasons != "")
    n = int(ended[0]) + 1 if len(ended) else len(reasons)
    positions = [np.asarray(start.position)] + list(np.asarray(records.position[:n]))
    return Rollout(times=list(scene.control_dt * np.arange(n + 1)), positions=positions,
                   task_success=[bool(s) for s in np.asarray(records.success[:n])],
                   termination=reasons[n - 1] or None, wall_time=wall_time,
                   physics_steps=n * substeps_per_control(scene.control_dt))


def run_batch(scene: loop.Scene, controller: loop.Controller, seeds: list[int], duration: float,
              progress: bool = True) -> tuple[StepRecord, StepRecord, float]:
    """Every seed's episode, batched: the start records ``(n_seeds, ...)``, the step records
    ``(n_seeds, n_steps, ...)`` and the wall time (compile included)."""
    began = time.perf_counter()
    starts = jax.tree.map(lambda *x: jnp.stack(x), *[loop.seeded_start(scene, controller.motor, s) for s in seeds])
    record = step_record(scene)
    params = controller.params
    chunk_frames = max(1, int(round(CHUNK * scene.vision_hz)))
    n_frames = int(round(duration * scene.vision_hz))

    @jax.jit
    def begin(starts):
        states = jax.vmap(lambda s: loop.start_state(scene, controller, params, s))(starts)
        return states, jax.vmap(lambda data: pose_record(scene, data))(states.data)

    @jax.jit
    def advance(states, layouts, first_frame):
        one = lambda state, layout: loop.run_frames(scene, controller, params, layout, state,  # noqa: E731
                                                    chunk_frames, record, first_frame)
        states, records = jax.vmap(one)(states, layouts)
        return states, jax.tree.map(lambda r: r.reshape(r.shape[0], -1, *r.shape[3:]), records)

    states, start = begin(starts)
    chunks = []
    ended = np.zeros(len(seeds), bool)
    bar = tqdm(total=n_frames, desc=f"{len(seeds)} flies on MJX", unit="frame", disable=not progress, leave=False)
    for first in range(0, n_frames, chunk_frames):
        states, records = advance(states, starts.layout, first)
        chunks.append(jax.tree.map(np.asarray, records))
        bar.update(min(chunk_frames, n_frames - first))
        ended |= (termination_flags(chunks[-1], scene.task.ends_on_success)).any(axis=1)
        if ended.all():
            break
    bar.close()
    steps = int(round(duration / scene.control_dt))
    records = jax.tree.map(lambda *c: np.concatenate(c, axis=1)[:, :steps], *chunks)
    return jax.tree.map(np.asarray, start), records, time.perf_counter() - began


def write_video(scene: loop.Scene, start: StepRecord, records: StepRecord, rollout: Rollout, path: str) -> None:
    """One episode's video: the primitive body's 3-D view and both eyes, ray-cast again from the recorded poses."""
    from connectofly.envs import raycast
    from connectofly.envs.body import BodyIndex
    from connectofly.videos import writer
    from connectofly.videos.frames import FrameState

    interval = writer.frame_interval(writer.DEFAULT_FPS, writer.DEFAULT_PLAYBACK_SPEED)
    n_steps = len(rollout.times) - 1
    steps = np.unique(np.ceil(np.arange(0.0, rollout.duration + 1e-9, interval) / scene.control_dt - 1e-6)
                      .astype(int))
    data = mujoco.MjData(scene.model)
    frames = []
    for step in steps[steps <= n_steps]:
        pose = start if step == 0 else jax.tree.map(lambda r: r[step - 1], records)
        data.qpos[:], data.mocap_pos[:], data.mocap_quat[:] = pose.qpos, pose.mocap_pos, pose.mocap_quat
        mujoco.mj_kinematics(scene.model, data)
        mujoco.mj_camlight(scene.model, data)
        frames.append(FrameState(step * scene.control_dt, data.qpos.copy(), data.mocap_pos.copy(),
                                 data.mocap_quat.copy(), np.asarray(raycast.render_from_data(*scene.eye, data))))
    writer.write_video(scene.model, frames, path, camera=BodyIndex.from_model(scene.model).camera)


_SCENES: dict[str, loop.Scene] = {}


def run_jobs(jobs: list[Job], progress: bool = True, on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """The rows of MJX ``jobs`` (in job order), one batch per (controller variant, task, duration)."""
    from connectofly.agents.registry import make_mjx_controller

    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.entry, job.task, job.duration), []).append(job)
    rows = {}
    for (entry, task, duration), batch in groups.items():
        scene = _SCENES.setdefault(task, loop.make_scene(task))
        controller = make_mjx_controller(entry.controller, scene, **entry.controller_options())
        if progress:
            tqdm.write(f"{entry.label} on {task}: {len(batch)} episodes")
        start, records, wall = run_batch(scene, controller, [job.seed for job in batch], duration, progress)
        for i, job in enumerate(batch):
            fly = jax.tree.map(lambda r: r[i], records)
            rollout = episode_rollout(jax.tree.map(lambda r: r[i], start), fly, scene, wall / len(batch))
            if job.video:
                write_video(scene, jax.tree.map(lambda r: r[i], start), fly, rollout, job.video)
            rows[id(job)] = episode_row(job, rollout)
            on_row(rows[id(job)])
    return [rows[id(job)] for job in jobs]

"""Running an agent in an environment and recording what happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from connectofly.videos.frames import FrameState, snapshot


@dataclass
class Rollout:
    """What one episode produced. Frames are world snapshots for later rendering."""

    times: list[float] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)  # thorax, mm
    forward_speeds: list[float] = field(default_factory=list)
    yaw_rates: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    task_success: list[bool] = field(default_factory=list)  # visual tasks: the task's success flag each step
    frames: list[FrameState] = field(default_factory=list)  # for videos
    termination: str | None = None
    wall_time: float = 0.0
    physics_steps: int = 0
    step_seconds: list[float] = field(default_factory=list)  # wall time of each control step (agent and env)

    @property
    def duration(self) -> float:
        return self.times[-1] if self.times else 0.0

    @property
    def displacement(self) -> np.ndarray:
        return self.positions[-1] - self.positions[0]

    def steady_steps_per_second(self, warm_up: float = 0.25) -> float:
        """Physics steps per wall second over the control steps after the first ``warm_up``
        fraction of them: the rate once compilation and first-use costs are behind."""
        timed = self.step_seconds[int(warm_up * len(self.step_seconds)):]
        if not timed:
            return float("nan")
        return self.physics_steps / len(self.step_seconds) * len(timed) / sum(timed)

    def mean_forward_speed(self) -> float:
        """Displacement along the initial heading (x) per second, mm/s."""
        return float(self.displacement[0] / self.duration) if self.duration else 0.0


def run_episode(env, agent, *, seed: int = 0, frame_interval: float | None = None, progress: bool = False,
                activity: Callable[[Any], dict] | None = None, options: dict | None = None) -> Rollout:
    """Roll ``agent`` out in ``env`` (a connectofly FlyEnv, possibly wrapped) to the end.

    Args:
        frame_interval: record the body state every this many simulated seconds
            (for a video); None records no frames.
        activity: ``carry -> dict`` of the agent's neural activity, recorded with
            each frame (e.g. :meth:`connectofly.agents.connectome.ConnectomeAgent.activity`).
        options: passed to ``env.reset`` (e.g. ``{"layout": trajectory}`` to place a visual task's objects).
    """
    import time

    base = env.unwrapped
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed, options=options)
    params, carry = agent.default_params(), agent.init(rng)
    rollout = Rollout(times=[info["time"]], positions=[obs["thorax_position"].copy()])
    next_frame = 0.0
    n_steps = int(round(base.duration / base.control_dt))
    bar = tqdm(total=n_steps, desc="simulating", unit="step", disable=not progress, leave=False)
    start = time.perf_counter()
    done = False
    while not done:
        if frame_interval is not None and info["time"] >= next_frame - 1e-9:
            recorded = None if activity is None else activity(carry)
            rollout.frames.append(snapshot(base.physics.data, obs.get("vision"), recorded))
            next_frame += frame_interval
        step_start = time.perf_counter()
        carry, action = agent.act(params, carry, obs, rng)
        obs, reward, terminated, truncated, info = env.step(action)
        rollout.step_seconds.append(time.perf_counter() - step_start)
        rollout.times.append(info["time"])
        rollout.positions.append(obs["thorax_position"].copy())
        rollout.forward_speeds.append(info["forward_speed"])
        rollout.yaw_rates.append(info["yaw_rate"])
        rollout.rewards.append(float(reward))
        rollout.task_success.append(bool(info.get("success", False)))
        rollout.physics_steps += base.n_substeps
        done = terminated or truncated
        if terminated:
            rollout.termination = info["termination"]
        bar.update()
    rollout.wall_time = time.perf_counter() - start
    bar.close()
    return rollout

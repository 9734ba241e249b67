"""A visual task seen from the descending neurons: the action is the 2-D turning drive.

:class:`DriveEnv` wraps a visual :class:`~connectofly.envs.fly_env.FlyEnv`
and NeuroMechFly v2's hybrid walker (:class:`~connectofly.agents.hybrid.HybridAgent`).
Every ``decision_dt`` (50 ms) a policy sets the descending drive (left, right)
that the walker's CPG turns and walks by (:func:`~connectofly.agents.cpg.with_descending_drive`),
and sees what the eyes see: the mean photoreceptor reading (yellow + pale
channel) in each of the :data:`~connectofly.agents.connectome.N_REGIONS`
regions of each eye, the same regions the connectome agent's readout pools
its optic-lobe types over (:func:`~connectofly.agents.connectome.visual_regions`).
So a policy learnt here differs from the connectome agent only in what lies
between the photoreceptors and the descending drive: an MLP instead of the
optic lobes and a sparse linear readout.

With ``observation="optic_lobe"`` the policy sees what the connectome agent's
descending readout sees instead: both optic lobes run in the loop (eyes at
``DEFAULT_VISION_HZ``, as in the benchmark) and the observation is
:func:`~connectofly.agents.connectome.readout_features` (2 eyes × 34 output
types × ``N_REGIONS``), so a policy trained here can be the connectome agent's
readout (:mod:`connectofly.training.ppo_drive`, ``--policy connectome``).

Actions are in ``[-1, 1]`` (a reinforcement-learning policy's range) and map
onto the walker's drive range piecewise linearly with 0 at a straight walk
(:func:`drive_from_unit`). The reward is the task's (``info["task_reward"]``,
mm/s of approach for ``visual_taxis``), averaged over the control steps of the
decision; FlyEnv's action-rate cost is left out, because it prices the fixed
walker's joint commands, which the drive does not choose. It is a plain
gymnasium env, so any RL library trains on it; ``connectofly train --algo ppo
--env VisualTaxis`` uses brax's PPO loss (:mod:`connectofly.training.ppo_drive`).

    env = DriveEnv("visual_taxis")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([0.0, -0.5]))  # turn right
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from connectofly.agents.connectome import N_REGIONS, visual_regions
from connectofly.agents.hybrid import HybridAgent, steered
from connectofly.agents.visual_taxis import DRIVE_RANGE, env_ommatidium_directions
from connectofly.envs.fly_env import DEFAULT_VISION_HZ, FlyEnv
from connectofly.envs.kinematics import array_module
from connectofly.envs.visual_tasks import VISUAL_TASKS

DECISION_DT = 0.05  # s between drive decisions (20 Hz)
STRAIGHT_DRIVE = 1.0  # the drive of both sides that action 0 maps to: the walker's normal straight walk
N_FEATURES = 2 * N_REGIONS
OBSERVATIONS = ("photoreceptors", "optic_lobe")


def drive_from_unit(unit):
    """(left, right) drive from actions in ``[-1, 1]``: -1 → DRIVE_RANGE[0] (stepping back),
    0 → STRAIGHT_DRIVE, +1 → DRIVE_RANGE[1]; linear on each side, clipped. NumPy (float64) or JAX."""
    low, high = DRIVE_RANGE
    xp = array_module(unit)
    unit = xp.clip(unit if xp is not np else np.asarray(unit, np.float64), -1.0, 1.0)
    return STRAIGHT_DRIVE + unit * xp.where(unit >= 0, high - STRAIGHT_DRIVE, STRAIGHT_DRIVE - low)


def photoreceptor_features(vision, regions):
    """(2 N_REGIONS,) float32 mean photoreceptor reading of each eye's regions, left eye first.
    NumPy or JAX.

    ``vision`` is the env's (2, 721, 2) readout; ``regions`` the (2, N_REGIONS, 721)
    averaging weights of :func:`~connectofly.agents.connectome.visual_regions`.
    """
    xp = array_module(vision)
    return xp.einsum("erk,ek->er", regions, vision.sum(axis=-1)).reshape(-1).astype(np.float32)


def eye_regions(fly: FlyEnv) -> np.ndarray:
    """The region weights of a visual FlyEnv's eyes (the head is fixed to the thorax, so any pose gives them)."""
    return visual_regions(env_ommatidium_directions(fly))


def steps_per_decision(control_dt: float, decision_dt: float = DECISION_DT) -> int:
    steps = decision_dt / control_dt
    if not (steps >= 1 and abs(steps - round(steps)) < 1e-6):
        raise ValueError(f"decision_dt={decision_dt} s must be a whole number (≥ 1) of control steps of {control_dt} s")
    return int(round(steps))


class DriveEnv(gym.Env):
    """A visual task whose action is the descending drive (see the module docstring).

    Args:
        task: a visual task (``visual_taxis``, ``follow_object``, ``avoid_obstacles``, ``looming``).
        duration: episode length, s.
        decision_dt: seconds between actions; with ``observation="photoreceptors"``
            the eyes are rendered at this rate.
        observation: one of ``OBSERVATIONS`` (module docstring).
        terrain: the ground (:data:`~connectofly.envs.body.TERRAINS`).
        lobe: with ``observation="optic_lobe"``, the optic lobes (``"trained"``, ``"untrained"``,
            a ``trainable.npz`` or the parameters: :func:`~connectofly.agents.optic_lobe_vision.lobe_parameters`).
    """

    metadata = {"render_modes": []}

    def __init__(self, task: str = "visual_taxis", duration: float = 3.0, decision_dt: float = DECISION_DT,
                 observation: str = "photoreceptors", terrain: str = "flat", lobe="trained") -> None:
        if task not in VISUAL_TASKS:
            raise ValueError(f"task {task!r} is not a visual task; valid: {VISUAL_TASKS}")
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation {observation!r} is not one of {OBSERVATIONS}")
        vision_hz = 1.0 / decision_dt if observation == "photoreceptors" else DEFAULT_VISION_HZ
        self.fly = FlyEnv(task=task, terrain=terrain, duration=duration, vision_hz=vision_hz)
        self.n_steps = steps_per_decision(self.fly.control_dt, decision_dt)
        self.decision_dt = decision_dt
        self.walker = HybridAgent(self.fly.control_dt)
        self.regions = eye_regions(self.fly)
        self.lobes = None  # the connectome agent whose lobes and features we use (its readout is not)
        self.observation_space = gym.spaces.Box(0.0, 2.0, shape=(N_FEATURES,), dtype=np.float32)
        if observation == "optic_lobe":
            from connectofly.agents.connectome import ConnectomeAgent, resting_readout
            from connectofly.circuits.optic_lobe import read_spec

            self.lobes = ConnectomeAgent.for_env(self.fly, resting_readout(len(read_spec().output_types)), lobe=lobe)
            size = 2 * len(self.lobes.cell_types) * N_REGIONS  # rate changes: unbounded
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._obs: dict | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._obs, info = self.fly.reset(seed=seed, options=options)
        self._params = self.walker.default_params()
        self._carry = self.walker.init(self.np_random)
        if self.lobes is not None:
            self._lobe_carry = self.lobes.init(self.np_random)
            self._sense()
        return self._observation(), info

    def _sense(self) -> None:
        """Advance the optic lobes by the current observation."""
        self._lobe_carry, self._features = self.lobes.sense(self._lobe_carry, self._obs["vision"])

    def _observation(self) -> np.ndarray:
        if self.lobes is None:
            return photoreceptor_features(self._obs["vision"], self.regions)
        return np.asarray(self._features, np.float32).reshape(-1)

    def step(self, action):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, np.float64)
        if action.shape != (2,) or not np.isfinite(action).all():
            raise ValueError(f"action must be 2 finite numbers in [-1, 1] (left, right), got {action!r}")
        params = steered(self._params, drive_from_unit(action))
        total, steps = 0.0, 0
        terminated = truncated = False
        while steps < self.n_steps and not (terminated or truncated):
            self._carry, joint_action = self.walker.act(params, self._carry, self._obs, self.np_random)
            self._obs, _, terminated, truncated, info = self.fly.step(joint_action)
            if self.lobes is not None:
                self._sense()
            total += info["task_reward"]
            steps += 1
        info["drive"] = drive_from_unit(action)
        return self._observation(), total / steps, terminated, truncated, info

    def close(self) -> None:
        self.fly.close()

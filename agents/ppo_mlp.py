"""The PPO-MLP controller: a PPO-trained MLP from the photoreceptors to the descending drive.

Every 50 ms the agent pools the eyes' photoreceptor readings into the regions
of :func:`~connectofly.envs.drive_env.photoreceptor_features`, its policy
(:class:`~connectofly.training.ppo_drive.DrivePolicy`, mean action) sets the
2-D descending drive, and NeuroMechFly v2's hybrid walker turns and walks by
it in between: exactly what the policy was trained on in
:class:`~connectofly.envs.drive_env.DriveEnv`, now on any visual FlyEnv (for
``connectofly bench`` and ``render``). One policy per task is embedded
(``agents/weights/ppo_mlp_<task>.npz``, trained by
``connectofly train --algo ppo --env VisualTaxis`` / ``FollowObject``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from connectofly.agents.hybrid import HybridAgent, HybridParams, HybridState, steered
from connectofly.envs.drive_env import drive_from_unit, eye_regions, photoreceptor_features, steps_per_decision
from connectofly.training.ppo_drive import DrivePolicy, load_policy


def embedded_policy_path(task: str) -> Path:
    return Path(str(resources.files("connectofly.agents") / "weights" / f"ppo_mlp_{task}.npz"))


def checked_policy(task: str, policy: DrivePolicy | str | Path | None = None) -> DrivePolicy:
    """``policy``, loaded if it is a path; the one embedded for ``task`` if None, or a clear error."""
    if policy is None:
        policy = embedded_policy_path(task)
        if not policy.exists():
            raise ValueError(f"no PPO-MLP policy is embedded for task {task!r}; train one with "
                             "'connectofly train --algo ppo --env ...' and pass its policy.npz as policy=")
    return policy if isinstance(policy, DrivePolicy) else load_policy(policy)


class PPOMLPState(NamedTuple):
    walker: HybridState
    drive: np.ndarray  # (2,) the descending drive (left, right) set at the last decision
    step: int  # control steps taken


@dataclass
class PPOMLPAgent:
    """Hybrid walker whose descending drive a trained MLP sets from the photoreceptors."""

    control_dt: float
    regions: np.ndarray  # (2, N_REGIONS, 721), from eye_regions
    policy: DrivePolicy
    walker: HybridAgent | None = None

    def __post_init__(self) -> None:
        if self.walker is None:
            self.walker = HybridAgent(control_dt=self.control_dt)
        self.steps_per_decision = steps_per_decision(self.control_dt, self.policy.decision_dt)

    @classmethod
    def for_env(cls, env, policy: DrivePolicy | str | Path | None = None) -> "PPOMLPAgent":
        """The agent for a visual FlyEnv; ``policy`` defaults to the one embedded for the env's task."""
        base = env.unwrapped
        if "vision" not in env.observation_space.spaces:
            raise ValueError("the PPO-MLP agent needs an env with vision (a visual task)")
        return cls(base.control_dt, eye_regions(base), checked_policy(base.task.name, policy))

    def default_params(self) -> HybridParams:
        return self.walker.default_params()

    def init(self, rng: np.random.Generator) -> PPOMLPState:
        return PPOMLPState(self.walker.init(rng), drive_from_unit(np.zeros(2)), 0)

    def drive(self, vision: np.ndarray) -> np.ndarray:
        """The policy's (left, right) descending drive for both eyes' photoreceptor readings."""
        return drive_from_unit(self.policy(photoreceptor_features(vision, self.regions)))

    def act(self, params: HybridParams, carry: PPOMLPState, obs: dict, rng: np.random.Generator):
        drive = carry.drive
        if carry.step % self.steps_per_decision == 0:
            drive = self.drive(obs["vision"])
        walker, action = self.walker.act(steered(params, drive), carry.walker, obs, rng)
        return PPOMLPState(walker, drive, carry.step + 1), action

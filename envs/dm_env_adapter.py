"""A dm_env view of the gymnasium environment, for dm-control / acme users.

    from connectofly.envs.dm_env_adapter import DmEnvAdapter
    env = DmEnvAdapter(FlyEnv(task="walk"), seed=0)
    timestep = env.reset()
    timestep = env.step(action)

Termination (flip, divergence) ends an episode with discount 0; truncation at
the episode duration ends it with discount 1 (dm_env's convention for
time limits).
"""

from __future__ import annotations

import dm_env
import numpy as np
from dm_env import specs

from connectofly.envs.fly_env import FlyEnv


class DmEnvAdapter(dm_env.Environment):
    def __init__(self, env: FlyEnv, seed: int | None = None) -> None:
        self._env = env
        self._seed = seed
        self._needs_reset = True

    @property
    def gym_env(self) -> FlyEnv:
        return self._env

    def reset(self) -> dm_env.TimeStep:
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None  # seed only the first episode, like gymnasium
        self._needs_reset = False
        return dm_env.restart(obs)

    def step(self, action) -> dm_env.TimeStep:
        if self._needs_reset:
            return self.reset()
        obs, reward, terminated, truncated, _ = self._env.step(action)
        if terminated:
            self._needs_reset = True
            return dm_env.termination(reward, obs)
        if truncated:
            self._needs_reset = True
            return dm_env.truncation(reward, obs)
        return dm_env.transition(reward, obs)

    def observation_spec(self) -> dict[str, specs.Array]:
        return {
            key: specs.Array(space.shape, space.dtype, name=key)
            for key, space in self._env.observation_space.spaces.items()
        }

    def action_spec(self) -> specs.BoundedArray:
        space = self._env.action_space
        return specs.BoundedArray(space.shape, np.float64, space.low, space.high, name="action")

    def close(self) -> None:
        self._env.close()

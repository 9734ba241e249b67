"""A ``gymnasium.vector.VectorEnv`` over the batched MJX env, returning NumPy arrays.

For RL libraries built on gymnasium: ``num_envs`` flies step together in one
jitted, vmapped call (:meth:`~connectofly.envs.mjx_env.MjxEnv.batched`).
Autoreset is gymnasium's same-step mode: a world that ends is reset within the
same ``step``; its observation is the new episode's and ``infos["final_obs"]``
holds the last one.

    from connectofly.envs.mjx_vector_env import MjxVectorEnv
    envs = MjxVectorEnv(num_envs=16, task="walk")
    obs, infos = envs.reset(seed=0)
    obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
"""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from connectofly.envs.fly_env import observation_space
from connectofly.envs.mjx_env import MjxEnv


def _to_numpy(tree) -> dict:
    return jax.tree.map(np.asarray, tree)


class MjxVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` MJX flies as a gymnasium vector env (see the module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, task: str = "walk", env: MjxEnv | None = None, **env_kwargs) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be >= 1")
        self.num_envs = num_envs
        self.env = env if env is not None else MjxEnv(task=task, **env_kwargs)
        space = observation_space(self.env.task.command_size, vision=False)
        self.single_observation_space = gym.spaces.Dict(
            {k: gym.spaces.Box(-np.inf, np.inf, v.shape, np.float32) for k, v in space.spaces.items()}
        )
        self.single_action_space = gym.spaces.Box(
            np.asarray(self.env.action_low), np.asarray(self.env.action_high), dtype=np.float32
        )
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._state = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = np.random.SeedSequence(seed).generate_state(1)[0] if seed is None else seed
        keys = jax.random.split(jax.random.key(seed), self.num_envs)
        self._state = self.env.batch_reset(keys)
        return _to_numpy(self._state.obs), {}

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        self._state = self.env.batch_step(self._state, jax.numpy.asarray(np.asarray(actions, np.float32)))
        state = self._state
        truncated = np.asarray(state.info["truncated"])
        terminated = np.asarray(state.done) & ~truncated
        infos = {**_to_numpy(state.metrics), "final_obs": _to_numpy(state.info["final_obs"])}
        return _to_numpy(state.obs), np.asarray(state.reward), terminated, truncated, infos

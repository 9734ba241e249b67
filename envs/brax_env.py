"""A brax ``Env`` view of the MJX env, so brax's trainers (PPO, SAC) run on it directly.

brax policies act in ``[-1, 1]``; :func:`unit_to_action` maps each action
component onto the env's bounds (joint ranges, adhesion ``[0, 1]``) with 0 at
the neutral pose, so an untrained policy's mean action stands the fly up.
Observations are one flat float32 vector, the observation dict's arrays
flattened in :data:`OBS_KEYS` order (``observation_size`` long). Episodes end
on the MJX env's own conditions; brax's ``EpisodeWrapper`` and
``AutoResetWrapper`` (``brax.envs.wrappers.training.wrap``) add their episode
length and resets as for any brax env.

    from brax.envs.wrappers.training import wrap
    env = wrap(BraxFlyEnv(MjxEnv("walk", duration=10.0)), episode_length=1000)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State

from connectofly.envs.mjx_env import OBS_KEYS, EnvState, MjxEnv


def unit_to_range(unit: jax.Array, low, neutral, high) -> jax.Array:
    """Values in ``[-1, 1]`` onto ``[low, high]``: -1 → low, 0 → neutral, +1 → high.

    Linear on each side of ``neutral``, so the whole range stays reachable
    although ``neutral`` need not be its middle.
    """
    unit = jnp.clip(unit, -1.0, 1.0)
    neutral = jnp.clip(neutral, low, high)
    span = jnp.where(unit >= 0, high - neutral, neutral - low)
    return neutral + unit * span


def unit_to_action(env: MjxEnv, unit: jax.Array) -> jax.Array:
    """Actions in ``[-1, 1]`` onto the env's bounds, with 0 at the neutral pose (:func:`unit_to_range`)."""
    return unit_to_range(unit, env.action_low, env.neutral_action, env.action_high)


def flatten_obs(obs: dict) -> jax.Array:
    """One observation dict as a flat vector (``OBS_KEYS`` order)."""
    return jnp.concatenate([jnp.ravel(obs[key]) for key in OBS_KEYS])


def flat_observation_size(env: MjxEnv) -> int:
    """Length of :func:`flatten_obs` of one world's observation (traced, not run)."""
    obs = jax.eval_shape(env.reset, jax.random.key(0)).obs
    return int(jax.eval_shape(flatten_obs, obs).shape[0])


class BraxFlyEnv(Env):
    """brax ``Env`` over :class:`~connectofly.envs.mjx_env.MjxEnv` (see the module docstring)."""

    def __init__(self, env: MjxEnv) -> None:
        self.env = env
        self._size = flat_observation_size(env)

    def _to_brax(self, state: EnvState, info: dict) -> State:
        return State(
            pipeline_state=state,
            obs=flatten_obs(state.obs),
            reward=state.reward,
            done=state.done.astype(jnp.float32),
            metrics=state.metrics,
            info=info,  # brax's wrappers keep their episode bookkeeping here
        )

    def reset(self, rng: jax.Array) -> State:
        if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
            rng = jax.random.wrap_key_data(rng)  # brax passes raw uint32 keys
        return self._to_brax(self.env.reset(rng), {})

    def step(self, state: State, action: jax.Array) -> State:
        return self._to_brax(self.env.step(state.pipeline_state, unit_to_action(self.env, action)), state.info)

    @property
    def observation_size(self) -> int:
        return self._size

    @property
    def action_size(self) -> int:
        return int(self.env.action_low.shape[0])

    @property
    def backend(self) -> str:
        return "mjx"

"""The functional, batched environment on the MJX backend.

``env.reset(key) -> EnvState`` and ``env.step(state, action) -> EnvState`` are
pure functions: they jit, vmap over worlds and shard over devices
(:mod:`connectofly.envs.sharding`). The task, reward (with the action-rate
cost), action layout and bounds, reset noise and termination rules are the CPU
env's (:mod:`connectofly.envs.fly_env`, :mod:`connectofly.envs.tasks`); the body
is the primitive NeuroMechFly (:func:`connectofly.envs.body.build_primitive_model`).
Observations have the CPU env's keys and shapes (:data:`OBS_KEYS`), float32,
without vision.

``step`` ends an episode (``done``) when the fly flips, the physics diverges
(a non-finite or runaway state) or ``duration`` is reached
(``info["truncated"]``). As in the CPU env, a step that flips or diverges
earns reward 0 and shows the previous observation, so NaN never reaches a
policy update; ``metrics["diverged"]`` and ``metrics["flipped"]`` flag it.
Actions are clipped into the bounds. NaN or infinite actions cannot raise
under jit: they are replaced by the neutral action (keyframe pose, adhesion
off) and flagged in ``metrics["bad_action"]``. Shapes and dtypes are static,
so :meth:`MjxEnv.step` and :meth:`MjxEnv.batch_step` check them while tracing
(``ValueError``).

Auto-reset: :func:`restart_where_done` swaps in a fresh episode in the worlds
that are done and leaves the others untouched. Inside a jitted loop,
``restart_where_done(state, env.reset(state.info["key"]))`` after each step;
from Python, :meth:`MjxEnv.batch_autoreset`. ``reset`` splits the key it is
given, so the new episode draws fresh noise and a fresh command.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import partial

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from connectofly.envs import mjx_physics
from connectofly.envs.body import N_ACTIONS, N_ADHESION, N_JOINTS, build_primitive_model
from connectofly.envs.fly_env import (
    DEFAULT_CONTROL_DT,
    DEFAULT_DURATION,
    DEFAULT_RESET_NOISE,
    action_bounds,
    observation_space,
    substeps_per_control,
)
from connectofly.envs.physics import BodyState
from connectofly.envs.tasks import action_rate_cost, get_task, is_flipped

RUNAWAY_VELOCITY = 1e5  # |qvel| beyond this (mm/s or rad/s) counts as diverged
# The observation keys, in the CPU env's observation-space order; every key
# but "command" is a BodyState field of the same name.
OBS_KEYS = tuple(observation_space(0, vision=False).spaces)


@dataclass(frozen=True)
class EnvState:
    """One world, or a batch of worlds (every leaf with a leading world axis).

    Attributes:
        data: the MJX physics state.
        obs: the observation dict (:data:`OBS_KEYS`), float32.
        reward: reward of the last step (0 after a reset), float32.
        done: whether the last step ended the episode, bool.
        metrics: float32 scalars of the last step: ``forward_speed`` (mm/s),
            ``yaw_rate`` (rad/s), ``action_rate_cost``, and the 0/1 flags
            ``diverged``, ``flipped``, ``bad_action``.
        info: ``key`` (for the next reset), ``step`` (control steps this
            episode), ``command`` (the task command), ``prev_action`` (48,)
            and ``truncated`` (the episode reached ``duration``).
    """

    data: mjx.Data
    obs: dict
    reward: jax.Array
    done: jax.Array
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


jax.tree_util.register_dataclass(EnvState, data_fields=[f.name for f in fields(EnvState)], meta_fields=[])


def observe(body: BodyState, command: jax.Array) -> dict:
    """The observation dict of :data:`OBS_KEYS`, float32."""
    obs = {key: getattr(body, key) for key in OBS_KEYS if key != "command"}
    obs["command"] = command
    return {key: jnp.asarray(value, jnp.float32) for key, value in obs.items()}


def diverged(data: mjx.Data) -> jax.Array:
    """Whether the physics state is non-finite or running away (bool scalar)."""
    finite = jnp.isfinite(data.qpos).all() & jnp.isfinite(data.qvel).all() & jnp.isfinite(data.qacc).all()
    return ~finite | (jnp.abs(data.qvel).max() > RUNAWAY_VELOCITY)


def restart_where_done(state: EnvState, fresh: EnvState) -> EnvState:
    """``fresh`` in the worlds where ``state.done``, ``state`` in the others.

    Works on one world or a batch (``done`` of shape (n_worlds,), every leaf
    with a leading world axis), inside or outside jit.
    """

    def pick(new: jax.Array, old: jax.Array) -> jax.Array:
        done = jnp.reshape(state.done, state.done.shape + (1,) * (old.ndim - state.done.ndim))
        return jnp.where(done, new, old)

    return jax.tree.map(pick, fresh, state)


_batch_restart = jax.jit(restart_where_done)


def check_action_layout(action, batched: bool) -> None:
    """Raise ``ValueError`` unless ``action`` is a real (n_worlds,) 48 or (48,) array.

    Uses only the static shape and dtype, so it runs while tracing.
    """
    shape = np.shape(action)
    dtype = action.dtype if hasattr(action, "dtype") else np.asarray(action).dtype
    expected = f"(n_worlds, {N_ACTIONS})" if batched else f"({N_ACTIONS},)"
    if len(shape) != (2 if batched else 1) or shape[-1] != N_ACTIONS:
        raise ValueError(
            f"action shape {tuple(shape)} is wrong; expected {expected}: "
            f"{N_JOINTS} joint targets then {N_ADHESION} adhesion values"
        )
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"action dtype {dtype} is not a real number type; expected float (or int)")


class MjxEnv:
    """NeuroMechFly locomotion tasks as pure JAX functions (see the module docstring).

    Args:
        task: ``"walk"`` or ``"turn"``.
        control_dt, duration, reset_noise: as :class:`~connectofly.envs.fly_env.FlyEnv`
            (s, s, rad).
        model: a primitive-variant model (default: :func:`build_primitive_model`).
    """

    def __init__(
        self,
        task: str = "walk",
        control_dt: float = DEFAULT_CONTROL_DT,
        duration: float = DEFAULT_DURATION,
        reset_noise: float = DEFAULT_RESET_NOISE,
        model: mujoco.MjModel | None = None,
    ) -> None:
        if duration <= 0:
            raise ValueError(f"duration={duration} must be positive (s)")
        self.task = get_task(task)
        self.control_dt = control_dt
        self.n_substeps = substeps_per_control(control_dt)
        self.duration = duration
        self.n_steps = max(1, int(round(duration / control_dt)))  # control steps per episode
        self.reset_noise = reset_noise
        self.model = model if model is not None else build_primitive_model()
        self.body = mjx_physics.load(self.model)
        low, high = action_bounds()
        self.action_low, self.action_high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
        joint_targets = self.model.key_ctrl[0][self.body.index.joint_actuators]
        self.neutral_action = jnp.asarray(np.concatenate([joint_targets, np.zeros(N_ADHESION)]), jnp.float32)
        # Compiled once per batch size (and sharding).
        self._batch_reset = jax.jit(jax.vmap(self.reset))
        self._batch_step = jax.jit(jax.vmap(self.step))

    # -- the functional core ---------------------------------------------------

    def reset(self, key: jax.Array) -> EnvState:
        """A new episode: keyframe pose with uniform joint noise and a task command, both drawn from ``key``."""
        key, k_noise, k_command = jax.random.split(key, 3)
        noise = jax.random.uniform(k_noise, (N_JOINTS,), minval=-self.reset_noise, maxval=self.reset_noise)
        qpos = jnp.asarray(self.model.key_qpos[0]).at[self.body.index.joint_qpos].add(noise)
        data = mjx.forward(self.body.model, mjx_physics.initial_data(self.model, qpos))
        command = self.task.sample_command_jax(k_command)
        zero = jnp.float32(0.0)
        return EnvState(
            data=data,
            obs=observe(mjx_physics.read(self.body, data), command),
            reward=zero,
            done=jnp.bool_(False),
            metrics={
                name: zero
                for name in ("forward_speed", "yaw_rate", "action_rate_cost", "diverged", "flipped", "bad_action")
            },
            info={
                "key": key,
                "step": jnp.int32(0),
                "command": command,
                "prev_action": self.neutral_action,
                "truncated": jnp.bool_(False),
            },
        )

    def step(self, state: EnvState, action) -> EnvState:
        """One control step of one world; ``action`` (48,) is clipped into the action bounds."""
        check_action_layout(action, batched=False)
        action = jnp.asarray(action, jnp.float32)
        bad = ~jnp.isfinite(action).all()
        action = jnp.clip(jnp.where(bad, self.neutral_action, action), self.action_low, self.action_high)
        data = mjx_physics.step(self.body, state.data, action, self.n_substeps)
        body = mjx_physics.read(self.body, data)
        task_reward, terms = self.task.reward(body, state.info["command"])
        cost = action_rate_cost(action, state.info["prev_action"], self.control_dt)
        broken = diverged(data)
        flipped = is_flipped(body) & ~broken
        failed = broken | flipped
        step = state.info["step"] + 1
        truncated = (step >= self.n_steps) & ~failed
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return EnvState(
            data=data,
            # Like the CPU env: a failed step shows the last good observation and earns nothing.
            obs=jax.tree.map(partial(jnp.where, failed), state.obs, observe(body, state.info["command"])),
            reward=f32(jnp.where(failed, 0.0, task_reward - cost)),
            done=failed | truncated,
            metrics={
                "forward_speed": f32(jnp.where(broken, 0.0, terms["forward_speed"])),
                "yaw_rate": f32(jnp.where(broken, 0.0, terms["yaw_rate"])),
                "action_rate_cost": f32(cost),
                "diverged": f32(broken),
                "flipped": f32(flipped),
                "bad_action": f32(bad),
            },
            info={**state.info, "step": step, "prev_action": action, "truncated": truncated},
        )

    # -- batches, jitted (from Python) -----------------------------------------

    def batch_reset(self, keys: jax.Array) -> EnvState:
        """:meth:`reset` of one world per key; ``keys`` (n_worlds,)."""
        return self._batch_reset(keys)

    def batch_step(self, states: EnvState, actions) -> EnvState:
        """:meth:`step` of every world; ``actions`` (n_worlds, 48). Shapes are checked before the call."""
        check_action_layout(actions, batched=True)
        n_worlds = states.reward.shape[0]
        if np.shape(actions)[0] != n_worlds:
            raise ValueError(f"{np.shape(actions)[0]} actions for {n_worlds} worlds")
        return self._batch_step(states, jnp.asarray(actions, jnp.float32))

    def batch_autoreset(self, states: EnvState) -> EnvState:
        """A fresh episode in every world that is done; the others are returned unchanged.

        Resets only when some world is done (one host sync per call).
        """
        if not np.asarray(states.done).any():
            return states
        return _batch_restart(states, self._batch_reset(states.info["key"]))


def shard_worlds(tree, devices=None):
    """Place a batch of worlds (leading axis) across ``devices`` (default: all local ones).

    Jitted batch functions then run each device's share of the worlds there::

        states = shard_worlds(env.batch_reset(keys))
        states = env.batch_step(states, shard_worlds(actions))

    The number of worlds must be a multiple of the number of devices. Across
    hosts, call ``jax.distributed.initialize()`` on every host first and pass
    ``jax.devices()`` (all hosts' devices): each host then feeds and reads its
    own addressable shard.
    """
    devices = jax.local_devices() if devices is None else list(devices)
    mesh = jax.sharding.Mesh(np.array(devices), ("worlds",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("worlds"))
    return jax.device_put(tree, sharding)

"""The functional, batched environment on the MJX backend.

``env.reset(key) -> EnvState`` and ``env.step(state, action) -> EnvState`` are
pure functions: they jit, vmap over worlds and shard over devices. The task,
reward, action layout and bounds are the CPU env's
(:mod:`connectofly.envs.fly_env`, :mod:`connectofly.envs.tasks`); the body is
the primitive NeuroMechFly (:func:`connectofly.envs.body.build_primitive_model`).
Observations have the CPU env's keys and shapes (float32), without vision.

``step`` ends an episode (``done``) when the fly flips, the physics diverges
(a non-finite or runaway state), or ``duration`` is reached (``info["truncated"]``).
:meth:`MjxEnv.autoreset_step` then starts a new episode in that world alone,
from a key carried in the state; the other worlds of a batch are untouched. A
diverged world's observation and reward are replaced by finite values
(reward 0) and flagged in ``metrics["diverged"]``, so NaN never reaches a
policy update. NaN or infinite actions cannot raise under jit: they are
replaced by the neutral pose and counted in ``metrics["bad_action"]``; shapes
and dtypes are checked before tracing (``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

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
    substeps_per_control,
)
from connectofly.envs.physics import BodyState
from connectofly.envs.tasks import action_rate_cost, get_task, is_flipped

RUNAWAY_VELOCITY = 1e5  # |qvel| beyond this (mm/s or rad/s) counts as diverged


@dataclass(frozen=True)
class EnvState:
    """One world (or a batch of worlds, leading axis) of the functional env."""

    data: mjx.Data
    obs: dict
    reward: jax.Array
    done: jax.Array
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


jax.tree_util.register_dataclass(EnvState, data_fields=[f.name for f in fields(EnvState)], meta_fields=[])


# The observation keys, in the CPU env's order; the last is the task command.
OBS_KEYS = (
    "joint_angles", "joint_velocities", "actuator_forces", "thorax_position", "thorax_velocity",
    "thorax_orientation", "thorax_angular_velocity", "contact_forces", "claw_positions", "command",
)


def observe(body: BodyState, command: jax.Array) -> dict:
    """The CPU env's observation dict (minus vision), float32."""
    obs = {key: jnp.asarray(getattr(body, key), jnp.float32) for key in OBS_KEYS[:-1]}
    obs["command"] = jnp.asarray(command, jnp.float32)
    return obs


def diverged(data: mjx.Data) -> jax.Array:
    """Whether the physics state is non-finite or running away."""
    finite = jnp.isfinite(data.qpos).all() & jnp.isfinite(data.qvel).all() & jnp.isfinite(data.qacc).all()
    return ~finite | (jnp.abs(data.qvel).max() > RUNAWAY_VELOCITY)


def _select(flag: jax.Array, if_true, if_false):
    """Per-world choice between two PyTrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), if_true, if_false)


class MjxEnv:
    """NeuroMechFly locomotion tasks as pure JAX functions (see the module docstring).

    Args:
        task: ``"walk"`` or ``"turn"``.
        control_dt, duration, reset_noise: as :class:`~connectofly.envs.fly_env.FlyEnv`.
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
        self.reset_noise = reset_noise
        self.model = model if model is not None else build_primitive_model()
        self.body = mjx_physics.load(self.model)
        low, high = action_bounds()
        self.action_low, self.action_high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
        key_ctrl = self.model.key_ctrl[0]
        self.neutral_action = jnp.asarray(
            np.concatenate([key_ctrl[self.body.index.joint_actuators], np.zeros(N_ADHESION)]), jnp.float32
        )
        self._initial = mjx_physics.reset(self.body, self.model, self.model.key_qpos[0])
        self.n_steps = int(round(duration / control_dt))
        # Compiled once per batch size; shared by every wrapper of this env.
        self._batch_reset = jax.jit(jax.vmap(self.reset))
        self._batch_step = jax.jit(jax.vmap(self.autoreset_step))

    # -- the functional core --------------------------------------------------

    def reset(self, key: jax.Array) -> EnvState:
        """A new episode: keyframe pose with joint noise, a task command drawn from ``key``."""
        key, k_noise, k_command = jax.random.split(key, 3)
        joints = self.body.index.joint_qpos
        noise = jax.random.uniform(k_noise, (N_JOINTS,), minval=-self.reset_noise, maxval=self.reset_noise)
        data = self._initial.replace(qpos=self._initial.qpos.at[joints].add(noise))
        data = mjx.forward(self.body.model, data)
        command = self.task.sample_command_jax(k_command)
        obs = observe(mjx_physics.read(self.body, data), command)
        zero = jnp.float32(0.0)
        return EnvState(
            data=data,
            obs=obs,
            reward=zero,
            done=jnp.bool_(False),
            metrics={"forward_speed": zero, "yaw_rate": zero, "diverged": zero, "flipped": zero, "bad_action": zero},
            info={
                "key": key,
                "step": jnp.int32(0),
                "command": command,
                "prev_action": self.neutral_action,
                "truncated": jnp.bool_(False),
                "final_obs": obs,  # the last observation of the episode that ended (autoreset_step)
            },
        )

    def step(self, state: EnvState, action) -> EnvState:
        """One control step; ``action`` (48,) is clipped into the action bounds."""
        self._check_action(action, batched=False)
        action = jnp.asarray(action, jnp.float32)
        bad = ~jnp.isfinite(action).all()
        action = jnp.clip(jnp.where(bad, self.neutral_action, action), self.action_low, self.action_high)
        data = mjx_physics.step(self.body, state.data, action, self.n_substeps)
        body = mjx_physics.read(self.body, data)
        task_reward, terms = self.task.reward(body, state.info["command"])
        broken = diverged(data)
        flipped = is_flipped(body) & ~broken
        reward = task_reward - action_rate_cost(action, state.info["prev_action"], self.control_dt)
        obs = observe(body, state.info["command"])
        # A diverged world shows its last good observation and earns nothing.
        obs = _select(broken, state.obs, obs)
        reward = jnp.where(broken, 0.0, reward).astype(jnp.float32)
        step = state.info["step"] + 1
        truncated = step >= self.n_steps
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return EnvState(
            data=data,
            obs=obs,
            reward=reward,
            done=broken | flipped | truncated,
            metrics={
                "forward_speed": f32(jnp.where(broken, 0.0, terms["forward_speed"])),
                "yaw_rate": f32(jnp.where(broken, 0.0, terms["yaw_rate"])),
                "diverged": f32(broken),
                "flipped": f32(flipped),
                "bad_action": f32(bad),
            },
            info={**state.info, "step": step, "prev_action": action, "truncated": truncated & ~broken & ~flipped},
        )

    def autoreset_step(self, state: EnvState, action) -> EnvState:
        """:meth:`step`, then a fresh episode in this world if it ended.

        The returned state keeps the finished step's ``reward``, ``done``,
        ``metrics`` and ``info["truncated"]``; its ``data`` and ``obs`` are the
        new episode's, and ``info["final_obs"]`` holds the last observation.
        """
        stepped = self.step(state, action)
        key, k_reset = jax.random.split(stepped.info["key"])
        fresh = self.reset(k_reset)
        data = _select(stepped.done, fresh.data, stepped.data)
        obs = _select(stepped.done, fresh.obs, stepped.obs)
        without_key = lambda info: {k: v for k, v in info.items() if k != "key"}  # noqa: E731
        info = _select(stepped.done, without_key(fresh.info), without_key(stepped.info))
        info = {**info, "key": key, "truncated": stepped.info["truncated"], "final_obs": stepped.obs}
        return EnvState(data, obs, stepped.reward, stepped.done, stepped.metrics, info)

    # -- input checks (before tracing) ------------------------------------------

    @staticmethod
    def _check_action(action, batched: bool) -> None:
        if not hasattr(action, "shape"):
            action = np.asarray(action)
        shape, dtype = action.shape, action.dtype
        expected = "(n_worlds, 48)" if batched else f"({N_ACTIONS},)"
        if (len(shape) != (2 if batched else 1)) or shape[-1] != N_ACTIONS:
            raise ValueError(f"action shape {tuple(shape)} is wrong; expected {expected}")
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
            raise ValueError(f"action dtype {dtype} is not a real number type")

    def batch_reset(self, keys: jax.Array) -> EnvState:
        """:meth:`reset` of one world per key, jitted and vmapped."""
        return self._batch_reset(keys)

    def batch_step(self, states: EnvState, actions) -> EnvState:
        """:meth:`autoreset_step` of every world, jitted and vmapped; checks shapes first."""
        self._check_action(actions, batched=True)
        n_worlds = states.reward.shape[0]
        if actions.shape[0] != n_worlds:
            raise ValueError(f"{actions.shape[0]} actions for {n_worlds} worlds")
        return self._batch_step(states, actions)


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
    return jax.device_put(tree, _worlds_sharding(devices, jax.sharding.PartitionSpec("worlds")))


def replicate(tree, devices=None):
    """Place the arrays of ``tree`` whole on each of ``devices`` (default: all local ones),
    beside worlds placed by :func:`shard_worlds` (networks, optimizer state, keys).
    Python scalars in it stay what they are: constants of the programs that use them."""
    sharding = _worlds_sharding(devices, jax.sharding.PartitionSpec())
    return jax.tree.map(lambda x: jax.device_put(x, sharding) if isinstance(x, jax.Array) else x, tree)


def _worlds_sharding(devices, spec: jax.sharding.PartitionSpec) -> jax.sharding.NamedSharding:
    devices = jax.local_devices() if devices is None else list(devices)
    return jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), ("worlds",)), spec)

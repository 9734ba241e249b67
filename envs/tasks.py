"""Locomotion tasks: what is rewarded and when an episode ends.

A task is pure functions of :class:`~connectofly.envs.physics.BodyState`, so
the same task runs on every physics backend. Rewards (per control step):

| task | reward | command |
|---|---|---|
| ``walk`` | ``v_fwd - c_rate * ‖Δa/Δt‖²`` | none |
| ``turn`` | ``-|ω_z - ω*| - c_rate * ‖Δa/Δt‖²`` | ``ω*`` ~ U(-TURN_RATE_MAX, TURN_RATE_MAX) rad/s, drawn at reset |

``v_fwd`` (mm/s) is the thorax velocity along the body heading (the thorax x
axis projected onto the ground plane), ``ω_z`` the yaw rate (rad/s, positive
= counter-clockwise seen from above = turning left), ``Δa/Δt`` the rate of
change of the 42 joint targets (rad/s), ``c_rate = ACTION_RATE_COST``.

An episode terminates when the fly flips (thorax up-vector z < 0) or the
physics diverges; ``info["termination"]`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.envs.body import N_JOINTS
from connectofly.envs.kinematics import array_module
from connectofly.envs.physics import BodyState

ACTION_RATE_COST = 1e-5  # (mm/s) per (rad/s)^2 of joint-target change
TURN_RATE_MAX = 2.0  # rad/s


def heading_xy(state: BodyState):
    """Unit vector of the thorax x axis projected on the ground, (2,)."""
    xp = array_module(state.thorax_rotation)
    forward = state.thorax_rotation[:2, 0]
    return forward / xp.maximum(xp.linalg.norm(forward), 1e-9)


def forward_speed(state: BodyState):
    """Thorax speed along the heading, mm/s (a 0-d array)."""
    return heading_xy(state) @ state.thorax_velocity[:2]


def yaw_rate(state: BodyState):
    return state.thorax_angular_velocity[2]


def is_flipped(state: BodyState):
    return state.thorax_rotation[2, 2] < 0


def action_rate_cost(action, prev_action, control_dt: float):
    rate = (action[:N_JOINTS] - prev_action[:N_JOINTS]) / control_dt
    return ACTION_RATE_COST * (rate @ rate)


@dataclass(frozen=True)
class Task:
    """A locomotion objective: a command to sample and a reward to compute."""

    name: str
    command_size: int

    def sample_command(self, rng: np.random.Generator) -> np.ndarray:
        if self.name == "turn":
            return rng.uniform(-TURN_RATE_MAX, TURN_RATE_MAX, size=1)
        return np.zeros(0)

    def sample_command_jax(self, key: jax.Array) -> jax.Array:
        """:meth:`sample_command` for the JAX environment."""
        if self.name == "turn":
            return jax.random.uniform(key, (1,), minval=-TURN_RATE_MAX, maxval=TURN_RATE_MAX)
        return jnp.zeros(0)

    def reward(self, state: BodyState, command):
        """Task reward before the action cost, and the terms that make it up (NumPy or JAX)."""
        terms = {"forward_speed": forward_speed(state), "yaw_rate": yaw_rate(state)}
        if self.name == "turn":
            return -abs(terms["yaw_rate"] - command[0]), terms
        return terms["forward_speed"], terms


TASKS = {"walk": Task("walk", 0), "turn": Task("turn", 1)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {tuple(TASKS)}")
    return TASKS[name]

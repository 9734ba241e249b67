"""Visual-navigation tasks: what the fly sees, what it is rewarded for, when it has succeeded.

Each task places arena objects (:mod:`connectofly.envs.arena`) on a layout drawn
per episode from a JAX key, and scores the body state against the objects'
positions. Samplers and scores are pure functions of arrays, so the CPU env
and the MJX env share them. The fly starts at the origin facing +x.

| task | objects | layout per episode | reward per control step | success | ends early |
|---|---|---|---|---|---|
| ``visual_taxis`` | black sphere (r 1 mm) | 8–14 mm away, bearing ±90° | approach speed (mm/s) | within ``SUCCESS_RADIUS`` of the sphere | on success |
| ``follow_object`` | black sphere (r 0.8 mm) or a fly (2.5 mm long), moving at ``TARGET_SPEED`` | starts 6 mm ahead; circle, S-path or random walk | ``cos(bearing) - |d - d*| / d*`` | this step: bearing within ±30° and ``|d - d*| < FOLLOW_TOLERANCE`` (d* = ``FOLLOW_DISTANCE``) | no |
| ``avoid_obstacles`` | black goal sphere, 6 grey pillars that push back | goal 18 mm ahead (±3 mm); pillars on a jittered 2 × 3 grid in between | approach speed to the goal | within ``SUCCESS_RADIUS`` of the goal | on success |
| ``looming`` | black sphere (r 1 mm) rushing at the fly's start | from 40 mm at a bearing within ±120° (in view), at 40 mm/s after 0.2–0.6 s | speed away from the sphere | not caught by the end | when caught (within ``CAUGHT_RADIUS``) |

Approach speed is the thorax's horizontal velocity toward the object; the
bearing is the object's direction relative to the heading (positive: to the
left); distances are horizontal, from the thorax to the object's centre. The
env subtracts the same action-rate cost as the locomotion tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.envs.arena import ArenaObject, Trajectory, object_positions, static_trajectory
from connectofly.envs.kinematics import array_module
from connectofly.envs.physics import BodyState

SUCCESS_RADIUS = 2.5  # mm, thorax to target centre
FOLLOW_DISTANCE = 5.0  # mm, d*
FOLLOW_TOLERANCE = 2.5  # mm
FOLLOW_BEARING = np.deg2rad(30.0)
TARGET_SPEED = 5.0  # mm/s; the baselines walk at about 13 mm/s
CAUGHT_RADIUS = 2.0  # mm
LOOMING_BEARING = np.deg2rad(120.0)  # the eyes see to about ±138° azimuth; behind is blind
TRAJECTORIES = ("circle", "s_path", "random_walk")
TARGETS = ("sphere", "fly")
N_PILLARS = 6
_BLACK = (0.0, 0.0, 0.0, 1.0)
_GREY = (0.6, 0.6, 0.6, 1.0)


class Outcome(NamedTuple):
    """A task's verdict on one control step (scalars, NumPy or JAX)."""

    reward: jax.Array
    success: jax.Array  # bool
    failure: jax.Array  # bool
    distance: jax.Array  # mm to the task's main object
    bearing: jax.Array  # rad, positive = object on the left


def target_geometry(state: BodyState, target_xy):
    """Distance (mm), bearing (rad, + left) and approach speed (mm/s) of a point on the ground."""
    xp = array_module(target_xy)
    offset = target_xy - state.thorax_position[:2]
    distance = xp.linalg.norm(offset)
    toward = offset / xp.maximum(distance, 1e-9)
    heading = state.thorax_rotation[:2, 0]
    bearing = xp.arctan2(heading[0] * offset[1] - heading[1] * offset[0], heading @ offset)
    return distance, bearing, state.thorax_velocity[:2] @ toward


@dataclass(frozen=True)
class VisualTask:
    """A visual task: its objects, a layout sampler and a per-step score.

    Attributes:
        objects: arena objects; the first is the one the task is about.
        sample: ``key -> Trajectory`` of all objects for one episode.
        score: ``(state, object_xy (n, 2)) -> Outcome``.
        ends_on_success: the episode terminates when ``success`` is true.
    """

    name: str
    objects: tuple[ArenaObject, ...]
    sample: Callable[[jax.Array], Trajectory]
    score: Callable[[BodyState, jax.Array], Outcome]
    ends_on_success: bool
    command_size: int = 0  # visual tasks take no command: the scene is the instruction

    def outcome(self, state: BodyState, trajectory: Trajectory) -> Outcome:
        return self.score(state, object_positions(trajectory, state.time))


# -- visual taxis ---------------------------------------------------------------


def sample_taxis(key: jax.Array) -> Trajectory:
    k_distance, k_bearing = jax.random.split(key)
    distance = jax.random.uniform(k_distance, (), minval=8.0, maxval=14.0)
    bearing = jax.random.uniform(k_bearing, (), minval=-np.pi / 2, maxval=np.pi / 2)
    return static_trajectory(distance * jnp.stack([jnp.cos(bearing), jnp.sin(bearing)])[None])


def score_reach(state: BodyState, object_xy) -> Outcome:
    """Walk to object 0: approach speed; success within SUCCESS_RADIUS."""
    distance, bearing, approach = target_geometry(state, object_xy[0])
    return Outcome(approach, distance < SUCCESS_RADIUS, array_module(distance).asarray(False), distance, bearing)


# -- object following -----------------------------------------------------------


FOLLOW_WAYPOINTS = 41  # random-walk waypoints: 10 s at WAYPOINT_INTERVAL
WAYPOINT_INTERVAL = 0.25  # s


def _at_rest(origin) -> Trajectory:
    """One object at ``origin`` (2,), with the waypoint shape every follow path shares."""
    return static_trajectory(origin[None], n_waypoints=FOLLOW_WAYPOINTS)._replace(
        waypoint_interval=jnp.float32(WAYPOINT_INTERVAL)
    )


def _circle(origin, direction, speed, key) -> Trajectory:
    """A circle of radius 8-15 mm through ``origin``, leaving it along ``direction``, either way round."""
    k_radius, k_sign = jax.random.split(key)
    radius = jax.random.uniform(k_radius, (), minval=8.0, maxval=15.0)
    sign = jnp.where(jax.random.bernoulli(k_sign), 1.0, -1.0)
    heading = jnp.arctan2(direction[1], direction[0])
    return _at_rest(origin)._replace(
        radius=radius[None], angular_speed=(sign * speed / radius)[None], phase=(heading - sign * np.pi / 2)[None]
    )


def _s_path(origin, direction, speed, key) -> Trajectory:
    """Straight along ``direction`` with a sideways sine of 1.5-3 mm and 2-4 s."""
    k_amplitude, k_period = jax.random.split(key)
    return _at_rest(origin)._replace(
        direction=direction[None],
        speed=jnp.array([speed]),
        amplitude=jax.random.uniform(k_amplitude, (1,), minval=1.5, maxval=3.0),
        period=jax.random.uniform(k_period, (1,), minval=2.0, maxval=4.0),
    )


def _random_walk(origin, direction, speed, key) -> Trajectory:
    """A correlated random walk: the heading diffuses by 0.5 rad per waypoint, at ``speed``."""
    turns = 0.5 * jax.random.normal(key, (FOLLOW_WAYPOINTS - 1,))
    headings = jnp.arctan2(direction[1], direction[0]) + jnp.cumsum(turns)
    steps = speed * WAYPOINT_INTERVAL * jnp.stack([jnp.cos(headings), jnp.sin(headings)], axis=1)
    waypoints = jnp.concatenate([jnp.zeros((1, 2)), jnp.cumsum(steps, axis=0)])
    return _at_rest(origin)._replace(waypoints=waypoints[None])


def sample_follow(key: jax.Array, trajectory: str) -> Trajectory:
    """Target 6 mm ahead moving off at ±30° from the fly's heading; ``trajectory`` or a random kind."""
    k_direction, k_kind, k_path = jax.random.split(key, 3)
    angle = jax.random.uniform(k_direction, (), minval=-np.pi / 6, maxval=np.pi / 6)
    direction = jnp.stack([jnp.cos(angle), jnp.sin(angle)])
    origin = jnp.array([6.0, 0.0])
    builders = (_circle, _s_path, _random_walk)
    if trajectory != "random":
        return builders[TRAJECTORIES.index(trajectory)](origin, direction, TARGET_SPEED, k_path)
    candidates = [build(origin, direction, TARGET_SPEED, k_path) for build in builders]
    kind = jax.random.randint(k_kind, (), 0, len(builders))
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves)[kind], *candidates)


def score_follow(state: BodyState, object_xy) -> Outcome:
    xp = array_module(object_xy)
    distance, bearing, _ = target_geometry(state, object_xy[0])
    reward = xp.cos(bearing) - xp.abs(distance - FOLLOW_DISTANCE) / FOLLOW_DISTANCE
    tracking = (xp.abs(bearing) < FOLLOW_BEARING) & (xp.abs(distance - FOLLOW_DISTANCE) < FOLLOW_TOLERANCE)
    return Outcome(reward, tracking, xp.asarray(False), distance, bearing)


# -- obstacle avoidance ---------------------------------------------------------


def sample_obstacles(key: jax.Array) -> Trajectory:
    """Goal 18 mm ahead; pillars in two rows (x = 6, 12 mm) of three (4 mm apart), shifted and jittered."""
    k_goal, k_shift, k_jitter = jax.random.split(key, 3)
    goal = jnp.array([[18.0, 0.0]]) + jnp.array([0.0, 1.0]) * jax.random.uniform(k_goal, (1, 1), minval=-3, maxval=3)
    grid = jnp.array([[x, y] for x in (6.0, 12.0) for y in (-4.0, 0.0, 4.0)])
    shift = jax.random.uniform(k_shift, (2, 1), minval=-2.0, maxval=2.0).repeat(3, axis=0)
    jitter = jax.random.uniform(k_jitter, (N_PILLARS, 2), minval=-0.75, maxval=0.75)
    pillars = grid + jnp.concatenate([jnp.zeros_like(shift), shift], axis=1) + jitter
    return static_trajectory(jnp.concatenate([goal, pillars]))


# -- looming --------------------------------------------------------------------


def looming_layout(bearing, start_time, distance: float = 40.0, speed: float = 40.0) -> Trajectory:
    """A sphere ``distance`` mm away at ``bearing`` (rad, + left), rushing toward the origin at
    ``speed`` mm/s from ``start_time`` s, stopping 1 mm short."""
    toward = -jnp.stack([jnp.cos(bearing), jnp.sin(bearing)])
    return static_trajectory(-distance * toward[None])._replace(
        direction=toward[None],
        speed=jnp.array([speed]),
        max_travel=jnp.array([distance - 1.0]),
        start_time=jnp.reshape(start_time, (1,)),
    )


def sample_looming(key: jax.Array, distance: float = 40.0, speed: float = 40.0) -> Trajectory:
    """:func:`looming_layout` in view (bearing within ±``LOOMING_BEARING``), starting after 0.2–0.6 s."""
    k_bearing, k_start = jax.random.split(key)
    bearing = jax.random.uniform(k_bearing, (), minval=-LOOMING_BEARING, maxval=LOOMING_BEARING)
    start_time = jax.random.uniform(k_start, (), minval=0.2, maxval=0.6)
    return looming_layout(bearing, start_time, distance, speed)


def score_looming(state: BodyState, object_xy) -> Outcome:
    distance, bearing, approach = target_geometry(state, object_xy[0])
    caught = distance < CAUGHT_RADIUS
    return Outcome(-approach, ~caught, caught, distance, bearing)


# -- registry -------------------------------------------------------------------


def _sphere(name: str, radius: float) -> ArenaObject:
    return ArenaObject(name, "sphere", size=radius, height=radius, rgba=_BLACK)


TASK_OPTIONS = {"follow_object": ("trajectory", "target")}
"""The keyword arguments of :func:`make_visual_task` each task uses; the others take none."""


def make_visual_task(name: str, *, trajectory: str = "random", target: str = "sphere") -> VisualTask:
    """A visual task by name (see the module table).

    Args:
        trajectory: ``follow_object`` only: one of ``TRAJECTORIES`` or ``"random"``
            (a kind drawn per episode).
        target: ``follow_object`` only: ``"sphere"`` or ``"fly"``.
    """
    if name == "follow_object":
        if trajectory not in (*TRAJECTORIES, "random"):
            raise ValueError(f"trajectory {trajectory!r} is not one of {(*TRAJECTORIES, 'random')}")
        if target not in TARGETS:
            raise ValueError(f"target {target!r} is not one of {TARGETS}")
        obj = _sphere("target", 0.8) if target == "sphere" else ArenaObject("target", "fly", size=2.5, height=0.6)
        return VisualTask(name, (obj,), lambda key: sample_follow(key, trajectory), score_follow, False)
    if name == "visual_taxis":
        return VisualTask(name, (_sphere("target", 1.0),), sample_taxis, score_reach, True)
    if name == "avoid_obstacles":
        pillars = tuple(
            ArenaObject(f"pillar{i}", "pillar", size=0.6, height=3.0, rgba=_GREY, collides=True) for i in range(N_PILLARS)
        )
        return VisualTask(name, (_sphere("goal", 1.0), *pillars), sample_obstacles, score_reach, True)
    if name == "looming":
        return VisualTask(name, (_sphere("looming", 1.0),), sample_looming, score_looming, False)
    raise ValueError(f"unknown visual task {name!r}; valid: {VISUAL_TASKS}")


VISUAL_TASKS = ("visual_taxis", "follow_object", "avoid_obstacles", "looming")

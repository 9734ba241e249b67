"""Visual arenas: objects the compound eye sees, moving on scripted trajectories.

An arena object is a MuJoCo mocap body made of primitive geoms (so the ray
caster in :mod:`connectofly.envs.raycast` draws it and MJX can collide with it):

| kind | geoms | size |
|---|---|---|
| ``sphere`` | one sphere, centre at ``height`` | radius, mm |
| ``pillar`` | one vertical capsule from the ground to ``height`` | radius, mm |
| ``fly`` | a fly silhouette: head, thorax and abdomen ellipsoids, two wings, facing its direction of motion | body length, mm |

Objects that ``collide`` get contact pairs with the body segments that touch
the world (claws, tibiae, thorax, head, first abdominal segment); the others
are seen but not felt.

Every object follows one :class:`Trajectory` formula, evaluated by
:func:`object_positions` with NumPy or JAX (jit/vmap) alike. With
``s = max(t - start_time, 0)`` and ``travel = min(speed * s, max_travel)``::

    xy(t) = origin
          + travel * direction                                  # straight line, looming
          + amplitude * sin(2π s / period) * normal(direction)  # S-path
          + radius * (rot(ω s) - I) @ (cos φ, sin φ)            # circle through the origin
          + waypoints interpolated at s                          # random walk

A component whose parameter is zero drops out, so a static object, a circle,
an S-path, a random walk and a looming object are rows of the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from connectofly.envs.body import FLY_NAME, LEGS
from connectofly.envs.kinematics import array_module

OBJECT_KINDS = ("sphere", "pillar", "fly")
# Body segments an obstacle can push: the ones that touch the world in walking.
OBSTACLE_CONTACT_SEGMENTS = tuple(
    [f"{leg}_tarsus5" for leg in LEGS] + [f"{leg}_tibia" for leg in LEGS] + ["c_thorax", "c_head", "c_abdomen12"]
)
OBSTACLE_FRICTION = (0.5, 0.5, 0.005, 1e-4, 1e-4)  # MuJoCo pair order: 2 sliding, torsional, 2 rolling
_FLY_BROWN = (0.35, 0.22, 0.12, 1.0)


@dataclass(frozen=True)
class ArenaObject:
    """A seen (and optionally felt) object. Lengths in mm, colour RGBA in [0, 1]."""

    name: str
    kind: str
    size: float
    height: float
    rgba: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    collides: bool = False

    def __post_init__(self) -> None:
        if self.kind not in OBJECT_KINDS:
            raise ValueError(f"object {self.name!r}: kind {self.kind!r} is not one of {OBJECT_KINDS}")
        if not (self.size > 0 and self.height > 0):
            raise ValueError(f"object {self.name!r}: size={self.size} and height={self.height} must be > 0 (mm)")
        if len(self.rgba) != 4 or not all(0.0 <= c <= 1.0 for c in self.rgba):
            raise ValueError(f"object {self.name!r}: rgba={self.rgba} must be 4 values in [0, 1]")


def body_name(obj: ArenaObject) -> str:
    return f"arena/{obj.name}"


def _geoms(obj: ArenaObject) -> list[dict]:
    """Geom attributes of one object, in its body frame (x = its heading)."""
    g = mujoco.mjtGeom
    if obj.kind == "sphere":
        return [dict(type=g.mjGEOM_SPHERE, size=[obj.size, 0, 0], pos=[0, 0, obj.height], rgba=obj.rgba)]
    if obj.kind == "pillar":
        half = obj.height / 2
        return [dict(type=g.mjGEOM_CAPSULE, size=[obj.size, half, 0], pos=[0, 0, half], rgba=obj.rgba)]
    # A fly of body length L standing with its thorax at ``height``; proportions
    # of NeuroMechFly (head : thorax : abdomen lengths about 0.25 : 0.35 : 0.4).
    length, z = obj.size, obj.height
    brown, wing = _FLY_BROWN, (0.8, 0.8, 0.85, 0.6)
    return [
        dict(type=g.mjGEOM_SPHERE, size=[0.12 * length, 0, 0], pos=[0.38 * length, 0, z + 0.04 * length], rgba=brown),
        dict(type=g.mjGEOM_ELLIPSOID, size=[0.2 * length, 0.15 * length, 0.15 * length], pos=[0.12 * length, 0, z], rgba=brown),
        dict(type=g.mjGEOM_ELLIPSOID, size=[0.24 * length, 0.14 * length, 0.12 * length], pos=[-0.28 * length, 0, z - 0.03 * length], rgba=brown),
        *[
            dict(type=g.mjGEOM_ELLIPSOID, size=[0.3 * length, 0.1 * length, 0.01 * length],
                 pos=[-0.2 * length, side * 0.12 * length, z + 0.16 * length], rgba=wing)
            for side in (1, -1)
        ],
    ]


def _pair_partners(spec: mujoco.MjSpec) -> list[str]:
    """Geom names of the segments obstacles push (named like the segment in both models).

    By geom, not body: compiling fuses the head and abdomen into the thorax body.
    """
    names = [f"{FLY_NAME}/{seg}" for seg in OBSTACLE_CONTACT_SEGMENTS]
    missing = [name for name in names if spec.geom(name) is None]
    if missing:
        raise ValueError(f"the fly has no geoms {missing} for obstacle contacts")
    return names


def add_objects(spec: mujoco.MjSpec, objects: tuple[ArenaObject, ...]) -> None:
    """Add ``objects`` to a NeuroMechFly spec as mocap bodies (in ``objects`` order)."""
    names = [obj.name for obj in objects]
    if len(set(names)) != len(names):
        raise ValueError(f"arena object names must be unique, got {names}")
    partners = _pair_partners(spec) if any(obj.collides for obj in objects) else []
    for obj in objects:
        body = spec.worldbody.add_body(name=body_name(obj), mocap=True)
        for i, attributes in enumerate(_geoms(obj)):
            geom = body.add_geom(name=f"{body_name(obj)}/{i}", contype=0, conaffinity=0, **attributes)
            if obj.collides:
                for partner in partners:
                    spec.add_pair(geomname1=geom.name, geomname2=partner, condim=3, friction=OBSTACLE_FRICTION)


def object_geom_ids(model: mujoco.MjModel, objects: tuple[ArenaObject, ...]) -> np.ndarray:
    """Ids of the geoms of the colliding ``objects`` (for contact checks)."""
    ids = [
        g
        for obj in objects
        if obj.collides
        for g in range(model.ngeom)
        if model.geom_bodyid[g] == mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body_name(obj))
    ]
    return np.array(ids, dtype=int)


def check_mocap_layout(model: mujoco.MjModel, objects: tuple[ArenaObject, ...]) -> None:
    """Check that ``objects`` are the model's mocap bodies, in order (rows of ``data.mocap_pos``)."""
    bodies = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body_name(obj)) for obj in objects]
    if min(bodies, default=0) < 0:
        raise ValueError(f"model lacks arena objects {[o.name for o, b in zip(objects, bodies) if b < 0]}")
    if model.nmocap != len(objects) or list(model.body_mocapid[bodies]) != list(range(len(objects))):
        raise ValueError(f"the model's {model.nmocap} mocap bodies are not exactly the arena objects, in order")


# -- Trajectories ---------------------------------------------------------------


class Trajectory(NamedTuple):
    """Parameters of every object's path, one row per object (NumPy or JAX arrays).

    Attributes:
        origin: (n, 2) position at ``start_time``, mm.
        direction: (n, 2) unit direction of straight-line travel and of the S-path.
        speed: (n,) straight-line speed, mm/s.
        max_travel: (n,) distance after which straight-line travel stops, mm (inf: never).
        amplitude: (n,) lateral amplitude of the S-path, mm.
        period: (n,) period of the S-path, s.
        radius: (n,) radius of the circle, mm.
        angular_speed: (n,) rad/s on the circle (positive: counter-clockwise).
        phase: (n,) angle φ of the origin seen from the circle's centre, rad.
        waypoints: (n, k, 2) random-walk offsets at times ``j * waypoint_interval``, mm.
        waypoint_interval: () s between waypoints.
        start_time: (n,) when the object starts moving, s.
        yaw: (n,) heading of an object at rest, rad.
    """

    origin: jax.Array
    direction: jax.Array
    speed: jax.Array
    max_travel: jax.Array
    amplitude: jax.Array
    period: jax.Array
    radius: jax.Array
    angular_speed: jax.Array
    phase: jax.Array
    waypoints: jax.Array
    waypoint_interval: jax.Array
    start_time: jax.Array
    yaw: jax.Array


def static_trajectory(origin, yaw=None, n_waypoints: int = 2) -> Trajectory:
    """Objects at rest at ``origin`` (n, 2); the other components are zero."""
    origin = jnp.asarray(origin, jnp.float32)
    n = origin.shape[0]
    zeros = jnp.zeros(n, jnp.float32)
    return Trajectory(
        origin=origin,
        direction=jnp.tile(jnp.array([1.0, 0.0], jnp.float32), (n, 1)),
        speed=zeros,
        max_travel=jnp.full(n, jnp.inf, jnp.float32),
        amplitude=zeros,
        period=jnp.ones(n, jnp.float32),
        radius=zeros,
        angular_speed=zeros,
        phase=zeros,
        waypoints=jnp.zeros((n, n_waypoints, 2), jnp.float32),
        waypoint_interval=jnp.float32(1.0),
        start_time=zeros,
        yaw=zeros if yaw is None else jnp.asarray(yaw, jnp.float32),
    )


def _interpolate_waypoints(waypoints, interval, s, xp):
    k = waypoints.shape[1]
    position = xp.clip(s / interval, 0.0, k - 1.0)
    lower = xp.clip(xp.floor(position), 0, k - 2).astype(int)
    fraction = (position - lower)[..., None]
    rows = xp.arange(waypoints.shape[0])
    return (1 - fraction) * waypoints[rows, lower] + fraction * waypoints[rows, lower + 1]


def object_positions(traj: Trajectory, t):
    """(..., n, 2) object positions at time ``t`` (s; a scalar, or an array of times: ``t.shape + (n, 2)``);
    NumPy in, NumPy out; JAX likewise."""
    xp = array_module(traj.origin)
    s = xp.maximum(xp.asarray(t)[..., None] - traj.start_time, 0.0)
    travel = xp.minimum(traj.speed * s, traj.max_travel)
    normal = xp.stack([-traj.direction[:, 1], traj.direction[:, 0]], axis=1)
    sway = traj.amplitude * xp.sin(2 * np.pi * s / traj.period)
    angle = traj.phase + traj.angular_speed * s
    circle = traj.radius[:, None] * xp.stack(
        [xp.cos(angle) - xp.cos(traj.phase), xp.sin(angle) - xp.sin(traj.phase)], axis=-1
    )
    walk = _interpolate_waypoints(traj.waypoints, traj.waypoint_interval, s, xp)
    return traj.origin + travel[..., None] * traj.direction + sway[..., None] * normal + circle + walk


def object_yaws(traj: Trajectory, t, dt: float = 1e-3):
    """(..., n) heading of each object, rad: its direction of motion, or ``yaw`` at rest."""
    xp = array_module(traj.origin)
    velocity = (object_positions(traj, t + dt) - object_positions(traj, t)) / dt
    moving = xp.linalg.norm(velocity, axis=-1) > 1e-3
    return xp.where(moving, xp.arctan2(velocity[..., 1], velocity[..., 0]), traj.yaw)


def yaw_quaternions(yaw):
    """(..., n, 4) quaternions (w, x, y, z) of rotations by ``yaw`` (..., n) about z."""
    xp = array_module(yaw)
    half = yaw / 2
    zeros = xp.zeros_like(half)
    return xp.stack([xp.cos(half), zeros, zeros, xp.sin(half)], axis=-1)


def mocap_poses(traj: Trajectory, t):
    """``(mocap_pos (..., n, 3), mocap_quat (..., n, 4))`` of the objects at time ``t`` (a scalar
    or an array of times, as :func:`object_positions`), NumPy or JAX.

    Objects stand on the ground plane (z = 0); their geoms carry the height.
    """
    xp = array_module(traj.origin)
    xy = object_positions(traj, t)
    return xp.concatenate([xy, xp.zeros_like(xy[..., :1])], axis=-1), yaw_quaternions(object_yaws(traj, t))


def to_numpy(traj: Trajectory) -> Trajectory:
    """The same trajectory as float64 NumPy arrays (for the MuJoCo C backend)."""
    return Trajectory(*(np.asarray(field, dtype=np.float64) for field in traj))

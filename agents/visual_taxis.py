"""A vision-driven baseline: steer toward (or away from) the dark object the eyes see.

Each control step the agent reads ``obs["vision"]``, weights every ommatidium
by how much darker than ``DARK_THRESHOLD`` it reads (the arena's floor and sky
read brighter; the black target reads ~0), and takes the weighted circular
mean of the ommatidia's azimuths as the object's bearing. The bearing sets a
2-D descending drive (left, right), as in NeuroMechFly v2's turning
controller: the side toward the object slows down (and steps backwards for
objects far to the side), and the hybrid walker
(:class:`~connectofly.agents.hybrid.HybridAgent`) turns that way. When
nothing dark is in view the fly turns on the spot to search.

Turned around (:func:`escape_drive`, the ``visual_escape`` controller) the same
bearing drives an escape: the fly turns away from the dark object until it is
out of view, and walks straight on when nothing dark is in view. It is the
simple baseline for ``Looming``, whose sphere rushes at the fly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mujoco
import numpy as np

from connectofly.agents.hybrid import HybridAgent, HybridParams, HybridState, steered
from connectofly.envs.kinematics import array_module

DARK_THRESHOLD = 0.14  # readout below this counts as object; the flat floor reads ≥ 0.149
STEERING_GAIN = 1.5  # drive difference per rad of bearing
DRIVE_RANGE = (-0.4, 1.2)
SEARCH_DRIVE = (-0.4, 1.2)  # turning left on the spot
STRAIGHT_DRIVE = (1.0, 1.0)


def ommatidium_directions(model: mujoco.MjModel, data: mujoco.MjData, thorax_body: int) -> np.ndarray:
    """(2, 721, 3) unit viewing direction of each ommatidium in the thorax frame (x forward, y left, z up).

    The head is fixed to the thorax in this body, so one pose gives them all.
    """
    from connectofly.envs import raycast

    rays = raycast.make_eye_rays()
    directions = np.einsum("orc,or->oc", np.asarray(rays.directions), np.asarray(rays.weights))
    thorax = data.xmat[thorax_body].reshape(3, 3)
    eyes = np.array([directions @ data.cam_xmat[camera].reshape(3, 3).T @ thorax
                     for camera in raycast.eye_camera_ids(model)])
    return eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)


def env_ommatidium_directions(env) -> np.ndarray:
    """:func:`ommatidium_directions` of a connectofly env's fly (reset or not)."""
    base = env.unwrapped
    mujoco.mj_forward(base.model, base.physics.data)
    return ommatidium_directions(base.model, base.physics.data, base.physics.index.thorax_body)


def ommatidium_azimuths(directions: np.ndarray) -> np.ndarray:
    """(2, 721) azimuth of each of :func:`ommatidium_directions`, rad (+ left)."""
    return np.arctan2(directions[..., 1], directions[..., 0])


def dark_bearing(vision, azimuths, threshold: float = DARK_THRESHOLD):
    """Bearing of the dark object (rad, + left), NaN when nothing is darker than ``threshold``.

    NumPy in, NumPy out; JAX likewise (the MJX closed loop, :mod:`connectofly.agents.mjx_closed_loop`).
    """
    xp = array_module(vision)
    darkness = xp.clip(threshold - vision.sum(axis=-1), 0.0, None)
    bearing = xp.arctan2((darkness * xp.sin(azimuths)).sum(), (darkness * xp.cos(azimuths)).sum())
    return xp.where(darkness.sum() > 0, bearing, xp.nan)


def object_bearing(vision: np.ndarray, azimuths: np.ndarray, threshold: float = DARK_THRESHOLD) -> float | None:
    """:func:`dark_bearing` as a float, or None when nothing dark is in view."""
    bearing = float(dark_bearing(np.asarray(vision), azimuths, threshold))
    return None if np.isnan(bearing) else bearing


def _as_bearing(bearing):
    """NaN for None ("nothing in view"); arrays and floats as they are."""
    return np.nan if bearing is None else bearing


def steering_drive(bearing, gain: float = STEERING_GAIN, search: tuple[float, float] = SEARCH_DRIVE):
    """(left, right) descending drive turning toward ``bearing``; ``search`` when it is None or NaN.
    NumPy or JAX (a traced bearing gives a JAX drive)."""
    bearing = _as_bearing(bearing)
    xp = array_module(bearing)
    turn = xp.clip(1.0 + gain * bearing * xp.array([-1.0, 1.0]), *DRIVE_RANGE)
    return xp.where(xp.isnan(bearing), xp.asarray(search, dtype=turn.dtype), turn)


def escape_drive(bearing):
    """(left, right) descending drive turning toward the direction opposite ``bearing``
    (away from the object); walking straight when None or NaN (nothing to flee in view)."""
    bearing = _as_bearing(bearing)
    xp = array_module(bearing)
    return steering_drive(bearing - xp.copysign(np.pi, bearing), search=STRAIGHT_DRIVE)


@dataclass
class VisualTaxisAgent:
    """Hybrid walker steered by the bearing of the darkest object in view.

    Args:
        azimuths: from :func:`ommatidium_azimuths` (or use :meth:`for_env`).
        steer: bearing (NaN: nothing in view) → (left, right) drive: :func:`steering_drive`
            (approach) or :func:`escape_drive` (flee).
    """

    control_dt: float
    azimuths: np.ndarray
    walker: HybridAgent | None = None
    steer: Callable = steering_drive

    def __post_init__(self) -> None:
        if self.azimuths.shape != (2, 721):
            raise ValueError(f"azimuths must have shape (2, 721), got {self.azimuths.shape}")
        if self.walker is None:
            self.walker = HybridAgent(control_dt=self.control_dt)

    @classmethod
    def for_env(cls, env, steer: Callable = steering_drive) -> "VisualTaxisAgent":
        """The agent for a connectofly env with vision (reset or not)."""
        return cls(env.unwrapped.control_dt, ommatidium_azimuths(env_ommatidium_directions(env)), steer=steer)

    def default_params(self) -> HybridParams:
        return self.walker.default_params()

    def init(self, rng: np.random.Generator) -> HybridState:
        return self.walker.init(rng)

    def act(self, params: HybridParams, carry: HybridState, obs: dict, rng: np.random.Generator):
        if "vision" not in obs:
            raise ValueError("VisualTaxisAgent needs obs['vision']: make the env with vision=True")
        return self.walker.act(steered(params, self.drive(obs["vision"])), carry, obs, rng)

    def drive(self, vision: np.ndarray) -> np.ndarray:
        """The (left, right) descending drive for one ``obs["vision"]``."""
        return self.steer(dark_bearing(vision, self.azimuths))

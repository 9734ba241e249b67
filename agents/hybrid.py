"""Hybrid walking: the CPG plus sensory corrections, as in NeuroMechFly v2.

Two reflexes adjust the CPG's leg trajectories (Wang-Chen et al. 2024):

* **retraction**: a leg whose claw hangs much lower than the others (relative
  to the thorax) has stepped into a gap; it is lifted.
* **stumbling**: a leg whose tibia or proximal tarsus is pushed backwards by
  the terrain has hit an obstacle during swing; it is lifted higher.

Each correction grows while its condition holds and decays otherwise; the
net correction moves the leg's joints along a fixed per-leg-pair direction,
weighted by a gain that peaks mid-swing. Optionally a 2-D descending drive
steers (see :func:`connectofly.agents.cpg.with_descending_drive`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from connectofly.agents.cpg import (
    CPGParams,
    CPGState,
    cpg_step,
    initial_state,
    leg_joint_targets,
    locomotion_action,
    tripod_params,
    with_descending_drive,
)
from connectofly.envs.body import LEG_SEGMENTS, LEGS
from connectofly.envs.kinematics import StepKinematics, load_step_kinematics

# Joint directions of a correction per leg pair (front, middle, hind), in the
# per-leg DoF order of body.LEG_DOFS (coxa yaw, pitch, roll, femur pitch, roll,
# tibia, tarsus1); values of NeuroMechFly v2's hybrid controller.
_CORRECTION_BY_PAIR = {
    "f": np.array([0.0, -0.03, 0.0, -0.03, 0.0, 0.03, 0.03]),
    "m": np.array([0.025, -0.015, 0.001, -0.02, 0.0, -0.02, 0.0]),
    "h": np.array([0.0, 0.0, 0.0, -0.02, 0.0, 0.01, -0.02]),
}
# Right legs mirror roll and yaw.
_MIRROR = np.array([-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
CORRECTION_DIRECTIONS = np.stack(
    [_CORRECTION_BY_PAIR[leg[1]] * (_MIRROR if leg[0] == "r" else 1.0) for leg in LEGS]
)
STUMBLE_SEGMENTS = np.array([LEG_SEGMENTS.index(s) for s in ("tibia", "tarsus1", "tarsus2")])


@dataclass(frozen=True)
class HybridParams:
    cpg: CPGParams
    stumble_force_threshold: float = -1.0  # µN along the heading
    retraction_height_threshold: float = 0.05  # mm
    retraction_rates: tuple[float, float] = (800.0, 700.0)  # growth, decay per s
    stumbling_rates: tuple[float, float] = (2200.0, 1800.0)
    max_correction: float = 80.0
    swing_extension: float = np.pi / 4  # rad of phase that adhesion stays off after swing
    retraction_persistence: float = 2e-3  # s a strong retraction is held
    retraction_persistence_threshold: float = 20.0


@dataclass(frozen=True)
class HybridState:
    cpg: CPGState
    retraction: np.ndarray  # (6,)
    stumbling: np.ndarray  # (6,)
    persistence: np.ndarray  # (6,) s left of a held retraction


def heading_from_quaternion(quat: np.ndarray) -> np.ndarray:
    """World-frame x axis of a body with orientation ``quat`` (w, x, y, z)."""
    w, x, y, z = quat
    return np.array([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)])


def retraction_leg(thorax_z: float, claw_z: np.ndarray, threshold: float) -> int | None:
    """The leg whose claw is lowest below the thorax by > threshold vs the third lowest."""
    depth = thorax_z - claw_z
    order = np.argsort(depth)
    if depth[order[-1]] > depth[order[-3]] + threshold:
        return int(order[-1])
    return None


def stumbling_mask(contact_forces: np.ndarray, heading: np.ndarray, threshold: float) -> np.ndarray:
    """(6,) legs whose tibia/tarsus1/tarsus2 are pushed backwards beyond threshold."""
    along_heading = contact_forces[:, STUMBLE_SEGMENTS] @ heading
    return (along_heading < threshold).any(axis=1)


def swing_gain(phases: np.ndarray, swing_end: np.ndarray, extension: float) -> np.ndarray:
    """(6,) correction gain over the step cycle: peaks mid-swing, slightly negative late stance.

    Piecewise linear through (0, 0), (mid-swing, 0.8), (swing end + extension,
    0), (mid-stance, -0.1), (2π, 0), with each leg's own swing end.
    """
    wrapped = np.mod(phases, 2 * np.pi)
    knots = np.stack(
        [np.zeros_like(swing_end), swing_end / 2, swing_end + extension,
         (swing_end + 2 * np.pi) / 2, np.full_like(swing_end, 2 * np.pi)],
        axis=1,
    )
    values = np.array([0.0, 0.8, 0.0, -0.1, 0.0])
    segment = np.clip((knots[:, 1:] <= wrapped[:, None]).sum(axis=1), 0, 3)
    legs = np.arange(len(wrapped))
    start, stop = knots[legs, segment], knots[legs, segment + 1]
    fraction = (wrapped - start) / (stop - start)
    return values[segment] + fraction * (values[segment + 1] - values[segment])


def steered(params: HybridParams, drive: np.ndarray) -> HybridParams:
    """``params`` with the CPG steered by the descending ``drive`` (left, right)."""
    return replace(params, cpg=with_descending_drive(params.cpg, drive))


def _relax(value: np.ndarray, active: np.ndarray, rates: tuple[float, float], dt: float) -> np.ndarray:
    return np.where(active, value + rates[0] * dt, np.maximum(value - rates[1] * dt, 0.0))


@dataclass
class HybridAgent:
    """CPG + retraction and stumbling reflexes; optional descending drive (left, right)."""

    control_dt: float
    drive: tuple[float, float] | None = None
    kinematics: StepKinematics = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.kinematics is None:
            self.kinematics = load_step_kinematics()

    def default_params(self) -> HybridParams:
        cpg = tripod_params()
        if self.drive is not None:
            cpg = with_descending_drive(cpg, np.asarray(self.drive))
        return HybridParams(cpg=cpg)

    def init(self, rng: np.random.Generator) -> HybridState:
        zeros = np.zeros(len(LEGS))
        return HybridState(initial_state(rng), zeros, zeros, zeros)

    def act(self, params: HybridParams, carry: HybridState, obs: dict, rng: np.random.Generator):
        dt = self.control_dt
        retract = np.zeros(len(LEGS), dtype=bool)
        leg = retraction_leg(obs["thorax_position"][2], obs["claw_positions"][:, 2], params.retraction_height_threshold)
        persistence = np.maximum(carry.persistence - dt, 0.0)
        if leg is not None:
            retract[leg] = True
            if carry.retraction[leg] > params.retraction_persistence_threshold:
                persistence[leg] = params.retraction_persistence
        retract |= persistence > 0
        heading = heading_from_quaternion(obs["thorax_orientation"])
        stumbling = stumbling_mask(obs["contact_forces"], heading, params.stumble_force_threshold)

        cpg = cpg_step(params.cpg, carry.cpg, dt)
        retraction = _relax(carry.retraction, retract, params.retraction_rates, dt)
        stumble = _relax(carry.stumbling, stumbling, params.stumbling_rates, dt)
        # A retraction overrides and clears stumbling on the same leg.
        stumble = np.where(retraction > 0, 0.0, stumble)
        net = np.clip(np.where(retraction > 0, retraction, stumble), 0, params.max_correction)
        gain = swing_gain(cpg.phases, self.kinematics.swing_end, params.swing_extension)

        targets = leg_joint_targets(self.kinematics, cpg.phases, cpg.amplitudes)
        targets = targets + (net * gain)[:, None] * CORRECTION_DIRECTIONS
        in_extended_swing = _in_window(cpg.phases, self.kinematics.swing_end + params.swing_extension)
        action = locomotion_action(targets, ~in_extended_swing)
        return HybridState(cpg, retraction, stumble, persistence), action


def _in_window(phases: np.ndarray, window_end: np.ndarray) -> np.ndarray:
    wrapped = np.mod(phases, 2 * np.pi)
    return (wrapped > 0) & (wrapped < window_end)

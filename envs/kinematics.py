"""Recorded single-step leg kinematics of a walking fly, as a phase lookup table.

NeuroMechFly v2's walking controllers replay one recorded step per leg,
indexed by a phase in [0, 2π) (Wang-Chen et al., Nature Methods 2024). flygym
2.1.1 ships that recording (``flygym_demo/complex_terrain/assets/
single_steps_untethered.pkl``: 45 samples at 3 ms per leg and DoF, from
NeuroMechFly v1's 3-D pose data). We read it from the installed package at run
time, fit a periodic cubic spline per leg and DoF, and sample it on a fine phase
grid so that every controller evaluates it with one vectorised interpolation.

Phase 0 is the start of swing; each leg swings while its phase lies in
``(0, swing_end[leg])`` and is in stance otherwise.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import jax
import jax.numpy as jnp
import numpy as np
from scipy.interpolate import CubicSpline

from connectofly.envs.body import LEG_DOFS, LEGS, N_JOINTS

N_PHASE_BINS = 1024
# Legacy (NeuroMechFly v1) names of the seven DoFs, in body.LEG_DOFS order.
_LEGACY_DOF = ("Coxa_yaw", "Coxa", "Coxa_roll", "Femur", "Femur_roll", "Tibia", "Tarsus1")
# Right legs mirror roll and yaw between the v1 recording and the v2 model.
_RIGHT_LEG_SIGN = np.array([-1.0 if dof[2] in ("roll", "yaw") else 1.0 for dof in LEG_DOFS])
# Margin added on each side of the recorded walking envelope to form the
# action range (NeuroMechFly defines no joint limits of its own).
JOINT_RANGE_MARGIN = np.pi / 2


def array_module(x):
    """jax.numpy for JAX arrays (including tracers), numpy otherwise."""
    return jnp if isinstance(x, jax.Array) else np


@dataclass(frozen=True)
class StepKinematics:
    """One recorded step per leg, sampled on a uniform phase grid.

    Attributes:
        table: (N_PHASE_BINS + 1, 6, 7) joint angles, rad; row k is phase
            2πk/N_PHASE_BINS, the last row repeats the first (periodic).
        swing_end: (6,) phase at which each leg's swing ends, rad.
        duration: length of the recorded step, s.
        neutral: (6, 7) pose at phase π, where the controllers' amplitude
            scaling is centred.
    """

    table: np.ndarray
    swing_end: np.ndarray
    duration: float
    neutral: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.neutral is None:
            object.__setattr__(self, "neutral", self.angles(np.full(len(LEGS), np.pi)))

    def angles(self, phases: np.ndarray) -> np.ndarray:
        """(6, 7) joint angles of each leg at its phase (linear interpolation).

        numpy in, numpy out; a JAX array in gives a JAX array (jit-able).
        """
        xp = array_module(phases)
        position = (xp.mod(phases, 2 * np.pi) / (2 * np.pi)) * N_PHASE_BINS
        lower = xp.minimum(position.astype(int), N_PHASE_BINS - 1)
        frac = (position - lower)[:, None]
        legs = np.arange(len(LEGS))
        table = xp.asarray(self.table, dtype=phases.dtype)
        return (1 - frac) * table[lower, legs] + frac * table[lower + 1, legs]

    def in_swing(self, phases: np.ndarray) -> np.ndarray:
        """(6,) bool: whether each leg is in its swing phase."""
        wrapped = array_module(phases).mod(phases, 2 * np.pi)
        return (wrapped > 0) & (wrapped < self.swing_end)


@lru_cache(maxsize=1)
def load_step_kinematics() -> StepKinematics:
    """Read flygym's recorded steps and tabulate them (cached)."""
    asset = files("flygym_demo.complex_terrain") / "assets/single_steps_untethered.pkl"
    with asset.open("rb") as f:
        # A pickle of plain arrays that ships inside the installed flygym wheel.
        recording = pickle.load(f)
    n_samples = len(recording["joint_LFCoxa"])
    duration = n_samples * recording["meta"]["timestep"]
    sample_phases = np.linspace(0, 2 * np.pi, n_samples)
    grid = np.linspace(0, 2 * np.pi, N_PHASE_BINS + 1)
    table = np.empty((N_PHASE_BINS + 1, len(LEGS), len(LEG_DOFS)))
    for leg_idx, leg in enumerate(LEGS):
        samples = np.array(
            [recording[f"joint_{leg.upper()}{dof}"] for dof in _LEGACY_DOF], dtype=float
        )
        if leg.startswith("r"):
            samples *= _RIGHT_LEG_SIGN[:, None]
        spline = CubicSpline(sample_phases, samples, axis=1, bc_type="periodic")
        table[:, leg_idx] = spline(grid).T
    stance_start = np.array(
        [recording["swing_stance_time"]["stance"][leg.upper()] for leg in LEGS]
    )
    return StepKinematics(table, stance_start / duration * 2 * np.pi, duration)


def joint_ranges() -> tuple[np.ndarray, np.ndarray]:
    """(low, high), each (42,): the action range of every actuated joint.

    The envelope of the recorded walking step, widened by JOINT_RANGE_MARGIN on
    each side and kept within [-π, π].
    """
    table = load_step_kinematics().table.reshape(-1, N_JOINTS)
    low = np.maximum(table.min(axis=0) - JOINT_RANGE_MARGIN, -np.pi)
    high = np.minimum(table.max(axis=0) + JOINT_RANGE_MARGIN, np.pi)
    return low, high

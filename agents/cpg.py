"""Central pattern generator (CPG) walking, as in NeuroMechFly v2.

Six phase-amplitude oscillators, one per leg (Ijspeert's coupled-oscillator
form used by NeuroMechFly v2, Wang-Chen et al. 2024):

    dθ_i/dt = 2π ν_i + Σ_j r_j w_ij sin(θ_j - θ_i - φ_ij)
    dr_i/dt = α_i (R_i - r_i)

Each leg replays the recorded step (:mod:`connectofly.envs.kinematics`) at
its phase θ_i, scaled about the neutral pose by its amplitude r_i; adhesion is
on during stance. Tripod phase biases (φ = π between the two tripods) and a
12 Hz intrinsic frequency are the defaults. All functions are vectorised over
legs; the per-step cost is a handful of numpy operations. The same functions
run on JAX arrays (jit, vmap, grad) for the MJX backend.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import jax
import numpy as np

from connectofly.envs.body import LEGS
from connectofly.envs.kinematics import StepKinematics, array_module, load_step_kinematics

# Tripod A = lf, rm, lh; tripod B = rf, lm, rh (LEGS order: lf lm lh rf rm rh).
TRIPOD = np.array([0, 1, 0, 1, 0, 1])
LEG_SIDE = np.array([0 if leg.startswith("l") else 1 for leg in LEGS])  # 0 left, 1 right


@dataclass(frozen=True)
class CPGParams:
    """Oscillator parameters; arrays over the six legs (LEGS order)."""

    frequencies: np.ndarray  # (6,) intrinsic frequency ν, Hz
    amplitudes: np.ndarray  # (6,) target amplitude R
    coupling: np.ndarray  # (6, 6) coupling weights w
    phase_biases: np.ndarray  # (6, 6) φ_ij, rad
    convergence: np.ndarray  # (6,) α, 1/s


@dataclass(frozen=True)
class CPGState:
    phases: np.ndarray  # (6,) rad
    amplitudes: np.ndarray  # (6,)


for _cls in (CPGParams, CPGState):  # PyTrees, for jit/vmap/grad
    jax.tree_util.register_dataclass(_cls, data_fields=[f.name for f in fields(_cls)], meta_fields=[])


def tripod_params(
    frequency: float = 12.0, amplitude: float = 1.0, coupling: float = 10.0, convergence: float = 20.0
) -> CPGParams:
    """NeuroMechFly v2's default tripod CPG."""
    biases = np.pi * (TRIPOD[:, None] != TRIPOD[None, :])
    n = len(LEGS)
    return CPGParams(
        frequencies=np.full(n, frequency),
        amplitudes=np.full(n, amplitude),
        coupling=coupling * (biases > 0),
        phase_biases=biases,
        convergence=np.full(n, convergence),
    )


def initial_state(rng: np.random.Generator) -> CPGState:
    """Random phases, zero amplitudes: the gait ramps up from standing."""
    n = len(LEGS)
    return CPGState(rng.uniform(0, 2 * np.pi, n), np.zeros(n))


def cpg_step(params: CPGParams, state: CPGState, dt: float) -> CPGState:
    """One Euler step of the oscillator network."""
    xp = array_module(state.phases)
    phase_diff = state.phases[None, :] - state.phases[:, None]
    coupling = (state.amplitudes[None, :] * params.coupling * xp.sin(phase_diff - params.phase_biases)).sum(axis=1)
    dphase = 2 * np.pi * params.frequencies + coupling
    damp = params.convergence * (params.amplitudes - state.amplitudes)
    return CPGState(state.phases + dt * dphase, state.amplitudes + dt * damp)


def leg_joint_targets(kin: StepKinematics, phases: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """(6, 7) joint targets: the recorded step at each phase, scaled about neutral."""
    neutral = kin.neutral
    return neutral + amplitudes[:, None] * (kin.angles(phases) - neutral)


def locomotion_action(joint_targets: np.ndarray, adhesion: np.ndarray) -> np.ndarray:
    """(48,) env action from (6, 7) joint targets and (6,) adhesion."""
    xp = array_module(joint_targets)
    return xp.concatenate([joint_targets.reshape(-1), adhesion.astype(joint_targets.dtype)])


def with_descending_drive(params: CPGParams, drive: np.ndarray) -> CPGParams:
    """Turning by a 2-D descending drive (left, right), as in NeuroMechFly v2.

    Each side's amplitude is |drive| and its legs step backwards when the
    drive is negative; a weaker side makes the fly turn toward it.
    """
    if not isinstance(drive, jax.Array):  # traced drives (an MJX rollout) cannot be checked
        drive = np.asarray(drive, dtype=float)
        if drive.shape != (2,) or not np.isfinite(drive).all():
            raise ValueError(f"descending drive must be 2 finite numbers (left, right), got {drive!r}")
    xp = array_module(drive)
    per_leg = drive[LEG_SIDE]
    return replace(
        params,
        amplitudes=xp.abs(per_leg),
        frequencies=xp.abs(params.frequencies) * xp.where(per_leg >= 0, 1.0, -1.0),
    )


@dataclass
class CPGAgent:
    """Open-loop tripod CPG walking (no sensory feedback)."""

    control_dt: float
    kinematics: StepKinematics = None  # type: ignore[assignment]
    params: CPGParams | None = None  # default: NeuroMechFly v2's tripod

    def __post_init__(self) -> None:
        if self.kinematics is None:
            self.kinematics = load_step_kinematics()

    def default_params(self) -> CPGParams:
        return tripod_params() if self.params is None else self.params

    def init(self, rng: np.random.Generator) -> CPGState:
        return initial_state(rng)

    def act(self, params: CPGParams, carry: CPGState, obs: dict, rng: np.random.Generator):
        carry = cpg_step(params, carry, self.control_dt)
        targets = leg_joint_targets(self.kinematics, carry.phases, carry.amplitudes)
        adhesion = ~self.kinematics.in_swing(carry.phases)
        return carry, locomotion_action(targets, adhesion)

"""Leg motor neurons → NeuroMechFly joint targets: the one motor-map table.

Motor neurons (MNs) of the FANC left-T1 leg (Lesser, Azevedo et al., Nature
2024) fall into 14 motor modules. Each module drives one side of an antagonist
pair of a leg joint; the table :data:`CHANNELS` says which NeuroMechFly DoF
(``connectofly.envs.body.LEG_DOFS``) each pair moves and in which direction:

| channel | agonist modules (+) | antagonist modules (−) | DoF (front / middle, hind) | joint-angle change when the agonist wins |
|---|---|---|---|---|
| ``thc_protraction`` | coxa_promote, coxa_rotate_adduct (swing) | coxa_posterior (stance) | coxa pitch / coxa roll | decreases (claw moves anterior) |
| ``ctr_flexion`` | trochanter_flex | trochanter_extend | femur pitch | decreases (femur folds toward the coxa) |
| ``femur_reduction`` | femur_reduct | — | femur roll | decreases (claw moves posterior; assumed) |
| ``fti_flexion`` | tibia_ta_flex_A/B/C | tibia_extend | tibia pitch | increases (tibia folds toward the femur) |
| ``tita_depression`` | tarsus_depress_medial, tarsus_depress_ventralU | — | tarsus1 pitch | increases (same rotational sense as tibia flexion) |
| ``claw`` | ltm_A, ltm_B (long tendon muscle: grip) | — | adhesion | adhesion on |

Which ThC DoF carries protraction differs between legs in NeuroMechFly: the
front legs swing mainly about coxa pitch, the middle and hind legs about coxa
roll (Lobato-Rios et al., Nature Methods 2022, kinematic replay). The
directions were calibrated on the body (``tests/test_vnc_motor_map.py``): with
the body in its neutral pose, a +0.2 rad step of each DoF was applied and the
claw / segment positions read in the thorax frame (x anterior). Flexion of a
joint shortens the distance across it (coxa → tibia for the CTr joint, femur →
tarsus for the FTi joint). The tarsus1 pitch axis is parallel to the tibia
pitch axis and equally oriented, so depression (flexion of the TiTa joint) has
the sign of tibia flexion. The reductor direction is an assumption from the
muscle's name (the reductor rotates the femur backwards; Snodgrass, Principles
of Insect Morphology, 1935) and is not checked against data. Left and right
legs are mirror images in NeuroMechFly with identical joint-angle conventions,
so the signs are the same on both sides.

Gaps of the data: the table has no tarsus levator and no dedicated antagonist
of the reductor; those joints return to the neutral pose by the position
actuator when their agonist is silent. ``tibia_ta_flex_*`` modules include a
few MNs of unidentified tarsal muscles; they are counted as tibia flexors.

**Muscle stage.** Per leg and channel side:

1. *Size-ordered recruitment* (Henneman's size principle, shown for fly leg
   MNs by Azevedo et al., eLife 2020): MN ``i`` contributes
   ``relu(rate_i - theta * s_i) * s_i / sum(s)`` where ``s_i`` is its size
   (here a proxy: its total premotor input synapses, which grow with MN size;
   Azevedo et al. 2024) normalised within the module side, so small MNs are
   recruited first and large ones add more force.
2. *First-order activation*: ``tau_act da/dt = tanh(drive) - a`` (a in [0, 1)).
3. *Joint target*: ``neutral + gain * direction * (a_agonist - a_antagonist)``
   at the channel's DoF, and that change times a fixed ratio at the DoFs the
   channel moves with it (``Channel.coupled``, below).
4. *Adhesion*: the claws grip (adhesion 1) while the claw muscle's activation
   exceeds :data:`ADHESION_THRESHOLD`, and release (0) below it, as
   NeuroMechFly's controllers switch adhesion on in stance and off in swing.

**Coupled DoFs.** The thorax–coxa joint is a ball joint with three DoFs in
NeuroMechFly, and a muscle that pulls the coxa forward turns it about one axis
that is a mix of them. The ThC channel therefore moves the secondary ThC DoF
along with its main one, by the ratio a least-squares line through the
recorded walking step gives (``tests/test_vnc_walk.py`` refits it from flygym's
recording): front legs' coxa roll 1.03 × coxa pitch (correlation over the step
0.89), middle legs' coxa pitch 1.45 × coxa roll (0.45), hind legs' 0.98 ×
(0.72). Coxa yaw moves little and is left out (correlations −0.05 to −0.30).
Holding the secondary DoF still turns the recorded step replayed at 13 Hz
into backward walking (−4.4 mm/s; through the motor map with the coupling
+10.9 mm/s; C physics, 2 s, ``scripts/vnc_step_replay.py``, docs/vnc.md).

All functions are pure JAX and batch over legs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.envs.body import LEG_DOFS, LEGS, N_ACTIONS, N_JOINTS

DOF_NAMES = tuple(f"{child.replace('trochanterfemur', 'femur')}_{axis}" for _, child, axis in LEG_DOFS)
# ('coxa_yaw', 'coxa_pitch', 'coxa_roll', 'femur_pitch', 'femur_roll', 'tibia_pitch', 'tarsus1_pitch')
SEGMENT_OF_LEG = {"lf": "front", "rf": "front", "lm": "middle", "rm": "middle", "lh": "hind", "rh": "hind"}
ADHESION = "adhesion"
ADHESION_THRESHOLD = 0.35  # claw-muscle activation above which the claws grip (half the stance target's 0.7)


@dataclass(frozen=True)
class Channel:
    """One antagonist pair (or single muscle group) and the DoF it moves.

    Attributes:
        name: channel name.
        agonists: canonical modules whose activity moves the joint by ``+direction``.
        antagonists: canonical modules that move it back.
        dof: DoF name per leg segment (``front``, ``middle``, ``hind``), or
            ``"adhesion"``.
        direction: sign of the joint-angle change when the agonist wins.
        gain: joint excursion per unit of activation difference, rad.
        coupled: per leg segment, ``(dof, ratio)`` pairs: DoFs that move by
            ``ratio`` × the main DoF's change (see module doc).
    """

    name: str
    agonists: tuple[str, ...]
    antagonists: tuple[str, ...]
    dof: dict[str, str]
    direction: int
    gain: float
    coupled: dict[str, tuple[tuple[str, float], ...]] | None = None


def _all_segments(dof: str) -> dict[str, str]:
    return {"front": dof, "middle": dof, "hind": dof}


CHANNELS: tuple[Channel, ...] = (
    Channel("thc_protraction", ("coxa_promote", "coxa_rotate_adduct"), ("coxa_posterior",),
            {"front": "coxa_pitch", "middle": "coxa_roll", "hind": "coxa_roll"}, -1, 0.5,
            coupled={"front": (("coxa_roll", 1.03),), "middle": (("coxa_pitch", 1.45),),
                     "hind": (("coxa_pitch", 0.98),)}),
    Channel("ctr_flexion", ("trochanter_flex",), ("trochanter_extend",),
            _all_segments("femur_pitch"), -1, 0.8),
    Channel("femur_reduction", ("femur_reduct",), (), _all_segments("femur_roll"), -1, 1.0),
    Channel("fti_flexion", ("tibia_ta_flex_A", "tibia_ta_flex_B", "tibia_ta_flex_C"), ("tibia_extend",),
            _all_segments("tibia_pitch"), 1, 0.8),
    Channel("tita_depression", ("tarsus_depress_medial", "tarsus_depress_ventralU"), (),
            _all_segments("tarsus1_pitch"), 1, 0.7),
    Channel("claw", ("ltm_A", "ltm_B"), (), _all_segments(ADHESION), 1, 1.0),
)
CHANNEL_NAMES = tuple(c.name for c in CHANNELS)

# Module names in the three vocabularies of the data → canonical (premotor-table) names.
MODULE_ALIASES = {
    # fanc_t1l_mn_modules_v840.csv
    "coxa_promotion": "coxa_promote",
    "coxa_rotator_adductor": "coxa_rotate_adduct",
    "ltm_dipalpha": "ltm_A",
    "ltm_nondipa": "ltm_B",
    "tarsus_depressor_medial": "tarsus_depress_medial",
    "tarsus_depressor_ventralU": "tarsus_depress_ventralU",
    # Pugliese et al. 2025 node tables (coarser modules)
    "coxa swing": "coxa_promote",
    "coxa stance": "coxa_posterior",
    "femur/tr flex": "trochanter_flex",
    "femur/tr extend": "trochanter_extend",
    "femur reductor": "femur_reduct",
    "tibia flex": "tibia_ta_flex_A",
    "tibia flex A": "tibia_ta_flex_A",
    "tibia flex B": "tibia_ta_flex_B",
    "tibia flex C": "tibia_ta_flex_C",
    "tibia extend": "tibia_extend",
    "tarsus control": "tarsus_depress_medial",  # coarse: in MANC it also holds tarsus levators
    "substrate grip": "ltm_B",
}
CANONICAL_MODULES = tuple(m for c in CHANNELS for m in c.agonists + c.antagonists)


def canonical_module(name: str) -> str:
    """Canonical module name of any of the data's vocabularies; ``ValueError`` if unknown."""
    name = str(name).strip()
    if name in CANONICAL_MODULES:
        return name
    if name in MODULE_ALIASES:
        return MODULE_ALIASES[name]
    raise ValueError(f"unknown motor module {name!r}; known: {sorted(set(CANONICAL_MODULES) | set(MODULE_ALIASES))}")


def module_role(module: str) -> tuple[int, int]:
    """(channel index, side) of a module; side 0 = agonist, 1 = antagonist."""
    canonical = canonical_module(module)
    for k, channel in enumerate(CHANNELS):
        if canonical in channel.agonists:
            return k, 0
        if canonical in channel.antagonists:
            return k, 1
    raise AssertionError(f"module {canonical} is in no channel")  # unreachable: CANONICAL_MODULES


def dof_index(leg: str, channel: Channel) -> int:
    """Action index (0..41) of the DoF that ``channel`` moves on ``leg``, or 42+leg for adhesion."""
    leg_i = LEGS.index(leg)
    dof = channel.dof[SEGMENT_OF_LEG[leg]]
    if dof == ADHESION:
        return N_JOINTS + leg_i
    return leg_i * len(LEG_DOFS) + DOF_NAMES.index(dof)


def joint_change_matrix() -> np.ndarray:
    """(6, n_channels, 42) joint-angle change per unit of each leg's channel activation difference.

    The main DoF moves by ``direction × gain``, a coupled DoF by that times its
    ratio; the claw moves no joint (its row is zero).
    """
    matrix = np.zeros((len(LEGS), len(CHANNELS), N_JOINTS))
    for leg_i, leg in enumerate(LEGS):
        segment = SEGMENT_OF_LEG[leg]
        for c, channel in enumerate(CHANNELS):
            if channel.dof[segment] == ADHESION:
                continue
            matrix[leg_i, c, dof_index(leg, channel)] = channel.direction * channel.gain
            for dof, ratio in (channel.coupled or {}).get(segment, ()):
                matrix[leg_i, c, leg_i * len(LEG_DOFS) + DOF_NAMES.index(dof)] = channel.direction * channel.gain * ratio
    return matrix


CLAW_CHANNEL = next(c for c, channel in enumerate(CHANNELS) if channel.dof["front"] == ADHESION)


class MotorMap(NamedTuple):
    """Static arrays of the muscle stage for one leg's MN set (shared by all legs).

    Attributes:
        slot: (n_mn,) channel * 2 + side of each MN.
        weight: (n_mn,) size share of each MN within its module side.
        threshold: (n_mn,) recruitment threshold (rate units), rising with size.
        joint_change: (6, n_channels, 42) :func:`joint_change_matrix`.
    """

    slot: jax.Array
    weight: jax.Array
    threshold: jax.Array
    joint_change: jax.Array


def build_motor_map(modules: list[str] | np.ndarray, size: np.ndarray, recruitment_threshold: float = 0.2) -> MotorMap:
    """The muscle-stage arrays for MNs with these modules and sizes.

    Args:
        modules: (n_mn,) motor module of each MN (any vocabulary).
        size: (n_mn,) positive size of each MN (surface area, or a proxy).
        recruitment_threshold: rate the largest MN of a module side needs
            before it is recruited; smaller MNs need proportionally less.
    """
    size = np.asarray(size, dtype=float)
    if size.shape != (len(modules),) or (size <= 0).any():
        raise ValueError(f"size must be ({len(modules)},) positive numbers, got shape {size.shape}")
    roles = np.array([module_role(m) for m in modules])
    slot = roles[:, 0] * 2 + roles[:, 1]
    total = np.bincount(slot, weights=size, minlength=2 * len(CHANNELS))
    largest = np.zeros(2 * len(CHANNELS))
    np.maximum.at(largest, slot, size)
    return MotorMap(
        slot=jnp.asarray(slot, dtype=jnp.int32),
        weight=jnp.asarray(size / total[slot]),
        threshold=jnp.asarray(recruitment_threshold * size / largest[slot]),
        joint_change=jnp.asarray(joint_change_matrix(), dtype=jnp.float32),
    )


def recruit(motor_map: MotorMap, mn_rate: jax.Array) -> jax.Array:
    """Size-ordered recruitment: (..., n_mn) MN rates → (..., n_channels, 2) drive."""
    active = jax.nn.relu(mn_rate - motor_map.threshold) * motor_map.weight
    n_slots = 2 * len(CHANNELS)
    summed = jnp.moveaxis(
        jax.ops.segment_sum(jnp.moveaxis(active, -1, 0), motor_map.slot, num_segments=n_slots), 0, -1
    )
    return summed.reshape(*mn_rate.shape[:-1], len(CHANNELS), 2)


def activation_step(activation: jax.Array, drive: jax.Array, dt: float, tau_act: float = 0.02) -> jax.Array:
    """First-order muscle activation: ``tau_act da/dt = tanh(drive) - a``."""
    tau = max(tau_act, dt)
    return activation + dt * (jnp.tanh(drive) - activation) / tau


def joint_action(motor_map: MotorMap, activation: jax.Array, neutral: jax.Array) -> jax.Array:
    """(6, n_channels, 2) activations → (48,) action: joint targets then adhesion.

    ``neutral`` is the (48,) action with every muscle relaxed (its adhesion
    part is ignored: adhesion follows the claw muscle alone).
    """
    difference = activation[..., 0] - activation[..., 1]  # (6, n_channels)
    joints = neutral[:N_JOINTS] + jnp.einsum("lc,lcj->j", difference, motor_map.joint_change.astype(difference.dtype))
    grip = activation[:, CLAW_CHANNEL, 0] > ADHESION_THRESHOLD
    return jnp.concatenate([joints, grip.astype(joints.dtype)])


def muscle_step(
    motor_map: MotorMap,
    activation: jax.Array,
    mn_rate: jax.Array,
    neutral: jax.Array,
    dt: float,
    tau_act: float = 0.02,
) -> tuple[jax.Array, jax.Array]:
    """One step of the muscle stage for six legs.

    Args:
        activation: (6, n_channels, 2) muscle activations.
        mn_rate: (6, n_mn) motor-neuron rates.
        neutral: (48,) neutral action.
    Returns:
        (new activation, (48,) action).
    """
    activation = activation_step(activation, recruit(motor_map, mn_rate), dt, tau_act)
    return activation, joint_action(motor_map, activation, neutral)


def initial_activation() -> jax.Array:
    return jnp.zeros((len(LEGS), len(CHANNELS), 2))


assert N_ACTIONS == N_JOINTS + len(LEGS)

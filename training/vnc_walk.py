"""Train the six-leg VNC to produce NeuroMechFly's walking gait (BPTT, body in the air).

The in-air rhythm (:mod:`connectofly.training.vnc_rhythm`) makes one leg's
flexors and extensors alternate. Walking needs more: the joints of a leg in the
right phase relations (the leg lifts while it swings forward), the six legs in
a tripod, a step frequency that rises with the forward drive, turning when the
steering drives are unequal and backward stepping under the backward (MDN-like)
drive. This module trains those, on top of the rhythm, by backprop through
time of the network in the air, against the recorded walking step that
NeuroMechFly's CPG replays (:mod:`connectofly.envs.kinematics`), expressed in
muscle units: the activation difference (agonist − antagonist) each channel of
:data:`connectofly.circuits.motor_map.CHANNELS` needs to reach the recorded
joint angle from the *rest pose*, and the claw activation (adhesion) during
stance. The body is not in the training loop; walking is then measured on the
body (:mod:`connectofly.agents.vnc_agent`).

Loss per condition (descending input → target gait), on the muscle
activations after a transient:

* *gait*: the first two Fourier harmonics of every leg's and channel's signal at
  the target frequency must equal the recorded step's (amplitude, waveform and
  the phase of every leg and joint relative to the others); one global phase
  is free (the network's rhythm starts wherever it starts), fitted in closed
  form;
* *posture*: the mean of each signal must equal the step's mean;
* *amplitude* (weighted by ``amplitude_weight``, off by default): each leg's
  and channel's fundamental amplitude, whatever its phase;
* *frequency*: ``-log`` of the share of each leg's ThC power within ±1 Hz of
  the target (:func:`connectofly.training.vnc_rhythm.band_power_share`);
* plus the hemilineage group lasso.

Conditions: forward drive at three levels (target frequency rising linearly),
left and right steering on top of a forward drive (the steered side's step
amplitude shrinks: the fly turns toward it, as NeuroMechFly v2's turning
CPG), and the backward drive alone (the step replayed in reverse).

Trained: everything the rhythm trains plus the intersegmental coupling;
premotor → MN synapse counts stay the connectome's and every update is checked
for Dale's law.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from connectofly.circuits import motor_map, vnc
from connectofly.envs.body import LEGS, N_ACTIONS, N_JOINTS
from connectofly.envs.kinematics import StepKinematics, load_step_kinematics
from connectofly.training import vnc_rhythm

log = logging.getLogger(__name__)

TRAINED = (*vnc_rhythm.TRAINED, "coupling", "motor_gain")
# The MN stage alone: premotor → MN synaptic strengths, MN resting drives and excitabilities. Training
# only these leaves the premotor rhythm and its coupling as they are (fine-tuning the whole network
# from trained weights tends to break the oscillator; docs/vnc.md).
READOUT = ("synapse_gain", "motor_bias", "motor_gain")
TRIPOD_OFFSET = np.pi * np.array([0, 1, 0, 1, 0, 1])  # lf lm lh rf rm rh: lf, rm, lh swing together
ACTIVATION_LIMIT = 0.7  # targets stay inside what the muscle stage reaches (tanh of at most ~1)
THC = motor_map.CHANNEL_NAMES.index("thc_protraction")
CLAW = motor_map.CHANNEL_NAMES.index("claw")


class GaitConfig(NamedTuple):
    dt: float = 1e-3
    duration: float = 1.0  # s simulated per condition
    transient: float = 0.4  # s discarded before the analysis window
    forward_drives: tuple[float, ...] = (1.0, 1.5, 2.0)
    freq_low: float = 8.0  # Hz at the lowest forward drive
    freq_high: float = 13.0  # Hz at the highest
    turn_drive: float = 1.5  # forward drive while steering
    steer: float = 1.0  # steering input of the turning conditions
    inner_amplitude: float = 0.3  # step amplitude of the steered side, relative
    backward_drive: float = 1.5
    harmonics: int = 2
    init_noise: float = 0.3  # premotor voltages start this spread apart: legs start out of phase
    band: float = 1.0
    frequency_weight: float = 0.3
    # weight of each leg's and channel's step amplitude whatever its phase: keeps a channel whose
    # phase is wrong from being switched off, which lowers the gait term but can never fix it
    amplitude_weight: float = 0.0
    sparsity: float = 1e-5
    learning_rate: float = 0.03
    seed: int = 0


class Conditions(NamedTuple):
    """Stacked training conditions (leading axis C)."""

    descending: jax.Array  # (C, 4)
    frequency: jax.Array  # (C,) target step frequency, Hz
    side_amplitude: jax.Array  # (C, 2) step amplitude of the left and right legs
    reverse: jax.Array  # (C,) True: the step replayed backwards
    names: tuple[str, ...] = ()


# -- The target gait in muscle units ------------------------------------------------


class GaitTarget(NamedTuple):
    """The recorded step as the muscle activations that reproduce it.

    Attributes:
        rest_action: (48,) action with every muscle relaxed: the pose the
            motor map moves away from (two-sided joints at the middle of their
            recorded range, one-sided joints at the end their agonist moves
            away from, coupled DoFs where their least-squares line through the
            step puts them, the other DoFs at the middle of their range;
            adhesion off).
        signal: (n_bins, 6, n_channels) activation difference per phase bin
            (the claw: activation), clipped to the reachable range.
    """

    rest_action: np.ndarray
    signal: np.ndarray


def gait_target(kin: StepKinematics) -> GaitTarget:
    """Muscle-unit version of the recorded step (see :class:`GaitTarget`)."""
    table = kin.table[:-1]  # (n_bins, 6, 7), periodic
    low, high = table.min(0), table.max(0)
    rest_joints = 0.5 * (low + high)  # (6, 7)
    signal = np.zeros((table.shape[0], len(LEGS), len(motor_map.CHANNELS)))
    phases = np.linspace(0, 2 * np.pi, table.shape[0], endpoint=False)
    stance = np.stack([~kin.in_swing(np.full(len(LEGS), p)) for p in phases])  # (n_bins, 6)
    for c, channel in enumerate(motor_map.CHANNELS):
        if channel.dof["front"] == motor_map.ADHESION:
            signal[:, :, c] = ACTIVATION_LIMIT * stance
            continue
        for leg_i, leg in enumerate(LEGS):
            k = motor_map.DOF_NAMES.index(channel.dof[motor_map.SEGMENT_OF_LEG[leg]])
            along = channel.direction * table[:, leg_i, k]  # agonist direction positive
            if not channel.antagonists:  # one-sided: rest at the end the agonist leaves
                rest_joints[leg_i, k] = channel.direction * along.min()
            units = (along - channel.direction * rest_joints[leg_i, k]) / channel.gain
            lower = -ACTIVATION_LIMIT if channel.antagonists else 0.0
            signal[:, leg_i, c] = np.clip(units, lower, ACTIVATION_LIMIT)
            segment = motor_map.SEGMENT_OF_LEG[leg]
            for dof, ratio in (channel.coupled or {}).get(segment, ()):
                # a coupled DoF follows the main one by `ratio` about its own rest: the least-squares one
                j = motor_map.DOF_NAMES.index(dof)
                rest_joints[leg_i, j] = np.mean(table[:, leg_i, j] - ratio * table[:, leg_i, k]) + ratio * rest_joints[leg_i, k]
    rest_action = np.concatenate([rest_joints.reshape(-1), np.zeros(N_ACTIONS - N_JOINTS)])
    return GaitTarget(rest_action=rest_action, signal=signal)


def harmonic_coefficients(signal: np.ndarray, harmonics: int) -> np.ndarray:
    """(harmonics + 1, 6, n_ch) complex Fourier coefficients of a step sampled on phase bins.

    Coefficient ``h`` is ``mean_θ x(θ) e^{-ihθ}`` with each leg's phase shifted
    by its tripod offset (so the coefficients describe the six legs walking
    together). Row 0 is the mean.
    """
    n = signal.shape[0]
    theta = 2 * np.pi * np.arange(n) / n
    h = np.arange(harmonics + 1)
    basis = np.exp(-1j * h[:, None] * theta[None, :])  # (H+1, n)
    coeffs = np.einsum("hn,nlc->hlc", basis, signal) / n
    # leg l at time t is at phase θ(t) + offset_l: its coefficients rotate by e^{ih offset}
    return coeffs * np.exp(1j * h[:, None] * TRIPOD_OFFSET[None, :])[:, :, None]


def training_conditions(config: GaitConfig) -> Conditions:
    """Forward drives, left/right steering, backward (see module doc)."""
    rows, names = [], []
    lo, hi = min(config.forward_drives), max(config.forward_drives)

    def frequency(drive: float) -> float:
        return config.freq_low + (drive - lo) * (config.freq_high - config.freq_low) / (hi - lo)

    for d in config.forward_drives:
        rows.append(([d, 0, 0, 0], frequency(d), (1.0, 1.0), False))
        names.append(f"forward {d:g}")
    k = config.inner_amplitude
    rows.append(([config.turn_drive, config.steer, 0, 0], frequency(config.turn_drive), (k, 1.0), False))
    names.append("steer left")
    rows.append(([config.turn_drive, 0, config.steer, 0], frequency(config.turn_drive), (1.0, k), False))
    names.append("steer right")
    rows.append(([0, 0, 0, config.backward_drive], frequency(config.backward_drive), (1.0, 1.0), True))
    names.append("backward")
    descending, freq, amp, reverse = zip(*rows)
    return Conditions(jnp.asarray(descending, jnp.float32), jnp.asarray(freq), jnp.asarray(amp),
                      jnp.asarray(reverse), tuple(names))


# -- Simulation and loss -------------------------------------------------------------


def muscle_activations(mmap: motor_map.MotorMap, mn_rate: jax.Array, dt: float) -> jax.Array:
    """(T, L, n_ch, 2) activations of the muscle stage driven by (T, L, M) MN rates."""
    drive = motor_map.recruit(mmap, mn_rate)

    def body(a, d):
        a = motor_map.activation_step(a, d, dt)
        return a, a

    _, activation = jax.lax.scan(body, jnp.zeros(drive.shape[1:]), drive)
    return activation


def channel_signal(activation: jax.Array) -> jax.Array:
    """(..., n_ch, 2) activations → (..., n_ch): agonist − antagonist; the claw's agonist."""
    difference = activation[..., 0] - activation[..., 1]
    return difference.at[..., CLAW].set(activation[..., CLAW, 0])


def window_coefficients(x: jax.Array, dt: float, frequency: jax.Array, harmonics: int) -> jax.Array:
    """(H+1, ...) Hann-weighted Fourier coefficients of (T, ...) signals at h × frequency."""
    t = jnp.arange(x.shape[0]) * dt
    w = jnp.hanning(x.shape[0])
    w = w / w.sum()
    h = jnp.arange(harmonics + 1)
    basis = jnp.exp(-1j * 2 * jnp.pi * h[:, None] * frequency * t[None, :]) * w[None, :]  # (H+1, T)
    return jnp.tensordot(basis, x.astype(basis.dtype), axes=(1, 0))


def aligned_mismatch(coeffs: jax.Array, target: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Σ_h≥1 |c_h − c*_h e^{ihφ}|² summed over ``axes`` with φ fitted per remaining index.

    ``coeffs`` and ``target`` are (H+1, 6, n_ch). The phase φ (one per leg when
    ``axes`` is the channel axis, one in all when it is both) is the
    closed-form best fit of the fundamental; the harmonics rotate with it.
    """
    fundamental = jax.lax.stop_gradient(jnp.sum(coeffs[1] * jnp.conj(target[1]), axis=axes, keepdims=True))
    phase = jnp.angle(fundamental)
    h = jnp.arange(1, target.shape[0]).reshape(-1, 1, 1)
    aligned = target[1:] * jnp.exp(1j * h * phase[None])
    return jnp.sum(jnp.abs(coeffs[1:] - aligned) ** 2)


def gait_loss_terms(coeffs: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(gait, leg, posture, amplitude) mismatches of measured vs target coefficients.

    *gait* fits one phase for all legs (so the legs' phases relative to each
    other count: the tripod); *leg* fits one phase per leg (each leg's own
    step, whatever the other legs do: an easier target early in training);
    *posture* compares the means; *amplitude* the fundamental's magnitude per
    leg and channel, phase ignored. All are normalised by the target's
    fundamental power, so a flat signal at the right mean scores about 1.
    """
    scale = jnp.sum(jnp.abs(target[1]) ** 2)
    gait = aligned_mismatch(coeffs, target, (0, 1)) / scale
    leg = aligned_mismatch(coeffs, target, (1,)) / scale
    posture = jnp.sum(jnp.abs(coeffs[0] - target[0]) ** 2) / scale
    amplitude = jnp.sum((jnp.abs(coeffs[1]) - jnp.abs(target[1])) ** 2) / scale
    return gait, leg, posture, amplitude


def condition_target(base: jax.Array, side_amplitude: jax.Array, reverse: jax.Array) -> jax.Array:
    """Target coefficients of one condition from the forward step's (H+1, 6, n_ch)."""
    left = jnp.asarray([leg.startswith("l") for leg in LEGS])
    amplitude = jnp.where(left, side_amplitude[0], side_amplitude[1])  # (6,)
    scaled = base.at[1:].multiply(amplitude[None, :, None])
    return jnp.where(reverse, jnp.conj(scaled), scaled)  # x(-t) has conjugate coefficients


def gait_loss(trainable, fixed, graph, mmap, conditions: Conditions, base_coeffs, config: GaitConfig,
              n_sensory: int, key):
    """Mean loss over conditions (see module doc) and per-term metrics."""
    params = vnc.VNCParams(trainable={**fixed, **trainable}, graph=graph)
    n_steps = int(round(config.duration / config.dt))
    start = int(round(config.transient / config.dt))

    def one(descending, frequency, side_amplitude, reverse, k):
        out = vnc_rhythm.simulate_in_air(params, descending, n_steps, config.dt, n_sensory, k, config.init_noise)
        signal = channel_signal(muscle_activations(mmap, out.mn_rate, config.dt))[start:]  # (T, 6, n_ch)
        coeffs = window_coefficients(signal, config.dt, frequency, config.harmonics)
        target = condition_target(base_coeffs, side_amplitude, reverse)
        gait, leg, posture, amplitude = gait_loss_terms(coeffs, target)
        share = jax.vmap(lambda x: vnc_rhythm.band_power_share(x, config.dt, frequency, config.band),
                         in_axes=1)(signal[:, :, THC])
        return gait, leg, posture, amplitude, jnp.mean(-jnp.log(share + 1e-4)), share.mean()

    keys = jax.random.split(key, conditions.frequency.shape[0])
    gait, leg, posture, amplitude, spectral, share = jax.vmap(one)(
        conditions.descending, conditions.frequency, conditions.side_amplitude, conditions.reverse, keys)
    per_condition = gait + leg + posture + config.amplitude_weight * amplitude + config.frequency_weight * spectral
    loss = per_condition.mean() + config.sparsity * vnc.sparsity_penalty(params)
    return loss, {"gait": gait, "leg": leg, "posture": posture, "amplitude": amplitude, "band_share": share}


# -- Initialisation -------------------------------------------------------------------

TRIPOD_COUPLING = 0.2  # summed inhibitory-core → excitatory-core weight between neighbouring legs


def seed_tripod_coupling(params: vnc.VNCParams, spec: vnc.LegSpec, strength: float = TRIPOD_COUPLING) -> vnc.VNCParams:
    """Neighbouring legs' inhibitory rhythm cores inhibit each other's excitatory core.

    Mutual inhibition between the oscillators of adjacent legs (ipsilateral
    neighbours and the contralateral leg of the segment) favours antiphase
    between neighbours: the tripod. Magnitudes only; signs stay the transmitter's.
    """
    hl = spec.premotor_hemilineage
    e = np.isin(hl, vnc_rhythm.CORE_EXCITATORY)
    i = np.isin(hl, vnc_rhythm.CORE_INHIBITORY)
    theta = np.array(params.trainable["coupling"])
    for relation in range(len(vnc.COUPLING_RELATIONS)):
        theta[relation][np.ix_(e, i)] = vnc_rhythm.inverse_softplus(strength / i.sum())
    return params._replace(trainable={**params.trainable, "coupling": jnp.asarray(theta)})


def six_legs(one_leg: vnc.VNCParams, spec: vnc.LegSpec, connectome) -> vnc.VNCParams:
    """The one-leg parameters on all six legs (shared by serial homology), tripod coupling seeded."""
    six = vnc.init(jax.random.PRNGKey(0), connectome, vnc.VNCConfig(legs=LEGS))
    kept = {k: v for k, v in one_leg.trainable.items() if k != "coupling"}
    # the rhythm was trained on the front leg: its per-segment parameters go to every segment
    for name in ("descending", "motor_bias", "synapse_gain"):
        kept[name] = jnp.broadcast_to(kept[name][0], kept[name].shape)
    six = six._replace(trainable={**six.trainable, **kept}, graph=six.graph._replace(block_mask=one_leg.graph.block_mask))
    return seed_tripod_coupling(six, spec)


def revive_motor_neurons(params: vnc.VNCParams, mmap: motor_map.MotorMap, n_sensory: int,
                         config: GaitConfig = GaitConfig(), min_gain: float = 0.1) -> tuple[vnc.VNCParams, np.ndarray]:
    """Bring back the MNs that gradient descent cannot: silent ones and those with ~no excitability.

    An MN whose rate stays below its recruitment threshold in every training
    condition passes no gradient (rate and recruitment are rectifiers), and
    one whose excitability went to ~0 passes almost none, so training never
    moves them again: this is how the embedded weights' front coxa MNs
    ended up silent or tonic while their target swing is the largest of any
    leg. Per segment, each such MN gets excitability 1 and a resting drive
    that puts the median of its voltage (over the training conditions, in the
    air) at its recruitment threshold: it then fires during the upper half of
    its premotor input's cycle, and gradients reach it. The MN voltage is
    linear in bias and excitability (``v = bias + gain × low-passed input``),
    so one rollout gives the new median.

    Returns the parameters and the (3, M) mask of revived MNs per segment.
    """
    conditions = training_conditions(config)
    n_steps = int(round(config.duration / config.dt))
    start = int(round(config.transient / config.dt))
    keys = jax.random.split(jax.random.PRNGKey(config.seed), conditions.frequency.shape[0])
    voltage = np.asarray(jax.jit(jax.vmap(lambda d, k: vnc_rhythm.simulate_in_air(
        params, d, n_steps, config.dt, n_sensory, k, config.init_noise).mn_voltage[start:]))(
        conditions.descending, keys))  # (C, T, L, M)
    t = params.trainable
    gain = np.asarray(jax.nn.softplus(t["motor_gain"]))  # (3, M)
    bias = np.array(t["motor_bias"])
    gain_param = np.array(t["motor_gain"])
    threshold = np.asarray(mmap.threshold)
    segment = np.asarray(params.graph.leg_segment)
    revived = np.zeros(bias.shape, bool)
    for s in range(bias.shape[0]):
        v = voltage[:, :, segment == s].reshape(-1, bias.shape[1])  # (samples, M)
        if not len(v):
            continue
        input_median = np.median((v - bias[s]) / gain[s], axis=0)  # low-passed premotor input at excitability 1
        revived[s] = (v.max(0) <= threshold) | (gain[s] < min_gain)  # rate ≈ voltage this close to 0
        bias[s] = np.where(revived[s], threshold - input_median, bias[s])
        gain_param[s] = np.where(revived[s], vnc_rhythm.inverse_softplus(1.0), gain_param[s])
    trainable = {**t, "motor_bias": jnp.asarray(bias), "motor_gain": jnp.asarray(gain_param)}
    return params._replace(trainable=trainable), revived


def align_motor_phases(params: vnc.VNCParams, mmap: motor_map.MotorMap, n_sensory: int,
                       config: GaitConfig = GaitConfig(), ridge: float = 0.01) -> tuple[vnc.VNCParams, np.ndarray]:
    """Re-weight each MN's premotor synapses so that its input oscillates in its channel's target phase.

    Every leg runs the same premotor rhythm; the phase a leg's MN follows is set
    by the strengths of its synapses (per edge and segment). Gradient descent
    on the gait loss turns a channel that is far out of phase down rather than
    round (a smaller wrong oscillation costs less), so it does not get there:
    the front legs' ThC stayed ~170° off (docs/vnc.md). Here, in the middle
    forward condition in the air, per segment (its left leg; the right is the
    mirror) and per MN: with ``c_e`` the phasor, at the target frequency, of
    edge ``e``'s contribution to the MN's input, the strength multipliers
    ``x_e`` in [0.01, 10] minimise ``|Σ x_e c_e − d|² + ridge |Σ c_e|² Σ (x_e − 1)²``,
    where ``d`` keeps the MN's input amplitude and takes its channel's target
    phase (agonists +, antagonists −), with the global phase fitted to the
    segment's channels. Then each MN's resting drive is shifted so that its
    median voltage stays where it was. Convex (bounded linear least squares),
    one small problem per MN.

    Returns the parameters and the (3, n_channels) phase error of each
    segment's channel input before and after, degrees.
    """
    from scipy.optimize import lsq_linear

    conditions = training_conditions(config)
    middle = conditions.names.index(f"forward {sorted(config.forward_drives)[len(config.forward_drives) // 2]:g}")
    frequency = float(conditions.frequency[middle])
    start = int(round(config.transient / config.dt))
    base = harmonic_coefficients(gait_target(load_step_kinematics()).signal, config.harmonics)[1]  # (6, n_ch)

    def in_air(p):
        out = vnc_rhythm.simulate_in_air(p, conditions.descending[middle], int(round(config.duration / config.dt)),
                                         config.dt, n_sensory, jax.random.PRNGKey(config.seed), config.init_noise)
        return np.asarray(out.premotor_rate)[start:], np.asarray(out.mn_voltage)[start:]

    g, t = params.graph, params.trainable
    src, dst = np.asarray(g.pm_src), np.asarray(g.pm_dst)
    n_premotor = t["recurrent"].shape[0]
    slot = np.asarray(mmap.slot)
    channel, antagonist = slot // 2, slot % 2 == 1
    size_share = np.asarray(mmap.weight)
    weight = np.asarray(vnc.premotor_to_motor_weights(params), np.float64)  # (3, E)
    excitability = np.asarray(jax.nn.softplus(t["motor_gain"]), np.float64)  # (3, M)
    strength = np.asarray(jax.nn.softplus(t["synapse_gain"]), np.float64)
    rates, voltage_before = in_air(params)
    n_channels = len(motor_map.CHANNELS)
    errors = np.zeros((2, 3, n_channels))

    def per_mn(edge_phasors):  # (E,) complex → (M,) summed onto each edge's MN
        return np.bincount(dst, edge_phasors.real, len(slot)) + 1j * np.bincount(dst, edge_phasors.imag, len(slot))

    for segment, leg in enumerate(("lf", "lm", "lh")):
        leg_i = LEGS.index(leg)
        source_phasor = np.asarray(window_coefficients(jnp.asarray(rates[:, leg_i]), config.dt, frequency, 1))[1]
        contribution = weight[segment] * excitability[segment, dst] * np.where(
            src < n_premotor, source_phasor[np.minimum(src, n_premotor - 1)], 0.0)  # (E,); no sensory input in air
        mn_input = per_mn(contribution)

        def channel_error(mn_phasor):
            signed = mn_phasor * size_share * np.where(antagonist, -1.0, 1.0)
            chan = np.array([signed[channel == c].sum() for c in range(n_channels)])
            phase = np.angle(np.sum(chan * np.conj(base[leg_i])))
            return np.degrees(np.angle(chan * np.conj(base[leg_i]) * np.exp(-1j * phase))), phase

        errors[0, segment], phase = channel_error(mn_input)
        wanted = np.abs(mn_input) * np.exp(1j * (np.angle(base[leg_i, channel]) + phase)) * np.where(antagonist, -1, 1)
        for mn in range(len(slot)):
            edges = np.flatnonzero((dst == mn) & (src < n_premotor))
            if not len(edges) or np.abs(mn_input[mn]) == 0:
                continue
            c = contribution[edges]
            reg = np.sqrt(ridge) * np.abs(mn_input[mn])
            a = np.vstack([c.real, c.imag, reg * np.eye(len(edges))])
            b = np.concatenate([[wanted[mn].real, wanted[mn].imag], reg * np.ones(len(edges))])
            x = lsq_linear(a, b, bounds=(0.01, 10.0)).x
            strength[segment, edges] *= x
            contribution[edges] = c * x
        mn_input = per_mn(contribution)
        errors[1, segment], _ = channel_error(mn_input)
    aligned = params._replace(trainable={**t, "synapse_gain": jnp.asarray(np.log(np.expm1(strength)), jnp.float32)})
    _, voltage_after = in_air(aligned)
    bias = np.array(t["motor_bias"])
    for segment in range(3):
        legs = np.asarray(g.leg_segment) == segment
        bias[segment] += np.median(voltage_before[:, legs] - voltage_after[:, legs], axis=(0, 1))
    aligned = aligned._replace(trainable={**aligned.trainable, "motor_bias": jnp.asarray(bias)})
    return aligned, errors


# -- Training ---------------------------------------------------------------------------


def train(params: vnc.VNCParams, mmap: motor_map.MotorMap, n_sensory: int, n_steps: int,
          config: GaitConfig = GaitConfig(), out_dir: Path | None = None, checkpoint_every: int = 50,
          progress: bool = True, trained: tuple[str, ...] = TRAINED):
    """Adam on the ``trained`` parameter groups of the six-leg VNC; Dale's law checked after every update.

    With ``out_dir``: orbax checkpoints (resumed from the latest), TensorBoard
    scalars and ``history.jsonl`` there (rows after the checkpoint dropped on resume,
    :func:`~connectofly.training.records.open_record`).
    """
    import json

    from tqdm import tqdm

    from connectofly.training.checkpoints import Checkpoints
    from connectofly.training.records import open_record

    trainable, fixed = vnc_rhythm.split_trainable(params, trained)
    conditions = training_conditions(config)
    base = jnp.asarray(harmonic_coefficients(gait_target(load_step_kinematics()).signal, config.harmonics))
    schedule = optax.cosine_decay_schedule(config.learning_rate, max(n_steps, 1), alpha=0.1)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    opt_state = optimizer.init(trainable)
    loss_and_grad = jax.jit(jax.value_and_grad(
        lambda tr, k: gait_loss(tr, fixed, params.graph, mmap, conditions, base, config, n_sensory, k),
        has_aux=True))
    key = jax.random.PRNGKey(config.seed)
    first = 0
    checkpoints = writer = history_file = None
    if out_dir is not None:
        from tensorboardX import SummaryWriter

        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoints = Checkpoints(out_dir / "checkpoints")
        latest = checkpoints.latest_step()
        if latest is not None:
            trainable, opt_state, key = checkpoints.restore((trainable, opt_state, key), latest)
            first = latest
        writer = SummaryWriter(str(out_dir / "tensorboard"))
        history_file = open_record(out_dir / "history.jsonl", first, lambda line: json.loads(line)["step"])
    history = []
    try:
        for i in tqdm(range(first, n_steps), disable=not progress, desc="gait BPTT", initial=first, total=n_steps):
            key, sub = jax.random.split(key)
            (loss, metrics), grads = loss_and_grad(trainable, sub)
            updates, opt_state = optimizer.update(grads, opt_state, trainable)
            trainable = optax.apply_updates(trainable, updates)
            violations = vnc.sign_violations(vnc.VNCParams({**fixed, **trainable}, params.graph))
            if any(violations.values()) or not np.isfinite(float(loss)):
                raise RuntimeError(f"sign constraint violated or loss not finite after update {i}: {violations}")
            row = {"step": i + 1, "loss": float(loss),
                   **{f"{name}/{c}": float(v[j]) for name, v in metrics.items()
                      for j, c in enumerate(conditions.names)}}
            history.append(row)
            if writer is not None:
                for name, value in row.items():
                    if name != "step":
                        writer.add_scalar(name.replace(" ", "_"), value, i + 1)  # TensorBoard tags have no spaces
                history_file.write(json.dumps(row) + "\n")
                if (i + 1) % checkpoint_every == 0 or i + 1 == n_steps:
                    checkpoints.save(i + 1, (trainable, opt_state, key))
    finally:
        if writer is not None:
            writer.close()
            history_file.close()
    return vnc.VNCParams(trainable={**fixed, **trainable}, graph=params.graph), history


def plot_history(rows: list[dict], path: Path) -> None:
    """Training curves from ``history.jsonl`` rows: total loss and the gait term per condition."""
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (total, gait) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    total.plot(steps, [r["loss"] for r in rows], lw=1)
    total.set_xlabel("update")
    total.set_ylabel("loss")
    for name in sorted(k.split("/", 1)[1] for k in rows[0] if k.startswith("gait/")):
        gait.plot(steps, [r[f"gait/{name}"] for r in rows], lw=1, label=name)
    gait.axhline(1.0, color="k", lw=0.8, ls=":")
    gait.set_xlabel("update")
    gait.set_ylabel("gait mismatch (1 ≈ no step)")
    gait.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)

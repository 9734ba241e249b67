"""The ventral nerve cord (VNC): six legs of premotor and motor neurons.

An instance of the shared leaky-rate core (:mod:`connectofly.circuits.dynamics`)
built from the FANC left-T1 premotor → motor-neuron connectome
(:func:`connectofly.circuits.vnc_connectome.load_fanc_t1l_premotor_to_mn`).

**Units of one leg.** The 1,546 premotor neurons are grouped to keep the
network small on a CPU: one unit per (hemilineage or, without one, cell class)
× preferred motor pool × sign, e.g. ``13A:tibia_extend:-`` (the 13A GABAergic
neurons whose strongest output is the tibia-extensor pool). Sensory neurons
form proprioceptive input units by kind (claw, hook, club chordotonal neurons,
hair plates, bristles, other). The 69 motor neurons (MNs) stay individual.
A unit's synapse count onto an MN is the sum over its member neurons; the
counts are the data and are never trained.

**Six legs.** Every leg gets the same T1 wiring (serial homology; the T2/T3
premotor networks are not in the data). Right legs use it unchanged as the
mirror image of the left: an approximation, since the real left/right and
segmental networks differ in detail (Cheong et al. 2024, MANC).

**Dynamics** (per leg; rates ``r = r_max tanh(relu(v) / r_max)``, the capped
half-rectified rate of Pugliese et al. 2025; tau 20 ms as theirs)::

    tau dv_P/dt = -v_P + b_P + W_PP r_P + W_SP r_S + C(r_P of other legs) + W_DN d
    tau dv_M/dt = -v_M + b_M + k_M W_PM (r_P, r_S)

* ``W_PM`` premotor/sensory → MN: ``sign × count / n0 × softplus(g)``,
  counts fixed from the connectome, a learnable positive strength ``g`` per
  edge and leg segment: T1's wiring serves every leg (serial homology), the
  strengths of its synapses may differ between segments. ``k_M`` (positive)
  and ``b_M`` are each MN's excitability and resting drive, per segment.
* ``W_PP`` premotor ↔ premotor: not in the data, learned under Dale's law: the
  sign is the presynaptic unit's transmitter sign, the magnitude
  ``softplus(theta)`` of a free parameter, so no update can flip a sign.
  A mask at hemilineage granularity (which hemilineage pairs may connect) is the
  sparsity budget: :func:`sparsity_penalty` (group lasso over hemilineage
  blocks) during training, :func:`prune_to_budget` to keep the strongest
  ``k`` hemilineage pairs.
* ``W_SP`` proprioceptive → premotor (all sensory units are cholinergic in
  FANC): ``softplus`` magnitudes, excitatory.
* ``C`` intersegmental coupling between legs, three relations (to the
  ipsilateral leg behind, to the one in front, to the contralateral leg of the
  segment), each a learnable Dale-signed matrix between premotor units.
* ``W_DN d`` descending drive: four channels ``(forward, ipsilateral steer,
  contralateral steer, backward)``; a leg on the left receives
  ``(forward, left, right, backward)`` and one on the right
  ``(forward, right, left, backward)``. They stand for DNg100/BDN2 (forward;
  Bidaye et al. 2020, Sapkal et al. 2024), DNa01/DNa02 (steering; Rayshubskiy
  et al. 2020, Yang et al. 2024) and MDN (backward; Bidaye et al. 2014). These
  DNs are all predicted cholinergic in MANC, so ``W_DN >= 0`` (softplus),
  one matrix per segment (front, middle, hind).

Pure JAX: :func:`init` builds :class:`VNCParams` (``trainable`` PyTree and fixed
``graph`` arrays), :func:`step` advances one time step; both jit and vmap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.circuits import dynamics, motor_map
from connectofly.circuits.connectome import Connectome
from connectofly.envs.body import LEGS

SENSORY_KINDS = ("claw_flx", "claw_ext", "hook_flx", "hook_ext", "club", "hairplate", "bristle", "other")
N_DESCENDING = 4  # forward, ipsilateral steer, contralateral steer, backward
DESCENDING_CHANNELS = ("forward", "ipsilateral_steer", "contralateral_steer", "backward")
COUPLING_RELATIONS = ("to_posterior", "to_anterior", "to_contralateral")
SEGMENT_INDEX = {"front": 0, "middle": 1, "hind": 2}


def sensory_kind(cell_type: str) -> str:
    """Proprioceptive kind of a FANC sensory type (``CO_claw_flx`` → ``claw_flx``)."""
    label = str(cell_type).lower()
    for kind in ("claw_flx", "claw_ext", "hook_flx", "hook_ext", "club"):
        if kind in label:
            return kind
    if "hairplate" in label or "cohp" in label:
        return "hairplate"
    if "bristle" in label:
        return "bristle"
    return "other"


@dataclass(frozen=True)
class VNCConfig:
    """Sizes and initial scales of the VNC network.

    Attributes:
        legs: legs to simulate (order of the state's leading axis).
        tau: time constant of every unit, s (Pugliese et al. 2025: 20 ms).
        rate_max: rate cap of the saturating rate function.
        min_group_size: premotor groups with fewer neurons are merged into the
            ``(hemilineage or class):other`` unit of their kind and sign.
        recurrent_init: mean of ``theta`` (softplus(-3) ≈ 0.05) for W_PP.
        recurrent_init_std: spread of ``theta`` at init.
        coupling_init: ``theta`` of the intersegmental coupling at init.
        descending_init: ``theta`` of W_DN at init.
        premotor_bias: resting drive of premotor units.
    """

    legs: tuple[str, ...] = LEGS
    tau: float = 0.02
    rate_max: float = 1.0
    min_group_size: int = 3
    recurrent_init: float = -3.0
    recurrent_init_std: float = 1.0
    coupling_init: float = -6.0
    descending_init: float = -1.0
    premotor_bias: float = 0.0


@dataclass(frozen=True)
class LegSpec:
    """Units of one leg's network and their fixed wiring (numpy, built once).

    Attributes:
        premotor_names: (P,) names ``"<hemilineage|class>:<pool>:<sign>"``.
        premotor_sign: (P,) +1/-1 transmitter sign.
        premotor_hemilineage: (P,) hemilineage or class of each unit (the
            granularity of the sparsity budget).
        premotor_size: (P,) neurons per unit.
        sensory_names: (S,) proprioceptive kinds present.
        mn_module: (M,) motor module of each MN.
        mn_size: (M,) total premotor synapses onto each MN (size proxy).
        edge_src: (E,) source unit (0..P-1 premotor, P..P+S-1 sensory).
        edge_dst: (E,) target MN.
        edge_count: (E,) summed synapse count.
        edge_sign: (E,) sign of the source.
        hemilineages: (H,) distinct hemilineage/class labels.
        premotor_block: (P,) index into ``hemilineages``.
    """

    premotor_names: np.ndarray
    premotor_sign: np.ndarray
    premotor_hemilineage: np.ndarray
    premotor_size: np.ndarray
    sensory_names: np.ndarray
    mn_module: np.ndarray
    mn_size: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_count: np.ndarray
    edge_sign: np.ndarray
    hemilineages: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    premotor_block: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    @property
    def n_premotor(self) -> int:
        return len(self.premotor_names)

    @property
    def n_sensory(self) -> int:
        return len(self.sensory_names)

    @property
    def n_motor(self) -> int:
        return len(self.mn_module)


def _group_key(cell_class: str, hemilineage: str, pool: str, sign: int) -> tuple[str, str]:
    base = hemilineage if hemilineage else cell_class
    return base, f"{base}:{pool}:{'+' if sign > 0 else '-'}"


def build_leg_spec(connectome: Connectome, min_group_size: int = 3) -> LegSpec:
    """Group a premotor → MN connectome into one leg's units (see module doc)."""
    attrs = connectome.node_attrs
    for name in ("is_motor", "cell_class", "hemilineage", "preferred_pool", "sign", "cell_type", "mn_module"):
        if name not in attrs:
            raise ValueError(f"connectome lacks node_attrs[{name!r}]; build it with load_fanc_t1l_premotor_to_mn")
    is_motor = np.asarray(attrs["is_motor"], bool)
    sign = np.asarray(attrs["sign"]).astype(int)
    mn_nodes = np.flatnonzero(is_motor)
    sensory = (~is_motor) & (np.asarray(attrs["cell_class"]) == "sensory")
    premotor = (~is_motor) & ~sensory & (sign != 0)

    keys = {}
    for i in np.flatnonzero(premotor):
        keys[i] = _group_key(str(attrs["cell_class"][i]), str(attrs["hemilineage"][i]),
                             str(attrs["preferred_pool"][i]), sign[i])
    counts: dict[str, int] = {}
    for _, name in keys.values():
        counts[name] = counts.get(name, 0) + 1
    for i, (base, name) in keys.items():  # merge small groups into "<base>:other:<sign>"
        if counts[name] < min_group_size:
            keys[i] = (base, f"{base}:other:{'+' if sign[i] > 0 else '-'}")
    names = sorted({name for _, name in keys.values()})
    unit_of = {name: k for k, name in enumerate(names)}
    base_of = {name: base for base, name in keys.values()}
    p = len(names)
    kinds = [k for k in SENSORY_KINDS if any(sensory_kind(attrs["cell_type"][i]) == k for i in np.flatnonzero(sensory))]
    node_unit = np.full(connectome.n_nodes, -1)
    for i, (_, name) in keys.items():
        node_unit[i] = unit_of[name]
    for i in np.flatnonzero(sensory):
        node_unit[i] = p + kinds.index(sensory_kind(attrs["cell_type"][i]))
    mn_of_node = np.full(connectome.n_nodes, -1)
    mn_of_node[mn_nodes] = np.arange(len(mn_nodes))

    src_unit = node_unit[connectome.edge_src]
    dst_mn = mn_of_node[connectome.edge_dst]
    keep = (src_unit >= 0) & (dst_mn >= 0)
    n_src = p + len(kinds)
    dense = np.zeros((n_src, len(mn_nodes)))
    np.add.at(dense, (src_unit[keep], dst_mn[keep]), connectome.edge_count[keep])
    unit_sign = np.ones(n_src, int)
    for i, (_, name) in keys.items():
        unit_sign[unit_of[name]] = sign[i]
    edge_src, edge_dst = np.nonzero(dense)
    mn_size = np.zeros(len(mn_nodes))
    np.add.at(mn_size, mn_of_node[connectome.edge_dst], connectome.edge_count)
    hemilineage = np.array([base_of[n] for n in names], dtype=object)
    blocks = np.array(sorted(set(hemilineage)), dtype=object)
    return LegSpec(
        premotor_names=np.array(names, dtype=object),
        premotor_sign=unit_sign[:p],
        premotor_hemilineage=hemilineage,
        premotor_size=np.bincount(node_unit[node_unit >= 0][node_unit[node_unit >= 0] < p], minlength=p),
        sensory_names=np.array(kinds, dtype=object),
        mn_module=np.asarray(attrs["mn_module"])[mn_nodes],
        mn_size=np.maximum(mn_size, 1.0),
        edge_src=edge_src,
        edge_dst=edge_dst,
        edge_count=dense[edge_src, edge_dst],
        edge_sign=unit_sign[edge_src],
        hemilineages=blocks,
        premotor_block=np.searchsorted(blocks, hemilineage),
    )


# -- Parameters -----------------------------------------------------------------


class Graph(NamedTuple):
    """Fixed arrays: connectome counts, signs, masks, leg geometry."""

    pm_src: jax.Array  # (E,) source unit of premotor/sensory → MN edges
    pm_dst: jax.Array  # (E,) MN
    pm_count: jax.Array  # (E,) synapse count / n0 (fixed)
    pm_sign: jax.Array  # (E,)
    premotor_sign: jax.Array  # (P,)
    premotor_block: jax.Array  # (P,) hemilineage block of each unit
    block_mask: jax.Array  # (H, H) allowed hemilineage pairs (post block, pre block)
    coupling: jax.Array  # (3, L, L) leg adjacency per relation, [relation, post leg, pre leg]
    leg_segment: jax.Array  # (L,) 0 front, 1 middle, 2 hind
    leg_is_right: jax.Array  # (L,) bool
    tau: jax.Array  # scalar
    rate_max: jax.Array  # scalar


class VNCParams(NamedTuple):
    """Learnable values (``trainable``) and the fixed ``graph``."""

    trainable: dict[str, jax.Array]
    graph: Graph


class VNCState(NamedTuple):
    premotor: jax.Array  # (L, P) voltages
    motor: jax.Array  # (L, M) voltages


class VNCInput(NamedTuple):
    """Inputs of one step.

    Attributes:
        descending: (4,) ``(forward, left steer, right steer, backward)`` drive.
        proprio: (L, S) proprioceptive unit rates (:func:`proprioceptive_rates`).
    """

    descending: jax.Array
    proprio: jax.Array


class VNCOutput(NamedTuple):
    mn_rate: jax.Array  # (L, M)
    premotor_rate: jax.Array  # (L, P)
    mn_voltage: jax.Array  # (L, M): below 0 the MN is silent and passes no gradient


def leg_adjacency(legs: tuple[str, ...]) -> np.ndarray:
    """(3, L, L) [relation, post, pre]: posterior neighbour, anterior neighbour, contralateral."""
    order = {"f": 0, "m": 1, "h": 2}
    adj = np.zeros((3, len(legs), len(legs)))
    for a, pre in enumerate(legs):
        for b, post in enumerate(legs):
            same_side = pre[0] == post[0]
            step = order[post[1]] - order[pre[1]]
            if same_side and step == 1:
                adj[0, b, a] = 1.0
            elif same_side and step == -1:
                adj[1, b, a] = 1.0
            elif not same_side and step == 0:
                adj[2, b, a] = 1.0
    return adj


def init(key: jax.Array, connectome: Connectome, config: VNCConfig = VNCConfig()) -> VNCParams:
    """Initial parameters of the VNC for the premotor → MN ``connectome``."""
    for leg in config.legs:
        if leg not in LEGS:
            raise ValueError(f"unknown leg {leg!r}; legs are {LEGS}")
    spec = build_leg_spec(connectome, config.min_group_size)
    p, s, h = spec.n_premotor, spec.n_sensory, len(spec.hemilineages)
    n0 = float(np.mean(spec.mn_size))  # mean total input of an MN: normalises counts
    k_rec, k_sp, k_dn = jax.random.split(key, 3)
    trainable = {
        "recurrent": config.recurrent_init + config.recurrent_init_std * jax.random.normal(k_rec, (p, p)),
        "sensory_to_premotor": -4.0 + 0.5 * jax.random.normal(k_sp, (p, s)),
        "coupling": jnp.full((3, p, p), config.coupling_init),
        "descending": config.descending_init + 0.5 * jax.random.normal(k_dn, (3, p, N_DESCENDING)),
        # premotor/sensory → MN synaptic strength per edge and leg segment (softplus = 1)
        "synapse_gain": jnp.full((len(SEGMENT_INDEX), len(spec.edge_src)), float(np.log(np.expm1(1.0)))),
        "premotor_bias": jnp.full((p,), config.premotor_bias),
        # MN resting drive and excitability (input gain; positive) per leg segment: legs differ in musculature
        "motor_bias": jnp.zeros((len(SEGMENT_INDEX), spec.n_motor)),
        "motor_gain": jnp.full((len(SEGMENT_INDEX), spec.n_motor), float(np.log(np.expm1(1.0)))),
    }
    graph = Graph(
        pm_src=jnp.asarray(spec.edge_src, jnp.int32),
        pm_dst=jnp.asarray(spec.edge_dst, jnp.int32),
        pm_count=jnp.asarray(spec.edge_count / n0),
        pm_sign=jnp.asarray(spec.edge_sign, jnp.float32),
        premotor_sign=jnp.asarray(spec.premotor_sign, jnp.float32),
        premotor_block=jnp.asarray(spec.premotor_block, jnp.int32),
        block_mask=jnp.ones((h, h)),
        coupling=jnp.asarray(leg_adjacency(config.legs)),
        leg_segment=jnp.asarray([SEGMENT_INDEX[motor_map.SEGMENT_OF_LEG[g]] for g in config.legs], jnp.int32),
        leg_is_right=jnp.asarray([g[0] == "r" for g in config.legs]),
        tau=jnp.asarray(config.tau),
        rate_max=jnp.asarray(config.rate_max),
    )
    return VNCParams(trainable=trainable, graph=graph)


def init_state(params: VNCParams) -> VNCState:
    n_legs = params.graph.coupling.shape[1]
    return VNCState(
        premotor=jnp.zeros((n_legs, params.trainable["recurrent"].shape[0])),
        motor=jnp.zeros((n_legs, params.trainable["motor_bias"].shape[-1])),
    )


# -- Signed weights (the only place magnitudes become weights) ------------------


def recurrent_weights(params: VNCParams) -> jax.Array:
    """(P_post, P_pre) premotor ↔ premotor weights: sign(pre) × softplus(theta) × mask."""
    g = params.graph
    mask = g.block_mask[g.premotor_block[:, None], g.premotor_block[None, :]]
    return jax.nn.softplus(params.trainable["recurrent"]) * mask * g.premotor_sign[None, :]


def coupling_weights(params: VNCParams) -> jax.Array:
    """(3, P_post, P_pre) intersegmental weights, Dale-signed by the presynaptic unit."""
    return jax.nn.softplus(params.trainable["coupling"]) * params.graph.premotor_sign[None, None, :]


def premotor_to_motor_weights(params: VNCParams) -> jax.Array:
    """(3, E) premotor/sensory → MN edge weights per leg segment: sign × fixed count × softplus(gain)."""
    g = params.graph
    return g.pm_sign * g.pm_count * jax.nn.softplus(params.trainable["synapse_gain"])


def rate(v: jax.Array, rate_max: jax.Array) -> jax.Array:
    """Capped half-rectified rate ``r_max tanh(relu(v) / r_max)``."""
    return rate_max * jnp.tanh(dynamics.relu(v) / rate_max)


# -- One step --------------------------------------------------------------------


def descending_per_leg(graph: Graph, descending: jax.Array) -> jax.Array:
    """(L, 4) per-leg channels (forward, ipsilateral, contralateral, backward)."""
    forward, left, right, backward = descending[0], descending[1], descending[2], descending[3]
    ipsi = jnp.where(graph.leg_is_right, right, left)
    contra = jnp.where(graph.leg_is_right, left, right)
    return jnp.stack([jnp.broadcast_to(forward, ipsi.shape), ipsi, contra, jnp.broadcast_to(backward, ipsi.shape)], -1)


def step(params: VNCParams, state: VNCState, inputs: VNCInput, dt: float) -> tuple[VNCState, VNCOutput]:
    """Advance the six-leg VNC by ``dt`` seconds."""
    g, t = params.graph, params.trainable
    r_p = rate(state.premotor, g.rate_max)
    r_s = inputs.proprio
    recurrent = r_p @ recurrent_weights(params).T
    coupled = jnp.einsum("rba,rqp,ap->bq", g.coupling, coupling_weights(params), r_p)
    w_dn = jax.nn.softplus(t["descending"])[g.leg_segment]  # (L, P, 4)
    dn = jnp.einsum("lpc,lc->lp", w_dn, descending_per_leg(g, inputs.descending))
    sensory = r_s @ jax.nn.softplus(t["sensory_to_premotor"]).T
    premotor = dynamics.euler_step(
        state.premotor, g.tau, t["premotor_bias"], recurrent + coupled, dn + sensory, dt
    )
    sources = jnp.concatenate([r_p, r_s], axis=-1)
    weight = premotor_to_motor_weights(params)[g.leg_segment]  # (L, E)
    n_motor = t["motor_bias"].shape[-1]
    to_motor = jax.vmap(lambda r, w: dynamics.synaptic_input(r, g.pm_src, g.pm_dst, w, n_motor))(sources, weight)
    to_motor = to_motor * jax.nn.softplus(t["motor_gain"])[g.leg_segment]
    motor = dynamics.euler_step(state.motor, g.tau, t["motor_bias"][g.leg_segment], to_motor, 0.0, dt)
    new_state = VNCState(premotor=premotor, motor=motor)
    return new_state, VNCOutput(mn_rate=rate(motor, g.rate_max), premotor_rate=rate(premotor, g.rate_max),
                                 mn_voltage=motor)


# -- Dale's law and the sparsity budget ------------------------------------------


def hemilineage_block_norms(params: VNCParams) -> jax.Array:
    """(H_post, H_pre) Frobenius norm of W_PP within each hemilineage pair."""
    g = params.graph
    w2 = recurrent_weights(params) ** 2
    h = g.block_mask.shape[0]
    per_post = jax.ops.segment_sum(w2, g.premotor_block, num_segments=h)
    blocks = jax.ops.segment_sum(per_post.T, g.premotor_block, num_segments=h).T
    return jnp.sqrt(blocks + 1e-12)


def sparsity_penalty(params: VNCParams) -> jax.Array:
    """Group lasso over hemilineage blocks of W_PP (drives whole pairs to zero)."""
    return jnp.sum(hemilineage_block_norms(params) * params.graph.block_mask)


def prune_to_budget(params: VNCParams, budget: int) -> VNCParams:
    """Keep only the ``budget`` strongest hemilineage pairs of W_PP (a new mask)."""
    norms = np.asarray(hemilineage_block_norms(params) * params.graph.block_mask).ravel()
    if budget < 0:
        raise ValueError(f"budget={budget} must be >= 0 hemilineage pairs")
    keep = np.zeros_like(norms)
    keep[np.argsort(-norms)[:budget]] = 1.0
    mask = jnp.asarray(keep.reshape(params.graph.block_mask.shape))
    return params._replace(graph=params.graph._replace(block_mask=mask))


def _softplus_np(x) -> np.ndarray:
    return np.logaddexp(0.0, np.asarray(x, dtype=np.float64))


def sign_violations(params: VNCParams) -> dict[str, int]:
    """Count of weights whose sign differs from their presynaptic transmitter sign.

    Recomputes the weights in numpy from the raw parameters (so it also checks
    the JAX weight functions' parametrisation); a non-finite parameter counts as
    a violation (NaN compares false to everything).
    """
    g, t = params.graph, params.trainable
    sign = np.asarray(g.premotor_sign)
    checks = {
        "recurrent": (np.asarray(recurrent_weights(params)), sign[None, :]),
        "coupling": (np.asarray(coupling_weights(params)), sign[None, None, :]),
        "premotor_to_motor": (np.asarray(premotor_to_motor_weights(params)), np.asarray(g.pm_sign)),
        "descending": (_softplus_np(t["descending"]), 1.0),
        "sensory_to_premotor": (_softplus_np(t["sensory_to_premotor"]), 1.0),
        "motor_gain": (_softplus_np(t["motor_gain"]), 1.0),
    }
    return {name: int(((w * expected < 0) | ~np.isfinite(w)).sum()) for name, (w, expected) in checks.items()}


# -- Proprioception -----------------------------------------------------------------


def proprioceptive_rates(
    sensory_names: tuple[str, ...] | np.ndarray,
    joint_angles: jax.Array,
    joint_velocities: jax.Array,
    leg_load: jax.Array,
    neutral: jax.Array,
    legs: tuple[str, ...] = LEGS,
) -> jax.Array:
    """(L, S) rates of the proprioceptive units from the body's sensors.

    Encodings (femoral chordotonal organ: Mamiya et al., Neuron 2018; coxal
    hair plates signal coxa position; bristles and others stand for load):
    claw flexion/extension neurons: tibia angle beyond neutral in their
    direction (rad); hook neurons: tibia angular velocity in their direction
    (rad/s / 10); club: |tibia velocity| / 10; hair plates: protraction angle
    beyond neutral; bristle/other: leg load (µN / 1000).

    Args:
        joint_angles, joint_velocities, neutral: (42,) in action order.
        leg_load: (6,) magnitude of each leg's ground reaction force, µN.
    """
    channels = {c.name: c for c in motor_map.CHANNELS}
    fti = channels["fti_flexion"]
    thc = channels["thc_protraction"]
    rows = []
    for leg in legs:
        i = LEGS.index(leg)
        k_fti = motor_map.dof_index(leg, fti)
        k_thc = motor_map.dof_index(leg, thc)
        flex = fti.direction * (joint_angles[k_fti] - neutral[k_fti])
        flex_vel = fti.direction * joint_velocities[k_fti] / 10.0
        protraction = thc.direction * (joint_angles[k_thc] - neutral[k_thc])
        load = leg_load[i] / 1000.0
        values = {
            "claw_flx": jax.nn.relu(flex),
            "claw_ext": jax.nn.relu(-flex),
            "hook_flx": jax.nn.relu(flex_vel),
            "hook_ext": jax.nn.relu(-flex_vel),
            "club": jnp.abs(flex_vel),
            "hairplate": jax.nn.relu(protraction),
            "bristle": load,
            "other": load,
        }
        rows.append(jnp.stack([values[str(n)] for n in sensory_names]))
    return jnp.stack(rows)

"""The connectome agent: compound eyes → optic lobes → descending neurons → legs.

Each control step:

1. **Eyes → optic lobes.** ``obs["vision"]`` (both eyes, 721 ommatidia) drives
   one flyvis-connectome optic lobe per eye (:class:`~connectofly.agents.optic_lobe_vision.EyeLobes`,
   45,669 neurons each), stepped once per vision frame. By default the lobes
   carry the parameters trained on optic flow (``connectofly optic-flow``,
   ``agents/weights/optic_lobe_flow.npz``); a saved readout carries the lobe
   parameters it was fitted on, and the agent runs it on those (:func:`readout_lobe`).
2. **Optic lobes → descending neurons.** The readout sees only the 34 cell types
   flyvis decodes from (``OpticLobeSpec.output_types``: T1-T5, Tm, TmY, the
   columnar types whose axons reach the lobula and lobula plate, where the
   visual projection neurons that feed descending neurons collect their input).
   Each type's synaptic output rates, ``relu(v)`` minus the grey-rest rate, are
   averaged over ``N_REGIONS`` regions of each eye's field of view: ``N_SECTORS``
   azimuth sectors (medial → lateral) × three elevation bands (below, at and
   above the horizon, split at ``ELEVATION_EDGES``) (:func:`readout_features`:
   2 eyes × 34 types × 24 regions). A learned,
   sparse linear map drives two leaky descending units (time constant
   ``DN_TAU``), the left and right descending drive of NeuroMechFly v2's
   turning controller (the role of steering DNs such as DNa02). The map is
   bilaterally symmetric, as DNs come in left/right pairs: one set of weights
   from the ipsilateral eye and one from the contralateral eye serves both
   units (:func:`dn_target`).
3. **Descending neurons → legs.** A motor stage turns the two-unit drive into
   joint targets: ``"hybrid"`` (default), NeuroMechFly v2's CPG with
   reflexes steered by the drive; or ``"vnc"``, the connectome VNC
   (:mod:`connectofly.circuits.vnc`, the shipped weights of ``connectofly vnc``)
   with the drive difference mapped onto its steering channels by a map
   calibrated on the VNC's measured turning (:func:`vnc_descending`; it walks
   about 9 mm/s at its forward input 1.25; docs/vnc.md).

The readout is trained by :mod:`connectofly.training.dn_readout`; the package
ships one per task (``agents/weights/dn_readout_<task>.npz``, :func:`embedded_readout`)
that :meth:`ConnectomeAgent.for_env` loads by default. Its ``silence`` argument blocks the output of optic-lobe
cell types (and, with the ``vnc`` stage, of VNC hemilineages); with ``adapted=True``
the readout measures rate changes from the silenced lobes' own grey rest, as if
the descending neurons had adapted to the tonic change in their input.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.agents.hybrid import HybridAgent, steered
from connectofly.agents.optic_lobe_vision import EyeLobes, LobeCarry, eye_lobes, lobe_parameters, mirror_right_eye
from connectofly.agents.visual_taxis import DRIVE_RANGE, env_ommatidium_directions
from connectofly.circuits import optic_lobe as ol
from connectofly.envs.kinematics import array_module

N_SECTORS = 8  # azimuth sectors per eye
ELEVATION_EDGES = (-0.2, 0.2)  # rad: floor / horizon band / sky; a target on the floor 8-14 mm away sits in the middle
N_REGIONS = N_SECTORS * (len(ELEVATION_EDGES) + 1)
DN_TAU = 0.02  # s, descending units' time constant
REST_DRIVE = 1.0  # both units: walking straight
MOTOR_STAGES = ("hybrid", "vnc")
# The drive → VNC input map is calibrated on the VNC's measured turning map (flat ground, 1.5 s, seeds 0-1,
# docs/closed_loop.md "The VNC motor stage"). Only at a forward input of 1.25-1.5 does its steering input turn
# it cleanly; there, below ~0.7 the fly walks straight (or veers slightly the wrong way), 0.75 turns it
# 0.2 rad/s, 1.0 0.55 rad/s and 1.25 spins it on the spot at 2.4 rad/s. A proportional map (steer = drive
# difference) therefore steered small bearings the wrong way.
VNC_FORWARD = 1.25  # the VNC's forward input while the fly walks (9 mm/s straight)
VNC_STEER_DEAD_BAND = 0.1  # drive difference below which the fly walks straight
VNC_STEER_ONSET = 0.7  # steering input at the dead band's edge: where the VNC starts to turn
VNC_STEER_SLOPE = 0.5  # steering input per unit of drive difference beyond the dead band
VNC_STEER_MAX = 1.25  # the on-the-spot spin; more turns it less (1.75: 0.08-0.44 rad/s)
VIDEO_TYPES = ("T4a", "T5a", "Tm1")  # ON motion, OFF motion, OFF contrast
LOBE_PREFIX = "lobe_"  # keys of the optic-lobe parameters in a readout file


class Readout(NamedTuple):
    """Optic-lobe features → each descending unit, the same for the left and the right one."""

    weight: jax.Array  # (2, n_types, N_REGIONS): [ipsilateral, contralateral eye] × type × region
    bias: jax.Array  # () drive with no visual input


class FeatureMap(NamedTuple):
    """Which cells of the lobes the readout sees and how they are pooled (fixed).

    Each read-out type is one block of consecutive cells in the lobes' cell layout
    (:func:`~connectofly.circuits.optic_lobe.type_blocks`), its columns at the same
    offsets in every block; cells without a column hold 0 and weigh 0.
    """

    first_cell: jax.Array  # (n_types,) first cell of each type's block
    rest_rate: jax.Array  # (n_types, block) rates of the blocks' cells at the grey steady state
    regions: jax.Array  # (2, N_REGIONS, block) per lobe: averaging weight of each block cell's column in each region


class ConnectomeCarry(NamedTuple):
    lobes: LobeCarry
    features: jax.Array  # (2, n_types, N_REGIONS) the readout's input, set each frame (the lobes change only then)
    dn: jax.Array  # (2,) descending units (left, right)
    motor: Any  # the motor stage's carry


def visual_regions(directions: np.ndarray) -> np.ndarray:
    """(2, N_REGIONS, 721) averaging weights of each eye's regions, from the ommatidia's
    (2, 721, 3) viewing directions in the thorax frame.

    Region ``3 k + b`` holds the ommatidia of azimuth sector ``k`` (between the
    ``k/n`` and ``(k+1)/n`` quantiles of the eye's lateral angle: azimuth, + left,
    mirrored for the right eye, so sector 0 is the most medial in both eyes) and
    elevation band ``b`` (0 below ``ELEVATION_EDGES[0]``, 2 above ``ELEVATION_EDGES[1]``).
    """
    lateral = np.arctan2(directions[..., 1], directions[..., 0]) * np.array([[1.0], [-1.0]])
    elevation = np.arcsin(np.clip(directions[..., 2], -1.0, 1.0))
    n_bands = len(ELEVATION_EDGES) + 1
    regions = np.zeros((2, N_REGIONS, directions.shape[1]), np.float32)
    for eye in range(2):
        edges = np.quantile(lateral[eye], np.linspace(0, 1, N_SECTORS + 1))
        sector = np.clip(np.searchsorted(edges, lateral[eye], side="right") - 1, 0, N_SECTORS - 1)
        band = np.searchsorted(ELEVATION_EDGES, elevation[eye])
        regions[eye, n_bands * sector + band, np.arange(directions.shape[1])] = 1.0
    return regions / np.maximum(regions.sum(axis=2, keepdims=True), 1.0)


def feature_map(lobes: EyeLobes, directions: np.ndarray, cell_types: tuple[str, ...]) -> FeatureMap:
    blocks = ol.type_blocks(lobes.params.graph)
    lobe_types = ol.spec_of(lobes.connectome).cell_types
    first = blocks.first[[lobe_types.index(t) for t in cell_types]]
    rest = jax.nn.relu(lobes.init().cells[0])[first[:, None] + np.arange(blocks.length)]
    # The right lobe's columns are the right eye's ommatidia mirrored (optic_lobe_vision.lobe_input).
    by_column = mirror_right_eye(visual_regions(directions), eye_axis=0)
    no_column = jnp.zeros((*by_column.shape[:-1], 1), by_column.dtype)
    regions = jnp.concatenate([by_column, no_column], axis=-1)[..., blocks.column]
    return FeatureMap(jnp.asarray(first, jnp.int32), rest, regions)


def readout_features(fmap: FeatureMap, cells: jax.Array, output_gain: jax.Array) -> jax.Array:
    """(2 eyes, n_types, N_REGIONS) region means of each type's rate change from grey rest,
    from both lobes' ``(2, n_cells)`` voltages (:class:`~connectofly.agents.optic_lobe_vision.LobeCarry`).

    ``output_gain`` (n_types,) is 1, or 0 for a silenced type (its output rate is 0).
    """
    # each type as one block of consecutive cells: a gather of blocks, several times
    # faster on CPU than one of every neuron
    blocks = jax.lax.GatherDimensionNumbers(offset_dims=(0, 2), collapsed_slice_dims=(), start_index_map=(1,))
    n_eyes, block = cells.shape[0], fmap.rest_rate.shape[1]
    voltages = jax.lax.gather(cells, fmap.first_cell[:, None], blocks, slice_sizes=(n_eyes, block),
                              mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)
    rate = jax.nn.relu(voltages) * output_gain[None, :, None]
    return jnp.einsum("etc,erc->etr", rate - fmap.rest_rate, fmap.regions)


def unit_inputs(features: jax.Array) -> jax.Array:
    """(2 units, 2, n_types, N_REGIONS): what the left and the right unit see, ipsilateral eye first."""
    return jnp.stack([features, features[::-1]])


def dn_target(readout: Readout, features: jax.Array) -> jax.Array:
    """(2,) the value each descending unit relaxes to."""
    return jnp.einsum("uetk,etk->u", unit_inputs(features), readout.weight) + readout.bias


def dn_step(readout: Readout, dn: jax.Array, features: jax.Array, dt: float) -> jax.Array:
    """One Euler step of the leaky descending units toward :func:`dn_target`."""
    return dn + dt / DN_TAU * (dn_target(readout, features) - dn)


def vnc_descending(drive):
    """The VNC's (forward, left steer, right steer, backward) input for a (left, right) drive: walk
    at ``VNC_FORWARD`` and steer by the calibrated map. The mean drive (speed) is not passed on:
    outside forward inputs 1.25-1.5 the VNC's steering is erratic (at 0.5 it also falls).
    NumPy in, NumPy out; JAX in, JAX out (the MJX closed loop)."""
    xp = array_module(drive)
    difference = drive[1] - drive[0]  # a weaker left side turns left
    beyond = xp.abs(difference) - VNC_STEER_DEAD_BAND
    steer = xp.where(beyond >= 0, xp.minimum(VNC_STEER_ONSET + VNC_STEER_SLOPE * beyond, VNC_STEER_MAX), 0.0)
    zero = xp.zeros_like(steer)
    return xp.stack([zero + VNC_FORWARD, xp.where(difference > 0, steer, zero), xp.where(difference < 0, steer, zero),
                     zero]).astype(xp.float32)


@dataclass
class HybridMotor:
    """NeuroMechFly v2's hybrid walker steered by the (left, right) drive."""

    control_dt: float
    walker: HybridAgent = field(init=False)

    def __post_init__(self) -> None:
        self.walker = HybridAgent(control_dt=self.control_dt)

    def default_params(self):
        return self.walker.default_params()

    def init(self, rng: np.random.Generator):
        return self.walker.init(rng)

    def move(self, params, carry, obs: dict, drive: np.ndarray, rng: np.random.Generator):
        return self.walker.act(steered(params, drive), carry, obs, rng)


@dataclass
class VNCMotor:
    """The connectome VNC (shipped weights) with the drive on its descending channels."""

    control_dt: float
    hemilineages_silenced: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from connectofly.training.vnc_evaluate import load_model

        model = load_model()
        if self.hemilineages_silenced:
            model = model.silenced(self.hemilineages_silenced)
        self.agent = model.agent(self.control_dt, np.zeros(4))

    def default_params(self):
        return self.agent.default_params()

    def init(self, rng: np.random.Generator):
        return self.agent.init(rng)

    def move(self, params, carry, obs: dict, drive: np.ndarray, rng: np.random.Generator):
        return self.agent.act_with_descending(params, carry, obs, vnc_descending(drive))


def embedded_readout(task: str, motor: str = "hybrid") -> Path:
    """The descending readout shipped for ``task`` and the motor stage (trained by ``connectofly
    dn-readout [--motor vnc]``): the one trained with that stage if there is one
    (``dn_readout_<task>_vnc.npz``), else the task's, else the ``visual_taxis`` one (walk to
    the dark object)."""
    weights = files("connectofly.agents") / "weights"
    for name in (f"dn_readout_{task}_{motor}.npz", f"dn_readout_{task}.npz", "dn_readout_visual_taxis.npz"):
        if (weights / name).is_file():
            return Path(str(weights / name))
    raise FileNotFoundError(f"no descending readout is shipped in {weights}")


def save_readout(path: str | Path, readout: Readout, cell_types: tuple[str, ...], lobe: ol.Trainable,
                 **meta) -> None:
    """Write ``readout`` with the optic-lobe parameters it reads, so that
    :meth:`ConnectomeAgent.for_env` runs it on the lobes it was fitted on."""
    lobe_values = ol.named_trainable(lobe, ol.read_spec())
    np.savez(path, weight=np.asarray(readout.weight), bias=np.asarray(readout.bias),
             cell_types=np.array(cell_types), n_regions=N_REGIONS,
             **{LOBE_PREFIX + k: v for k, v in lobe_values.items()}, **meta)


def load_readout(path: str | Path, cell_types: tuple[str, ...] | None = None) -> Readout:
    """A readout saved by :func:`save_readout`, checked against ``cell_types``."""
    with np.load(path) as saved:
        saved_types = tuple(str(t) for t in saved["cell_types"])
        if int(saved["n_regions"]) != N_REGIONS or (cell_types is not None and saved_types != tuple(cell_types)):
            raise ValueError(f"{path}: readout of {len(saved_types)} types x {int(saved['n_regions'])} regions does "
                             f"not fit this agent ({len(cell_types or ())} output types x {N_REGIONS} regions)")
        return Readout(jnp.asarray(saved["weight"]), jnp.asarray(saved["bias"]))


def readout_lobe(path: str | Path) -> ol.Trainable:
    """The optic-lobe parameters a saved readout was fitted on; flyvis's initialization for
    files that hold none (readouts saved before the lobes were trained)."""
    with np.load(path) as saved:
        named = {k[len(LOBE_PREFIX):]: saved[k] for k in saved.files if k.startswith(LOBE_PREFIX)}
    if not named:
        return lobe_parameters("untrained")
    return ol.trainable_from_named(named, ol.read_spec(), f"{path} (its optic lobe)")


def resting_readout(n_types: int) -> Readout:
    """A readout that ignores vision and walks straight (the start of training)."""
    return Readout(jnp.zeros((2, n_types, N_REGIONS)), jnp.asarray(REST_DRIVE, jnp.float32))


@dataclass
class ConnectomeAgent:
    """Eyes → optic lobes → descending units → motor stage (see the module doc).

    Build it with :meth:`for_env`. ``act`` is :meth:`sense` then :meth:`move`;
    trainers call the two halves separately.
    """

    lobes: EyeLobes
    fmap: FeatureMap
    readout: Readout
    cell_types: tuple[str, ...]
    motor: HybridMotor | VNCMotor
    silenced_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        shape = (2, len(self.cell_types), N_REGIONS)
        if self.readout.weight.shape != shape or self.readout.bias.shape != ():
            raise ValueError(f"readout weight must have shape {shape} and a scalar bias; got "
                             f"{self.readout.weight.shape}, {self.readout.bias.shape}")
        gain = output_gain(self.cell_types, self.silenced_types)
        dt, lobes, fmap = self.lobes.control_dt, self.lobes, self.fmap

        def see(readout, lobe_carry, dn, vision):
            lobe_carry = lobes.advance(lobe_carry, vision, is_frame=True)
            features = readout_features(fmap, lobe_carry.cells, gain)
            return lobe_carry, features, dn_step(readout, dn, features, dt)

        def hold(readout, observations, dn, features):
            return observations + 1, dn_step(readout, dn, features, dt)

        # between frames only the descending units move: the lobes' voltages stay where
        # they are, not copied through a compiled call
        self._see, self._hold = jax.jit(see), jax.jit(hold)

    @classmethod
    def for_env(cls, env, readout: Readout | str | Path | None = None, motor: str = "hybrid",
                silence: tuple[str, ...] = (), adapted: bool = False,
                lobe: str | Path | ol.Trainable | None = None) -> "ConnectomeAgent":
        """The agent for a connectofly env with vision.

        Args:
            readout: a :class:`Readout`, or the path of one saved by :func:`save_readout`;
                default the one embedded for the env's task and ``motor`` (:func:`embedded_readout`).
            motor: one of ``MOTOR_STAGES``.
            silence: optic-lobe cell types (any of the 65) and, with ``motor="vnc"``,
                VNC hemilineages (e.g. ``"19A"``) whose output is blocked.
            adapted: the readout's features are rate changes from the grey rest of the
                silenced lobes (a silenced type then reads 0), not of the intact ones (a
                silenced type then reads minus its resting rate, a large tonic change).
            lobe: the optic lobes (:func:`~connectofly.agents.optic_lobe_vision.lobe_parameters`:
                ``"trained"``, ``"untrained"``, a ``trainable.npz`` or the parameters); default
                the lobes a saved readout was fitted on (:func:`readout_lobe`), and the
                trained ones for a :class:`Readout` given in memory.
        """
        if "vision" not in env.observation_space.spaces:
            raise ValueError("the connectome agent needs an env with vision (a visual task)")
        base = env.unwrapped
        return cls.build(env_ommatidium_directions(env), base.task.name, base.control_dt, base.vision_hz,
                         readout, motor, silence, adapted, lobe)

    @classmethod
    def build(cls, directions: np.ndarray, task: str, control_dt: float, vision_hz: float,
              readout: Readout | str | Path | None = None, motor: str = "hybrid", silence: tuple[str, ...] = (),
              adapted: bool = False, lobe: str | Path | ol.Trainable | None = None) -> "ConnectomeAgent":
        """:meth:`for_env` from what it reads of the env: the ommatidia's (2, 721, 3) viewing
        ``directions`` in the thorax frame, the task's name, the control step and the eyes' rate
        (the MJX closed loop builds it from its own scene)."""
        if motor not in MOTOR_STAGES:
            raise ValueError(f"motor {motor!r} is not one of {MOTOR_STAGES}")
        spec = ol.read_spec()
        lobe_types, hemilineages = split_silenced(spec.cell_types, silence)
        if hemilineages and motor != "vnc":
            raise ValueError(f"silencing VNC hemilineages {hemilineages} needs motor='vnc'")
        if adapted and not lobe_types:
            raise ValueError("adapted=True needs optic-lobe cell types to silence")
        cell_types = spec.output_types
        if isinstance(readout, Readout):
            trainable = lobe_parameters("trained" if lobe is None else lobe)
        else:
            path = readout or embedded_readout(task, motor)
            readout = load_readout(path, cell_types)
            trainable = readout_lobe(path) if lobe is None else lobe_parameters(lobe)
        intact = eye_lobes(trainable, control_dt, vision_hz)
        lobes = intact
        if lobe_types:
            trainable = ol.silence(intact.params.trainable, spec, lobe_types)
            lobes = replace(intact, params=intact.params._replace(trainable=trainable))
        stage = HybridMotor(control_dt) if motor == "hybrid" else VNCMotor(control_dt, hemilineages)
        fmap = feature_map(lobes if adapted else intact, directions, cell_types)
        if adapted:
            fmap = fmap._replace(rest_rate=fmap.rest_rate * output_gain(cell_types, lobe_types)[:, None])
        return cls(lobes, fmap, readout, cell_types, stage, lobe_types)

    def default_params(self):
        return self.motor.default_params()

    def init(self, rng: np.random.Generator) -> ConnectomeCarry:
        features = jnp.zeros((2, len(self.cell_types), N_REGIONS), jnp.float32)
        return ConnectomeCarry(self.lobes.init(), features, jnp.full(2, REST_DRIVE, jnp.float32), self.motor.init(rng))

    def sense(self, carry: ConnectomeCarry, vision, readout: Readout | None = None):
        """Advance the lobes and the descending units by one observation; also return the features."""
        readout = self.readout if readout is None else readout
        if self.lobes.is_frame(int(carry.lobes.observations)):
            lobes, features, dn = self._see(readout, carry.lobes, carry.dn, vision)
            return carry._replace(lobes=lobes, features=features, dn=dn), features
        observations, dn = self._hold(readout, carry.lobes.observations, carry.dn, carry.features)
        return carry._replace(lobes=carry.lobes._replace(observations=observations), dn=dn), carry.features

    def move(self, params, carry: ConnectomeCarry, obs: dict, drive: np.ndarray, rng: np.random.Generator):
        motor, action = self.motor.move(params, carry.motor, obs, np.clip(drive, *DRIVE_RANGE), rng)
        return carry._replace(motor=motor), action

    def activity(self, carry: ConnectomeCarry, cell_types: tuple[str, ...] = VIDEO_TYPES) -> dict:
        """What a video shows: per output type ``(2, 721)`` rate change from grey rest (each
        eye's ommatidium order), the descending units, and the VNC's motor neurons when it is
        the motor stage."""
        unknown = sorted(set(cell_types) - set(self.cell_types))
        if unknown:
            raise ValueError(f"cell types {unknown} are not read out; choose from {self.cell_types}")
        index = np.array([self.cell_types.index(t) for t in cell_types])
        column_offset = np.argsort(ol.type_blocks(self.lobes.params.graph).column)[:ol.n_columns(self.lobes.params)]
        cells = np.asarray(self.fmap.first_cell)[index][:, None] + column_offset
        rates = jax.nn.relu(carry.lobes.cells[:, cells]) - self.fmap.rest_rate[index][:, column_offset]
        rates = np.asarray(mirror_right_eye(rates, eye_axis=0)).swapaxes(0, 1)  # (types, 2 eyes, 721), eye order
        recorded = {"lobe": dict(zip(cell_types, rates)), "dn": np.asarray(carry.dn)}
        if isinstance(self.motor, VNCMotor):
            recorded["mn"] = np.asarray(carry.motor.mn_rate)
        return recorded

    def act(self, params, carry: ConnectomeCarry, obs: dict, rng: np.random.Generator):
        if "vision" not in obs:
            raise ValueError("ConnectomeAgent needs obs['vision']: make the env with vision=True")
        carry, _ = self.sense(carry, obs["vision"])
        return self.move(params, carry, obs, np.asarray(carry.dn, dtype=float), rng)


def output_gain(cell_types: tuple[str, ...], silenced: tuple[str, ...]) -> jax.Array:
    """(n_types,) 1 for each read-out type, 0 for a silenced one."""
    return jnp.asarray([0.0 if t in silenced else 1.0 for t in cell_types])


def split_silenced(lobe_cell_types: tuple[str, ...], names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split silencing targets into optic-lobe cell types and VNC hemilineages; reject unknown names."""
    from connectofly.training.vnc_evaluate import premotor_hemilineages

    names = tuple(names)
    lobe = tuple(n for n in names if n in lobe_cell_types)
    rest = tuple(n for n in names if n not in lobe_cell_types)
    if rest:
        known = premotor_hemilineages()
        unknown = [n for n in rest if n not in known]
        if unknown:
            raise ValueError(f"cannot silence {unknown}: neither an optic-lobe cell type {sorted(lobe_cell_types)} "
                             f"nor a VNC hemilineage {sorted(known)}")
    return lobe, rest

"""The optic lobe inside the control loop: one network step per vision frame.

The environments refresh ``obs["vision"]`` (both eyes, 721 ommatidia each, in
flyvis lattice order) every ``1 / vision_hz`` s and hold it in between
(:mod:`connectofly.envs.fly_env`). :class:`EyeLobes` runs one optic lobe per eye
(:mod:`connectofly.circuits.optic_lobe` at extent 15, the eye's lattice; the two
share parameters) and advances both by one Euler step of ``1 / vision_hz`` s each
time a new frame arrives, carrying the voltages from one control step to the
next in the network's own cell layout
(:func:`~connectofly.circuits.optic_lobe.to_cells`: converting to and from
per-neuron order every frame cost as much as the step; :meth:`EyeLobes.voltage`
gives the per-neuron view). Everything is a pure JAX function of ``(carry,
vision)``, so the same :meth:`EyeLobes.advance` runs in the Python loop of the
C backend (:class:`WithOpticLobes` wraps any agent) and inside a jitted,
vmapped MJX rollout.

Each ommatidium reads one colour channel (yellow or pale, the other is 0); the
network's photoreceptors get their sum, i.e. the luminance that ommatidium reads.

The two lobes are mirror images of each other, as in the fly. The eye delivers
both images in lattice order unmirrored (``+v`` is the image right: anterior in
the left eye, posterior in the right eye, :mod:`connectofly.envs.eye_geometry`),
so the same network fed both as delivered would see the right eye's world
flipped front-to-back: a direction-selective type would prefer front-to-back
motion in one eye and back-to-front in the other, and forward walking, whose
optic flow is mirror-symmetric, would excite the two lobes differently. So the
right eye's image is mirrored onto the lattice (:func:`mirror_right_eye`)
before it enters its lobe: lobe column ``c`` sees, in both eyes, mirror-image
directions (``eye_geometry.mirror_lattice_index``). Right-lobe activity is in
this mirrored column order; :func:`mirror_right_eye` maps it back to the
right eye's own ommatidium order (the map is its own inverse).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.circuits import flyvis_checkpoint
from connectofly.circuits import optic_lobe as ol
from connectofly.envs.eye_geometry import mirror_lattice_index
from connectofly.envs.fly_env import DEFAULT_VISION_HZ

EYE_EXTENT = 15  # 721 ommatidia per eye
MIRROR = mirror_lattice_index()  # right eye ommatidium of each lobe column


class LobeCarry(NamedTuple):
    """Both optic lobes' voltages and the number of observations seen."""

    cells: jax.Array  # (2, n_cells): left eye, right eye, in the network's cell layout (EyeLobes.voltage)
    observations: jax.Array  # int32 scalar


def mirror_right_eye(values: jax.Array, eye_axis: int = -2) -> jax.Array:
    """Per-column values (both eyes along ``eye_axis``, the 721 columns last) with the right
    eye's columns mirrored (eye ↔ lobe order)."""
    values = jnp.moveaxis(jnp.asarray(values), eye_axis, 0)
    return jnp.moveaxis(values.at[1].set(values[1][..., MIRROR]), 0, eye_axis)


def lobe_input(vision: jax.Array) -> jax.Array:
    """``(..., 2, 721)`` photoreceptor input of the two lobes from ``obs["vision"]`` ``(..., 2, 721, 2)``:
    each ommatidium's luminance, the right eye mirrored (module docstring)."""
    return mirror_right_eye(jnp.sum(vision, axis=-1))


@dataclass(frozen=True)
class EyeLobes:
    """Two optic lobes fed by the compound eyes, stepped once per vision frame.

    Args:
        params: optic-lobe parameters on the extent-15 lattice (e.g. from
            :func:`connectofly.circuits.optic_lobe.init`; :func:`eye_lobes` builds
            them from a choice of lobe).
        connectome: the extent-15 optic-lobe connectome ``params`` was built on.
        control_dt: the environment's control step, s.
        vision_hz: the environment's vision refresh rate; ``1 / vision_hz`` must
            be a whole number of control steps.
    """

    params: ol.OpticLobeParams
    connectome: Any
    control_dt: float
    vision_hz: float = DEFAULT_VISION_HZ

    def __post_init__(self) -> None:
        if ol.n_columns(self.params) != 721:
            raise ValueError(
                f"params have {ol.n_columns(self.params)} columns; the eye has 721 "
                f"(build them at extent {EYE_EXTENT})"
            )
        ratio = 1.0 / (self.vision_hz * self.control_dt)
        if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(
                f"1/vision_hz = {1 / self.vision_hz} s must be a whole number of control "
                f"steps of {self.control_dt} s"
            )

    @property
    def frame_dt(self) -> float:
        """Network time step: one vision frame, s."""
        return 1.0 / self.vision_hz

    @property
    def observations_per_frame(self) -> int:
        return int(round(1.0 / (self.vision_hz * self.control_dt)))

    @functools.cached_property
    def _grey_voltage(self) -> jax.Array:
        # Computed once per parameters (episodes reset often), eagerly even when
        # first asked for inside a traced function, so no tracer is cached.
        with jax.ensure_compile_time_eval():
            return ol.steady_state(self.params, self.frame_dt).voltage

    def init(self) -> LobeCarry:
        """Both lobes at the grey (luminance 0.5) steady state, as flyvis starts."""
        grey = ol.to_cells(self.params.graph, self._grey_voltage)
        return LobeCarry(jnp.stack([grey, grey]), jnp.zeros((), jnp.int32))

    def is_frame(self, observations):
        """Whether the observation after ``observations`` ones is a new frame (the env renders on
        observation 0, k, 2k, ...); a Python int or a traced count."""
        return observations % self.observations_per_frame == 0

    def advance(self, carry: LobeCarry, vision: jax.Array, is_frame: bool | None = None) -> LobeCarry:
        """Take one observation's ``vision`` (2, 721, 2); step the lobes if it is a new frame.

        ``is_frame``: :meth:`is_frame`, given by a caller that runs the steps from Python (the
        C backend) and so knows it. Left out, a ``cond`` decides inside the traced function, which
        on CPU costs as much as the rest of a step between frames.
        """
        if is_frame is None:
            # between frames the network is not run (under vmap the cond becomes a select)
            cells = jax.lax.cond(self.is_frame(carry.observations), self.frame, lambda c, _: c, carry.cells, vision)
        else:
            cells = self.frame(carry.cells, vision) if is_frame else carry.cells
        return LobeCarry(cells, carry.observations + 1)

    def frame(self, cells: jax.Array, vision: jax.Array) -> jax.Array:
        """Both lobes' ``(2, n_cells)`` voltages after one network step on a new ``vision`` frame."""
        luminance = lobe_input(jnp.asarray(vision, jnp.float32))
        step = lambda c, lum: ol.advance(self.params, c, lum, self.frame_dt)  # noqa: E731
        return jax.vmap(step)(cells, luminance)

    def voltage(self, carry: LobeCarry) -> jax.Array:
        """``(2, n_nodes)`` both lobes' voltages in the connectome's neuron order."""
        return ol.from_cells(self.params.graph, carry.cells)

    def activity(self, carry: LobeCarry, cell_type: str) -> jax.Array:
        """``(2, n_columns_of_type)`` voltages of one cell type in both lobes (lobe column order)."""
        return self.voltage(carry)[:, ol.neurons_of_type(self.connectome, cell_type)]


FLYVIS_INIT_KEY = jax.random.PRNGKey(0)  # the untrained lobes' resting potentials
EMBEDDED_LOBE = "optic_lobe_flow.npz"  # trained by connectofly optic-flow (docs/optic_lobe.md)
LOBE_CHOICES = ("trained", "untrained")


def lobe_parameters(lobe: str | Path | ol.Trainable) -> ol.Trainable:
    """The lobes' parameters from a user's choice: ``"trained"``, the shipped
    optic-flow-trained lobe (``agents/weights/optic_lobe_flow.npz``); ``"untrained"``,
    flyvis's initialization; the path of a ``trainable.npz`` written by
    ``connectofly optic-flow`` or ``connectofly lobe-import``; a flyvis checkpoint
    file or model folder (e.g. flyvis's pretrained ``flow/0000/000``, read by
    :func:`~connectofly.circuits.flyvis_checkpoint.load_flyvis_checkpoint`); or
    the parameters themselves."""
    if isinstance(lobe, ol.Trainable):
        return lobe
    if lobe == "untrained":
        return ol.init_trainable(FLYVIS_INIT_KEY, ol.read_spec())
    path = files("connectofly.agents") / "weights" / EMBEDDED_LOBE if lobe == "trained" else Path(lobe)
    if lobe != "trained" and flyvis_checkpoint.is_flyvis_checkpoint(path):
        return flyvis_checkpoint.load_flyvis_checkpoint(path, ol.read_spec())
    if not path.is_file():
        raise ValueError(f"optic lobe {lobe!r}: {path} is not a file (choose {LOBE_CHOICES}, a trainable.npz "
                         f"written by connectofly optic-flow, or a flyvis checkpoint or model folder)")
    return ol.load_trainable(str(path), ol.read_spec())


def eye_lobes(
    lobe: str | Path | ol.Trainable = "trained", control_dt: float = 1e-3, vision_hz: float = DEFAULT_VISION_HZ
) -> EyeLobes:
    """:class:`EyeLobes` at the eye's extent with the parameters :func:`lobe_parameters`
    makes of ``lobe`` (trained at any extent, e.g. by :mod:`connectofly.training.optic_flow`)."""
    connectome = ol.load_connectome(EYE_EXTENT)
    params = ol.OpticLobeParams(trainable=lobe_parameters(lobe), graph=ol.build_graph(connectome))
    return EyeLobes(params, connectome, control_dt, vision_hz)


@dataclass
class WithOpticLobes:
    """Any agent plus the optic lobes, advanced every control step from ``obs["vision"]``.

    The carry is ``(inner carry, LobeCarry)``; the action is the inner agent's.
    The lobes' state is there for recording and analysis (and for controllers
    that read it, issue 7's connectome agent).
    """

    agent: Any
    lobes: EyeLobes

    def __post_init__(self) -> None:
        self._advance = jax.jit(self.lobes.advance, static_argnames="is_frame")

    def default_params(self):
        return self.agent.default_params()

    def init(self, rng: np.random.Generator):
        return self.agent.init(rng), self.lobes.init()

    def act(self, params, carry, obs: dict, rng: np.random.Generator):
        if "vision" not in obs:
            raise ValueError("WithOpticLobes needs obs['vision']: make the env with vision=True")
        inner, lobes = carry
        lobes = self._advance(lobes, obs["vision"], is_frame=self.lobes.is_frame(int(lobes.observations)))
        inner, action = self.agent.act(params, inner, obs, rng)
        return (inner, lobes), action

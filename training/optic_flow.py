"""BPTT training of the optic lobe on synthetic optic flow (flyvis's task).

Lappalainen et al., Nature 634 (2024) train the connectome-constrained network,
with a decoder reading the output cell types, to regress the optic flow of the
Sintel movies. Sintel is not reachable here, so the sequences are synthesised
with a known ground truth: a random 1/f ("pink") noise texture translates
rigidly across the hex lattice at a random velocity, and the flow at every
column is that velocity (columns/s, in the plane of
:func:`connectofly.circuits.hex_lattice.to_cartesian`). Optionally the
background also rotates and expands, and textured discs cross in front of it
(:class:`Scene`), so that the flow differs from column to column as in Sintel.

Departures from flyvis, stated:

* the decoder is flyvis's in kind (a hexagonal convolution over each column
  and its six neighbours to ``hidden_channels`` softplus channels, then one to
  the flow, after batch normalization of each output type), but it reads each
  neuron's rectified voltage *minus its own value at the grey steady state*.
  At a small extent most columns sit on the lattice border, and the border
  shifts the resting voltage of a type from column to column 100 to 10,000
  times more than a moving texture moves it (``docs/optic_lobe.md``); read
  raw, per-type normalization keeps that static pattern and the decoder learns
  nothing;
* the flow of a sequence is uniform, so the loss scores the column average of
  the per-column estimates (``pool_columns``). A motion estimate from one column
  and its neighbours is very noisy: a Hassenstein-Reichardt correlator on the
  same movies explains 1.5 % of the flow variance per column and 64 % averaged
  over the columns, and per-column scoring left the loss flat;
* the optimizer works on the logarithm of the synaptic strengths and time
  constants (:class:`LogTrainable`), so an Adam step is a relative change of
  each (flyvis: plain values, step 5e-5, which moves a weak edge type by 20 %
  and a strong type's time constant by 0.1 % per step);
* the network starts at threshold (``start_at_threshold``): the resting
  potentials of every type but the photoreceptors are shifted so that each sits
  at 0 in the grey steady state. At flyvis's initialization every type rests
  0.14 to 1.2 above threshold, its ReLU passes the small voltage swings of a
  moving texture unchanged, and the network starts linear. Decoding T4/T5 only,
  starting at threshold ends at a lower loss than flyvis's start (0.028 against
  0.044 after 8,000 steps) and makes flyvis's DSI measurable;
* the resting potentials have their own step size, 1e-6, and strengths and
  time constants take 1e-3: Adam moves every parameter by about its step size
  per step and the texture moves voltages by 1e-5 to 1e-3. With every step
  size 3e-3, decoding T4/T5 only learnt nothing from either start (from
  threshold, the first steps push types below it, where they stay silent);
  with only the resting potentials slowed, two of three runs learnt and then
  collapsed after 2,000 to 3,500 steps, strengths grown up to 260-fold
  (``docs/optic_lobe.md``);
* the time constants start spread around flyvis's 50 ms (log-normal,
  ``tau_spread``) rather than all equal: with equal time constants every
  pathway has the same temporal filter and the untrained network has no seed of
  direction selectivity for the gradient to grow;
* each sequence starts from the grey steady state of the current parameters
  and holds its first frame still for ``settle_frames`` frames before it moves
  (flyvis fades the first frame in), so the onset of the texture has settled
  before any frame is scored; the loss is the mean squared flow error
  normalized by the largest speed.

Run ``connectofly optic-flow --help``. Training state is checkpointed (orbax,
resumable), the loss goes to TensorBoard, ``loss.csv`` and ``loss.png``, and at
the end the tuning of the trained network (flash response indices with a table
of ON/OFF polarity against measurements, T4/T5 direction selectivity) is
written to ``tuning.json``, ``polarity.md`` and plots.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.ndimage import map_coordinates
from tqdm import tqdm

from connectofly.circuits import optic_lobe as ol
from connectofly.circuits import hex_lattice, stimuli, tuning
from connectofly.training.checkpoints import Checkpoints
from connectofly.training.records import open_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowConfig:
    """Task and optimizer settings (defaults: ~1 h on a 2-core CPU).

    Attributes:
        extent: lattice radius in columns (parameters do not depend on it).
        dt: integration step, s.
        n_frames: frames per sequence; the first ``warmup_frames`` are not scored.
        batch: sequences per step.
        texture_pixels: side of the periodic noise texture, pixels.
        pixels_per_column: texture resolution.
        max_speed: largest sampled speed of the background's translation and of
            each object, columns/s.
        max_rotation: largest angular speed of the background about a random
            centre, rad/s (0: it only translates).
        max_expansion: largest rate of expansion or contraction of the
            background from that centre, 1/s.
        objects: discs of their own texture moving over the background, each at
            a velocity of its own (:class:`Scene`). Any of these three makes the
            flow differ from column to column, so that it must be estimated
            locally, as in flyvis's Sintel movies.
        object_radius: radius of each disc, columns.
        object_luminance: factor on the discs' texture (the background's is in
            (0, 1) around 0.5): below 1 the discs are darker than the
            background, so that the edge leading each one is mostly an OFF edge.
        learning_rate: Adam step size of the strengths and time constants
            (relative: they are trained in log space).
        bias_learning_rate: Adam step size of the resting potentials (voltage
            units). Adam moves every one by about this much per step whatever its
            gradient, so with ``start_at_threshold`` it must be small next to the
            voltage swings (1e-5 to 1e-3) or the first steps push types below
            threshold, where they stay.
        decoder_learning_rate: Adam step size of the decoder.
        hidden_channels: softplus channels of the decoder's hidden layer (0: none,
            a linear decoder).
        settle_frames: frames the first image is held still before it moves.
        tau_spread: standard deviation of the log of the initial time constants
            around 50 ms (0: flyvis's equal time constants).
        strength_scale: factor on flyvis's initial synaptic strengths. At 1 each
            stage of the network passes on about a tenth of its input's swing
            (photoreceptors 0.5, L1 0.035, Mi1 5e-3, T4 7e-4 for a moving edge),
            so the motion detectors work at 1e-4 to 1e-3; at 4 they answer at
            1e-2; at 6 the network is unstable (its grey state diverges).
        homeostasis: after every step, move each type's resting potential (all
            but the photoreceptors) by its central neuron's grey steady-state
            voltage, back towards threshold (one fixed-point step of
            :func:`~connectofly.circuits.optic_lobe.at_grey_voltage`). Without
            it, decoding all output types, T4 and T5 sink below threshold
            through grown inhibition within 2,000 steps and fall silent.
        pool_columns: score the column average of the flow estimates against
            that of the flow (the flow itself when the background only
            translates and there are no objects).
        start_at_threshold: shift the initial resting potentials so that every
            type but the photoreceptors sits at 0 (threshold) in the grey steady
            state (:func:`~connectofly.circuits.optic_lobe.at_grey_voltage`);
            off: flyvis's, where every type rests above threshold and the
            network starts linear.
        decoded_types: comma-separated output types the decoder reads (empty: all
            of flyvis's output types); e.g. ``"T4a,T4b,T4c,T4d,T5a,T5b,T5c,T5d"``
            makes the flow pass through the motion detectors.
        steps: optimizer steps.
        seed: seeds parameters and data.
    """

    extent: int = 4
    dt: float = 0.02
    n_frames: int = 25
    warmup_frames: int = 5
    batch: int = 4
    texture_pixels: int = 64
    pixels_per_column: float = 2.0
    max_speed: float = 8.0
    max_rotation: float = 0.0
    max_expansion: float = 0.0
    objects: int = 0
    object_radius: float = 2.0
    object_luminance: float = 1.0
    learning_rate: float = 1e-3
    bias_learning_rate: float = 1e-6
    decoder_learning_rate: float = 3e-3
    hidden_channels: int = 8
    settle_frames: int = 25
    tau_spread: float = 0.5
    strength_scale: float = 1.0
    homeostasis: bool = False
    pool_columns: bool = True
    start_at_threshold: bool = True
    decoded_types: str = ""
    steps: int = 1000
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.warmup_frames < self.n_frames:
            raise ValueError(f"warmup_frames ({self.warmup_frames}) must leave frames to score of n_frames "
                             f"({self.n_frames})")
        for name in ("max_rotation", "max_expansion", "objects", "object_radius", "object_luminance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


# -- Synthetic data -------------------------------------------------------------


def pink_noise(key: jax.Array, size: int, exponent: float = 1.0) -> jax.Array:
    """A periodic ``(size, size)`` texture in (0, 1) with a 1/f^exponent
    amplitude spectrum (natural images are close to exponent 1)."""
    white = jax.random.normal(key, (size, size))
    f = jnp.fft.fftfreq(size)
    radius = jnp.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    spectrum = jnp.fft.fft2(white) / jnp.maximum(radius, 1.0 / size) ** exponent
    image = jnp.real(jnp.fft.ifft2(spectrum.at[0, 0].set(0.0)))
    image = image / (jnp.std(image) + 1e-12)
    return 0.5 + 0.5 * jnp.tanh(image / 2.0)


class Scene(NamedTuple):
    """The motion of one sequence, in columns and seconds (the plane of
    :func:`~connectofly.circuits.stimuli.column_positions`).

    The background texture flows with the affine field
    ``v(p) = velocity + A (p - centre)``, ``A = [[expansion, -rotation],
    [rotation, expansion]]``: a translation, a rotation about ``centre`` and an
    expansion (negative: contraction) from it, as the eye of a fly that walks and
    turns sees the ground and the walls. Discs of their own texture translate in
    front of it, each at its own velocity; a later disc hides an earlier one.
    """

    velocity: jax.Array  # (2,)
    rotation: jax.Array  # () rad/s
    expansion: jax.Array  # () 1/s
    centre: jax.Array  # (2,)
    object_start: jax.Array  # (n_objects, 2) disc centres at t = 0
    object_velocity: jax.Array  # (n_objects, 2)
    object_radius: float


def translation(velocity: jax.Array) -> Scene:
    """A scene that is the background translating at ``velocity``, nothing else."""
    zero = jnp.zeros(())
    return Scene(velocity, zero, zero, jnp.zeros(2), jnp.zeros((0, 2)), jnp.zeros((0, 2)), 0.0)


def _flow_matrix(scene: Scene) -> jax.Array:
    """``A`` of the background's affine flow field (:class:`Scene`)."""
    return jnp.array([[scene.expansion, -scene.rotation], [scene.rotation, scene.expansion]])


def _background_flow_map(scene: Scene, t: jax.Array) -> jax.Array:
    """(3, 3) homogeneous map taking a point's position relative to ``centre`` at
    time ``t`` back to where it was at 0: ``expm(-M t)``, ``M = [[A, v], [0, 0]]``
    (exact for the affine field; for a pure translation it subtracts ``v t``)."""
    generator = jnp.zeros((3, 3)).at[:2, :2].set(_flow_matrix(scene)).at[:2, 2].set(scene.velocity)
    return jax.scipy.linalg.expm(-generator * t)


def render_scene(
    background: jax.Array,
    objects: jax.Array,
    x: jax.Array,
    y: jax.Array,
    scene: Scene,
    n_frames: int,
    dt: float,
    pixels_per_column: float,
) -> tuple[jax.Array, jax.Array]:
    """Luminance ``(n_frames, n_columns)`` and optic flow ``(n_frames, n_columns, 2)``
    (columns/s) of ``scene`` sampled at the columns ``x, y``; frame ``k`` is time ``k dt``.

    ``background`` is a periodic texture, ``objects`` one per disc
    ``(n_objects, size, size)``; texture row = y, column = x, bilinear sampling with
    periodic wrap at ``pixels_per_column``.
    """
    times = dt * jnp.arange(n_frames)
    relative = jnp.stack([x - scene.centre[0], y - scene.centre[1], jnp.ones_like(x)])  # (3, n_columns)

    def background_frame(t):
        origin = _background_flow_map(scene, t) @ relative
        coordinates = [(origin[1] + scene.centre[1]) * pixels_per_column,
                       (origin[0] + scene.centre[0]) * pixels_per_column]
        return map_coordinates(background, coordinates, order=1, mode="wrap")

    luminance = jax.vmap(background_frame)(times)
    flow = jnp.broadcast_to(scene.velocity + (_flow_matrix(scene) @ relative[:2]).T, (n_frames, x.size, 2))
    for k in range(scene.object_start.shape[0]):  # in order: later discs in front
        velocity = scene.object_velocity[k]
        dx = x[None] - velocity[0] * times[:, None]
        dy = y[None] - velocity[1] * times[:, None]
        inside = jnp.hypot(dx - scene.object_start[k, 0], dy - scene.object_start[k, 1]) < scene.object_radius
        texture = map_coordinates(objects[k], [dy * pixels_per_column, dx * pixels_per_column], order=1, mode="wrap")
        luminance = jnp.where(inside, texture, luminance)
        flow = jnp.where(inside[..., None], velocity, flow)
    return luminance, flow


def _random_velocity(k_direction: jax.Array, k_speed: jax.Array, max_speed: float) -> jax.Array:
    """Uniform direction, speed uniform in [0, max_speed]."""
    angle = jax.random.uniform(k_direction, (), maxval=2 * jnp.pi)
    return jax.random.uniform(k_speed, (), maxval=max_speed) * jnp.array([jnp.cos(angle), jnp.sin(angle)])


def sample_scene(key: jax.Array, config: FlowConfig, velocity: jax.Array) -> Scene:
    """A random :class:`Scene` with background ``velocity``: rotation and
    expansion uniform in ``±max_rotation``, ``±max_expansion`` about a centre
    uniform in the lattice's bounding square; ``objects`` discs starting anywhere
    in that square, each at a velocity of its own (as :func:`_random_velocity`)."""
    k_rotation, k_expansion, k_centre, k_start, k_direction, k_speed = jax.random.split(key, 6)
    half_width = config.extent + 0.5
    uniform = lambda k, bound, shape=(): jax.random.uniform(k, shape, minval=-bound, maxval=bound)  # noqa: E731
    return Scene(
        velocity=velocity,
        rotation=uniform(k_rotation, config.max_rotation),
        expansion=uniform(k_expansion, config.max_expansion),
        centre=uniform(k_centre, half_width, (2,)),
        object_start=uniform(k_start, half_width, (config.objects, 2)),
        object_velocity=jax.vmap(lambda kd, ks: _random_velocity(kd, ks, config.max_speed))(
            jax.random.split(k_direction, config.objects), jax.random.split(k_speed, config.objects)),
        object_radius=config.object_radius,
    )


def sample_batch(
    key: jax.Array, config: FlowConfig, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Movies ``(batch, n_frames, n_columns)`` and their optic flows
    ``(batch, n_frames, n_columns, 2)`` (:func:`sample_scene`, :func:`render_scene`)."""

    def one(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        # the keys of the translation-only sampler first, so that its sequences stay as they
        # were (up to float rounding of the exact render)
        k_background, k_direction, k_speed = jax.random.split(key, 3)
        velocity = _random_velocity(k_direction, k_speed, config.max_speed)
        scene = sample_scene(jax.random.fold_in(key, 1), config, velocity)
        background = pink_noise(k_background, config.texture_pixels)
        k_objects = jax.random.fold_in(key, 2)
        objects = config.object_luminance * jax.vmap(lambda k: pink_noise(k, config.texture_pixels))(
            jax.random.split(k_objects, config.objects))
        return render_scene(background, objects, x, y, scene, config.n_frames, config.dt, config.pixels_per_column)

    return jax.vmap(one)(jax.random.split(key, config.batch))


# -- Model and loss ---------------------------------------------------------------


class Decoder(NamedTuple):
    """Two hexagonal convolutions (a column and its six neighbours,
    :func:`~connectofly.circuits.hex_lattice.neighbourhoods`): the normalized
    output-type features to ``hidden`` softplus channels, those to the flow."""

    hidden_weight: jax.Array | None  # (7, n_decoded_types, hidden); None: no hidden layer
    hidden_bias: jax.Array | None  # (hidden,)
    flow_weight: jax.Array  # (7, hidden or n_decoded_types, 2)
    flow_bias: jax.Array  # (2,)


def init_decoder(key: jax.Array, n_types: int, hidden: int) -> Decoder:
    """Weights with unit-variance output for unit-variance input; zero biases.
    ``hidden`` 0: no hidden layer, one linear convolution to the flow (the decoder
    then cannot correlate features itself, so any motion estimate is the network's)."""
    k_hidden, k_flow = jax.random.split(key)
    n_neighbours = len(hex_lattice.NEIGHBOUR_OFFSETS)
    n_in = hidden or n_types
    flow_weight = jax.random.normal(k_flow, (n_neighbours, n_in, 2)) / np.sqrt(n_neighbours * n_in)
    if not hidden:
        return Decoder(None, None, flow_weight, jnp.zeros(2))
    hidden_weight = jax.random.normal(k_hidden, (n_neighbours, n_types, hidden)) / np.sqrt(n_neighbours * n_types)
    return Decoder(hidden_weight, jnp.zeros(hidden), flow_weight, jnp.zeros(2))


def hex_convolve(x: jax.Array, weight: jax.Array, bias: jax.Array, neighbourhoods: jax.Array) -> jax.Array:
    """``(..., n_columns, c_in) -> (..., n_columns, c_out)``: each column's sum over
    itself and its neighbours of ``x @ weight[k]``; zero beyond the lattice."""
    padded = jnp.concatenate([x, jnp.zeros_like(x[..., :1, :])], axis=-2)
    return jnp.einsum("...nki,kio->...no", padded[..., neighbourhoods, :], weight) + bias


def normalize_per_type(features: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Batch normalization of ``(..., n_types, n_columns)`` features: zero mean and
    unit variance per type over everything else (sequences, frames, columns)."""
    axes = tuple(i for i in range(features.ndim) if i != features.ndim - 2)
    mean = features.mean(axis=axes, keepdims=True)
    return (features - mean) / jnp.sqrt(features.var(axis=axes, keepdims=True) + eps)


def decode_flow(features: jax.Array, decoder: Decoder, neighbourhoods: jax.Array) -> jax.Array:
    """Flow ``(..., n_columns, 2)`` from normalized features ``(..., n_types, n_columns)``."""
    hidden = jnp.swapaxes(features, -1, -2)
    if decoder.hidden_weight is not None:
        hidden = jax.nn.softplus(hex_convolve(hidden, decoder.hidden_weight, decoder.hidden_bias, neighbourhoods))
    return hex_convolve(hidden, decoder.flow_weight, decoder.flow_bias, neighbourhoods)


class LogTrainable(NamedTuple):
    """The optimizer's view of :class:`~connectofly.circuits.optic_lobe.Trainable`."""

    bias: jax.Array  # (n_types,) resting potentials
    log_time_const: jax.Array  # (n_types,) log s
    log_syn_strength: jax.Array  # (n_edge_types,)


STRENGTH_FLOOR = 1e-8  # log of an exact zero (an edge type with no synapse)


def to_log(trainable: ol.Trainable) -> LogTrainable:
    return LogTrainable(
        trainable.bias,
        jnp.log(trainable.time_const),
        jnp.log(jnp.maximum(trainable.syn_strength, STRENGTH_FLOOR)),
    )


def to_network(theta: LogTrainable) -> ol.Trainable:
    """Network parameters; strengths are positive by construction (flyvis clamps at 0)."""
    return ol.Trainable(theta.bias, jnp.exp(theta.log_time_const), jnp.exp(theta.log_syn_strength))


class TrainState(NamedTuple):
    theta: LogTrainable
    decoder: Decoder
    opt_state: optax.OptState
    step: jax.Array


def decoded_types(config: FlowConfig, connectome) -> tuple[str, ...]:
    """The output types ``config.decoded_types`` names, in its order (all output types if empty).

    Raises:
        ValueError: a name is not one of flyvis's output types.
    """
    outputs = ol.spec_of(connectome).output_types
    if not config.decoded_types:
        return outputs
    names = tuple(name.strip() for name in config.decoded_types.split(","))
    unknown = [name for name in names if name not in outputs]
    if unknown:
        raise ValueError(f"decoded_types: {unknown} are not output types; choose from {', '.join(outputs)}")
    return names


def output_index(connectome, types: tuple[str, ...]) -> np.ndarray:
    """(len(types), n_columns) neuron index of each of ``types`` per column."""
    return np.stack([ol.neurons_of_type(connectome, t) for t in types])


# Grey long enough for the resting voltages to converge: after 0.5 s they still
# move by up to 2e-3 (more than a moving texture moves the output types), after
# 2 s they agree with 8 s exactly in float32 (flyvis's initialization, extent 2).
GREY_SETTLING_S = 2.0


class Readout(NamedTuple):
    """Where the decoder reads the network, and where homeostasis measures it."""

    neurons: jax.Array  # (n_decoded_types, n_columns) neuron index, :func:`output_index`
    neighbourhoods: jax.Array  # (n_columns, 7), :func:`~connectofly.circuits.hex_lattice.neighbourhoods`
    central: jax.Array  # (n_types,) central neuron of each type
    held: jax.Array  # (n_types,) bool: the types homeostasis holds at threshold


def make_readout(connectome, config: FlowConfig) -> Readout:
    neurons = output_index(connectome, decoded_types(config, connectome))
    return Readout(jnp.asarray(neurons), jnp.asarray(hex_lattice.neighbourhoods(config.extent)),
                   jnp.asarray(ol.central_neurons(connectome)), jnp.asarray(ol.non_input_types(ol.spec_of(connectome))))


def flow_features(params: ol.OpticLobeParams, grey: ol.OpticLobeState, neurons: jax.Array,
                  movie: jax.Array, config: FlowConfig) -> jax.Array:
    """Rectified voltage change from grey ``(scored frames, n_decoded_types, n_columns)``
    of the output types over ``movie``, its first frame held for ``settle_frames`` first."""
    settled = ol.hold(params, grey, movie[0], config.dt, config.settle_frames)
    # no gradient through the settling: it only sets where the movie starts from
    _, voltages = ol.simulate(params, jax.lax.stop_gradient(settled), movie, config.dt, readout=neurons.ravel())
    rectified = jnp.maximum(voltages.reshape(-1, *neurons.shape), 0.0)
    return (rectified - jnp.maximum(grey.voltage[neurons], 0.0))[config.warmup_frames:]


def flow_loss(
    theta: LogTrainable,
    decoder: Decoder,
    graph: ol.Graph,
    readout: Readout,
    movies: jax.Array,
    flows: jax.Array,
    config: FlowConfig,
) -> jax.Array:
    """Mean squared flow error over sequences, scored frames and columns (or
    the column average, ``pool_columns``), normalized by ``max_speed**2``."""
    params = ol.OpticLobeParams(to_network(theta), graph)
    grey = jax.lax.stop_gradient(ol.steady_state(params, config.dt, duration=GREY_SETTLING_S))
    features = jax.vmap(lambda movie: flow_features(params, grey, readout.neurons, movie, config))(movies)
    estimate = decode_flow(normalize_per_type(features), decoder, readout.neighbourhoods)
    target = flows[:, config.warmup_frames:]
    if config.pool_columns:
        estimate, target = estimate.mean(axis=-2), target.mean(axis=-2)
    return jnp.mean((estimate - target) ** 2) / config.max_speed**2


def make_optimizer(config: FlowConfig) -> optax.GradientTransformation:
    """Adam with separate step sizes for the resting potentials, the rest of the
    network and the decoder, over ``(theta, decoder)`` pairs."""
    return optax.multi_transform(
        {"bias": optax.adam(config.bias_learning_rate),
         "network": optax.adam(config.learning_rate),
         "decoder": optax.adam(config.decoder_learning_rate)},
        lambda pair: (
            LogTrainable("bias", "network", "network"),
            jax.tree.map(lambda _: "decoder", pair[1]),
        ),
    )


def make_train_step(config: FlowConfig, optimizer: optax.GradientTransformation):
    """A jitted ``(state, graph, readout, movies, flows) -> (state, loss)``."""

    @jax.jit
    def train_step(state: TrainState, graph, readout, movies, flows):
        loss, grads = jax.value_and_grad(flow_loss, argnums=(0, 1))(
            state.theta, state.decoder, graph, readout, movies, flows, config
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, (state.theta, state.decoder))
        theta, decoder = optax.apply_updates((state.theta, state.decoder), updates)
        if config.homeostasis:
            params = ol.OpticLobeParams(to_network(theta), graph)
            grey = ol.steady_state(params, config.dt, GREY_SETTLING_S).voltage[readout.central]
            theta = theta._replace(bias=theta.bias - jnp.where(readout.held, grey, 0.0))
        return TrainState(theta, decoder, opt_state, state.step + 1), loss

    return train_step


# -- Training loop -------------------------------------------------------------------


def initial_state(config: FlowConfig, connectome, optimizer) -> TrainState:
    """flyvis's initialization with the time constants spread by ``tau_spread``
    (and the resting potentials at threshold, ``start_at_threshold``), and
    :func:`init_decoder`."""
    key_net, key_tau, key_dec = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    params = ol.init(key_net, connectome)
    params = params._replace(trainable=params.trainable._replace(
        syn_strength=params.trainable.syn_strength * config.strength_scale))
    if config.start_at_threshold:
        params = params._replace(trainable=ol.at_grey_voltage(params, connectome, config.dt, duration=GREY_SETTLING_S))
    theta = to_log(params.trainable)
    theta = theta._replace(
        log_time_const=theta.log_time_const
        + config.tau_spread * jax.random.normal(key_tau, theta.log_time_const.shape)
    )
    decoder = init_decoder(key_dec, len(decoded_types(config, connectome)), config.hidden_channels)
    return TrainState(theta, decoder, optimizer.init((theta, decoder)), jnp.array(0, jnp.int32))


def train(config: FlowConfig, out_dir: Path, resume: bool = True) -> list[float]:
    """Train for ``config.steps`` steps in total (resuming a checkpoint in
    ``out_dir`` if there is one); return the losses of this run's steps."""
    from tensorboardX import SummaryWriter

    connectome = ol.load_connectome(config.extent)
    optimizer = make_optimizer(config)
    state = initial_state(config, connectome, optimizer)  # refuses unknown decoded types before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    checkpoints = Checkpoints(out_dir / "checkpoints")
    if resume and checkpoints.latest_step() is not None:
        state = checkpoints.restore(state)
        log.info("resumed from %s at step %d", out_dir / "checkpoints", int(state.step))
    graph = ol.build_graph(connectome)
    readout = make_readout(connectome, config)
    x, y = (jnp.asarray(a) for a in stimuli.column_positions(config.extent))
    train_step = make_train_step(config, optimizer)
    data_key = jax.random.PRNGKey(config.seed + 1)
    losses: list[float] = []
    start = int(state.step)
    with SummaryWriter(str(out_dir / "tensorboard")) as writer, open_record(
        out_dir / "loss.csv", start, lambda row: int(row.split(",")[0]) + 1  # the row of step i ends step i + 1
    ) as loss_file:
        progress = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="BPTT")
        for step in progress:
            movies, flows = sample_batch(jax.random.fold_in(data_key, step), config, x, y)
            state, loss = train_step(state, graph, readout, movies, flows)
            losses.append(float(loss))
            if not np.isfinite(losses[-1]):
                raise FloatingPointError(f"loss became {losses[-1]} at step {step}")
            loss_file.write(f"{step},{losses[-1]}\n")
            writer.add_scalar("loss/flow_mse", losses[-1], step)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                checkpoints.save(step + 1, state)
    return losses


# Loss of always predicting zero flow when the background only translates and there
# are no objects: speeds are uniform in [0, max_speed] and directions uniform, so
# each component has E[v_i^2] = max_speed^2 / 6.
ZERO_FLOW_LOSS = 1.0 / 6.0


def zero_flow_loss(config: FlowConfig, n_sequences: int = 256) -> float:
    """The loss of always predicting zero flow, estimated on ``n_sequences`` of the
    sampler (the reference line of :func:`plot_loss` for any scene)."""
    x, y = (jnp.asarray(a) for a in stimuli.column_positions(config.extent))
    sampler = replace(config, batch=n_sequences)
    _, flows = sample_batch(jax.random.PRNGKey(config.seed + 2), sampler, x, y)
    flows = flows[:, config.warmup_frames:]
    if config.pool_columns:
        flows = flows.mean(axis=-2)
    return float(jnp.mean(flows**2)) / config.max_speed**2


def plot_loss(loss_csv: Path, window: int = 50, zero_flow: float = ZERO_FLOW_LOSS):
    """Loss per step, its running mean over ``window`` steps and ``zero_flow``,
    the loss of predicting zero flow (a Figure)."""
    from matplotlib.figure import Figure

    steps, losses = np.loadtxt(loss_csv, delimiter=",", ndmin=2).T
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps, losses, color="0.75", lw=0.5, label="batch")
    if len(losses) >= window:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, color="k", lw=1.2, label=f"mean of {window}")
    ax.axhline(zero_flow, color="tab:red", ls="--", lw=1.0, label="zero-flow prediction")
    ax.set_xlabel("step")
    ax.set_ylabel("flow MSE / max_speed$^2$")
    ax.legend(frameon=False)
    return fig


EVALUATION_SPEEDS = (9.7, 19.0)  # columns/s: two of flyvis's six edge speeds, to keep evaluation short


def network_tuning(trainable: ol.Trainable, connectome, dt: float) -> tuning.LobeTuning:
    """FRI, polarity and T4/T5 tuning of a network (:func:`connectofly.circuits.tuning.lobe_tuning`)."""
    params = ol.OpticLobeParams(trainable, ol.build_graph(connectome))
    return tuning.lobe_tuning(params, connectome, dt, speeds=EVALUATION_SPEEDS)


def evaluate(out_dir: Path, config: FlowConfig) -> dict:
    """Tuning of the checkpointed network beside that of the untrained one;
    writes ``trainable.npz`` (the trained parameters, :func:`connectofly.circuits.optic_lobe.load_trainable`),
    ``tuning.json`` (:meth:`connectofly.circuits.tuning.LobeTuning.summary` of both), ``polarity.md``,
    ``motion.md`` (T4/T5, flyvis's DSI) and plots."""
    connectome = ol.load_connectome(config.extent)
    optimizer = make_optimizer(config)
    initial = initial_state(config, connectome, optimizer)
    state = Checkpoints(out_dir / "checkpoints").restore(initial)
    trained = to_network(state.theta)
    ol.save_trainable(out_dir / "trainable.npz", trained, ol.spec_of(connectome))
    trained_tuning = network_tuning(trained, connectome, config.dt)
    initial_tuning = network_tuning(to_network(initial.theta), connectome, config.dt)
    result = {"step": int(state.step), "trained": trained_tuning.summary(), "initial": initial_tuning.summary()}
    (out_dir / "tuning.json").write_text(json.dumps(result, indent=2))
    tables = {"untrained": initial_tuning.polarity(), "trained": trained_tuning.polarity()}
    (out_dir / "polarity.md").write_text(tuning.polarity_markdown(tables, config.dt) + "\n")
    (out_dir / "motion.md").write_text(tuning.motion_markdown(trained_tuning.motion(), trained_tuning.edges) + "\n")
    trained_tuning.save_plots(out_dir)
    plot_loss(out_dir / "loss.csv", zero_flow=zero_flow_loss(config)).savefig(out_dir / "loss.png", dpi=120)
    return result

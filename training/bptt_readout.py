"""Backprop through time of the descending readout: eyes, optic lobes, legs and MJX physics.

One closed-loop rollout on the MJX backend is a single differentiable JAX
function of the connectome agent's readout (:func:`rollout`). Every vision
frame (2 ms): the compound eyes are ray-cast from ``mjx.Data``
(:func:`connectofly.envs.raycast.render_from_data`), both optic lobes take a
step (:meth:`~connectofly.agents.optic_lobe_vision.EyeLobes.frame`), the
readout's features drive the two leaky descending units, and for each control
step (1 ms) the descending drive steers NeuroMechFly v2's CPG
(:func:`~connectofly.agents.cpg.with_descending_drive`) whose action is held
for 10 MJX physics steps. ``jax.grad`` of :func:`loss` runs backwards through
all of it, the eyes and the lobes included: a change of the readout changes the
walk, the walk changes what the eyes see, and the gradient follows both paths.
(Through the eyes it sees shading: how the lit surfaces a ray already hits
change with the eye's pose; an object's silhouette moving across a ray fan
changes the image by hit/miss jumps, which have no gradient.) Frames are
checkpointed, so memory grows with the number of frames only.

The loss (:func:`approach_cost`, taxis and following alike) is the mean over
the rollout of the fly's distance to the task's object over the starting
distance, plus its heading error toward the object. What is trained is a gain on each weight of a starting readout and its
bias (``weight = start × (1 + gain)``): the gains keep the start's sparsity and
its per-feature scale (the features' magnitudes differ by orders of
magnitude, so a shared step size on the raw weights would be meaningless), so
this fine-tunes a readout (the embedded one by default) rather than building
one from nothing.

Differences from the episodes the readout is evaluated in (the MuJoCo C body,
``connectofly bench``): the MJX body is the mesh-free primitive NeuroMechFly,
its constraint solver is capped at 4 iterations (:mod:`connectofly.envs.mjx_grad`),
and the walker is the plain CPG without the hybrid walker's reflexes (they are
NumPy code). The trained readout is judged on the C body with the hybrid
walker, so it cannot profit unseen from these approximations.

    connectofly train --algo bptt --env VisualTaxis --policy connectome --updates 16 --horizon 0.3
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from connectofly.agents import mjx_closed_loop as loop
from connectofly.agents.connectome import (
    ConnectomeAgent,
    Readout,
    embedded_readout,
    load_readout,
    readout_lobe,
    resting_readout,
    save_readout,
)
from connectofly.agents.cpg import CPGState
from connectofly.circuits import optic_lobe as ol
from connectofly.envs import arena
from connectofly.envs.fly_env import DEFAULT_VISION_HZ
from connectofly.envs.mjx_grad import differentiable_model, differentiable_solver

VISION_HZ = DEFAULT_VISION_HZ  # one lobe step per 2 control steps, as in the C env
HELD_OUT_SEED = 2**31 - 1  # layouts of the before/after evaluation; training keys come from config.seed


@dataclass(frozen=True)
class BPTTConfig:
    task: str = "visual_taxis"
    updates: int = 16
    horizon: float = 0.3  # simulated seconds per rollout
    batch: int = 4  # rollouts (layouts × initial CPG phases) per gradient
    learning_rate: float = 0.02  # Adam, on the weight gains
    max_gradient_norm: float = 1.0  # per rollout (batch_gradient)
    seed: int = 0
    eval_layouts: int = 8  # fixed held-out layouts, evaluated before and after training
    gradient_window: float | None = None  # s; truncate the gradient through the body this often (rollout)

    def __post_init__(self) -> None:
        counts_ok = min(self.updates, self.batch, self.eval_layouts) >= 1
        window_ok = self.gradient_window is None or self.gradient_window > 0
        if not counts_ok or not window_ok or self.horizon < 2 / VISION_HZ or self.learning_rate <= 0:
            raise ValueError(f"updates, batch and eval_layouts must be >= 1, horizon >= {2 / VISION_HZ} s, "
                             f"learning_rate and gradient_window > 0; got {self}")

    @property
    def n_frames(self) -> int:
        return int(round(self.horizon * VISION_HZ))

    @property
    def window_frames(self) -> int | None:
        return None if self.gradient_window is None else max(1, int(round(self.gradient_window * VISION_HZ)))


@dataclass(frozen=True)
class World:
    """Everything fixed in a rollout: the task's scene on MJX and the connectome agent's eyes → descending units."""

    scene: loop.Scene  # the primitive body with the task's objects, solver capped (mjx_grad)
    agent: ConnectomeAgent  # its lobes and feature map; its readout is what is trained
    controller: loop.Controller

    @property
    def model(self):
        return self.scene.model

    @property
    def body(self):
        return self.scene.body

    @property
    def task(self):
        return self.scene.task

    @property
    def cell_types(self) -> tuple[str, ...]:
        return self.agent.cell_types

    @property
    def lobes(self):
        return self.agent.lobes


def make_world(task: str = "visual_taxis", lobe: str | Path | ol.Trainable = "trained") -> World:
    """The task's scene on MJX, with the optic lobes of :func:`~connectofly.agents.optic_lobe_vision.lobe_parameters`."""
    scene = loop.make_scene(task, differentiable_model)
    rest = resting_readout(len(ol.read_spec().output_types))  # a placeholder: rollouts take the readout
    agent = ConnectomeAgent.build(scene.directions, task, scene.control_dt, scene.vision_hz, rest, lobe=lobe)
    return World(scene, agent, loop.connectome_controller(agent))


class Trainable(NamedTuple):
    gain: jax.Array  # (2, n_types, N_REGIONS), weight = start weight × (1 + gain)
    bias: jax.Array  # ()


def apply(start: Readout, trainable: Trainable) -> Readout:
    return Readout(start.weight * (1.0 + trainable.gain), trainable.bias)


def _track(data, thorax: int):
    """What the cost needs of a state: thorax xy, its heading (unit xy), the task object's xy."""
    forward = data.xmat[thorax][:2, 0]
    return data.xpos[thorax, :2], forward / jnp.linalg.norm(forward), data.mocap_pos[0, :2]


def rollout(readout: Readout, world: World, trajectory: arena.Trajectory, phases: jax.Array, n_frames: int,
            window: int | None = None):
    """One closed-loop episode of ``n_frames`` vision frames from the neutral pose
    (:func:`~connectofly.agents.mjx_closed_loop.run_frames`; ``window`` truncates the
    gradient through the body).

    Returns the thorax's (n_frames + 1, 2) xy positions (mm) and heading (unit xy
    vectors), and the task object's (n_frames + 1, 2) xy positions at the same times.
    """
    scene = world.scene
    thorax = scene.body.index.thorax_body
    cpg = CPGState(phases, jnp.zeros_like(phases))
    start = loop.EpisodeStart(jnp.asarray(scene.model.key_qpos[0], jnp.float32), trajectory, cpg)
    state = loop.start_state(scene, world.controller, readout, start)
    track = functools.partial(_track, thorax=thorax)
    _, tracks = loop.run_frames(scene, world.controller, readout, trajectory, state, n_frames, track, window=window)
    at_frame_ends = jax.tree.map(lambda t: t[:, -1], tracks)
    return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), track(state.data), at_frame_ends)


def approach_cost(flies: jax.Array, headings: jax.Array, objects: jax.Array) -> jax.Array:
    """Mean over time of the distance to the object over the starting distance, plus the
    heading error ``1 - cos(bearing)`` (0 facing the object, 2 facing away).

    The heading term is there because a rollout is short (0.3 s: a few mm of a
    10 mm approach): turning toward the object changes the distance only to
    second order within it, walking faster to first order, so distance alone
    rewards speed and unlearns steering (measured: docs/training.md).
    """
    offset = objects - flies
    distance = jnp.linalg.norm(offset, axis=-1)
    cos_bearing = jnp.sum(offset * headings, axis=-1) / jnp.maximum(distance, 1e-6)
    return jnp.mean(distance) / distance[0] + jnp.mean(1.0 - cos_bearing)


def loss(trainable: Trainable, start: Readout, world: World, trajectory, phases, config: BPTTConfig) -> jax.Array:
    """:func:`approach_cost` of one rollout (one layout and initial CPG phases)."""
    with differentiable_solver():
        return approach_cost(*rollout(apply(start, trainable), world, trajectory, phases, config.n_frames,
                                      config.window_frames))


def batch_gradient(trainable: Trainable, start: Readout, world: World, trajectories, phases, config: BPTTConfig):
    """Mean loss and gradient over a batch, each rollout's gradient clipped to ``config.max_gradient_norm`` first.

    Contacts make rare, huge gradients (norms up to 1.4e11 in 0.3 s rollouts); clipping each
    rollout's keeps one of them from setting the direction of the whole update.
    """
    values, grads = jax.vmap(jax.value_and_grad(loss), in_axes=(None, None, None, 0, 0, None))(
        trainable, start, world, trajectories, phases, config)
    norms = jax.vmap(optax.tree.norm)(grads)
    scale = jnp.minimum(1.0, config.max_gradient_norm / jnp.maximum(norms, 1e-12))
    clipped = jax.tree.map(lambda g: jnp.mean(g * scale.reshape((-1,) + (1,) * (g.ndim - 1)), axis=0), grads)
    return jnp.mean(values), clipped, norms


def held_out_evaluator(world: World, config: BPTTConfig):
    """``readout -> (config.eval_layouts,)`` :func:`approach_cost` on fixed layouts and CPG
    phases (the same for every run and seed; training draws its own from ``config.seed``)."""
    trajectories, phases = sample_batch(world, jax.random.key(HELD_OUT_SEED), config.eval_layouts)
    one = lambda readout, tr, ph: approach_cost(*rollout(readout, world, tr, ph, config.n_frames))  # noqa: E731
    evaluate = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    return lambda readout: np.asarray(evaluate(readout, trajectories, phases))


@dataclass
class TrainingResult:
    readout: Readout
    losses: list[float]  # per update, before it
    gradient_norms: list[list[float]]  # per update, each rollout's before clipping
    compile_seconds: float
    seconds_per_update: float


def sample_batch(world: World, key: jax.Array, batch: int):
    """``batch`` task layouts and random initial CPG phases (the hybrid walker's start)."""
    k_layout, k_phase = jax.random.split(key)
    trajectories = jax.vmap(world.task.sample)(jax.random.split(k_layout, batch))
    return trajectories, jax.random.uniform(k_phase, (batch, 6), minval=0.0, maxval=2 * np.pi)


def train(world: World, start: Readout, config: BPTTConfig, progress: bool = True) -> TrainingResult:
    """Adam on the readout's gains and bias by :func:`loss`; fresh layouts every update."""
    optimizer = optax.adam(config.learning_rate)
    trainable = Trainable(jnp.zeros_like(start.weight), jnp.asarray(start.bias))
    state = optimizer.init(trainable)

    @jax.jit
    def update(trainable, state, trajectories, phases):
        value, grads, norms = batch_gradient(trainable, start, world, trajectories, phases, config)
        updates, state = optimizer.update(grads, state, trainable)
        return optax.apply_updates(trainable, updates), state, value, norms

    key = jax.random.key(config.seed)
    losses, norms = [], []
    began = time.perf_counter()
    compile_seconds = 0.0
    for i in tqdm(range(config.updates), desc="BPTT readout", unit="update", disable=not progress):
        key, sub = jax.random.split(key)
        trainable, state, value, norm = update(trainable, state, *sample_batch(world, sub, config.batch))
        if not np.isfinite(float(value)) or not np.isfinite(np.asarray(norm)).all():
            raise FloatingPointError(f"update {i}: loss {float(value)}, gradient norms {np.asarray(norm)}")
        losses.append(float(value))
        norms.append(np.asarray(norm).tolist())
        if i == 0:
            compile_seconds = time.perf_counter() - began
            began = time.perf_counter()
    per_update = (time.perf_counter() - began) / max(config.updates - 1, 1)
    return TrainingResult(apply(start, trainable), losses, norms, compile_seconds, per_update)


def run(config: BPTTConfig, out: str | Path, start_readout: str | Path | None = None, progress: bool = True) -> dict:
    """Train from ``start_readout`` (default: the one embedded for the task) and write
    ``readout.npz``, ``history.jsonl``, ``learning_curve.png`` and ``summary.json`` under ``out``."""
    from connectofly.training.ppo import plot_learning_curve

    out = Path(out)
    start_path = Path(start_readout or embedded_readout(config.task))
    world = make_world(config.task, readout_lobe(start_path))
    start = load_readout(start_path, world.cell_types)
    if not np.any(np.asarray(start.weight)):
        raise ValueError(f"{start_path} has no nonzero weight: the gains of BPTT fine-tune a readout, they cannot "
                         f"grow one from rest (train one by imitation first: connectofly dn-readout)")
    out.mkdir(parents=True, exist_ok=True)
    held_out = held_out_evaluator(world, config)
    before = held_out(start)
    result = train(world, start, config, progress)
    after = held_out(result.readout)
    save_readout(out / "readout.npz", result.readout, world.cell_types, world.lobes.params.trainable,
                 config=json.dumps({"trainer": "bptt", "start": str(start_path), **config.__dict__}))
    history = [{"update": i, "loss": value, "gradient_norms": norms, "log10_median_gradient_norm":
                float(np.log10(np.median(norms)))}
               for i, (value, norms) in enumerate(zip(result.losses, result.gradient_norms))]
    (out / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    plot_learning_curve(history, out / "learning_curve.png", ("update", "update"), [
        ("loss", "distance ratio + heading error", f"{config.task}: approach cost per update (fresh layouts)"),
        ("log10_median_gradient_norm", "log10 (before clipping)", "median gradient norm of the rollouts"),
    ])
    start_weight = np.asarray(start.weight)
    nonzero = start_weight != 0
    changed = np.asarray(result.readout.weight)[nonzero] / start_weight[nonzero]
    summary = {
        **config.__dict__, "start_readout": str(start_path), "n_frames": config.n_frames,
        "loss_first": result.losses[0], "loss_last": result.losses[-1],
        "held_out_loss_before": float(before.mean()), "held_out_loss_after": float(after.mean()),
        "held_out_layouts_improved": int((after < before).sum()),
        "held_out_loss_per_layout": {"before": before.round(4).tolist(), "after": after.round(4).tolist()},
        "compile_seconds": round(result.compile_seconds, 1), "seconds_per_update": round(result.seconds_per_update, 1),
        "weight_gain_range": [float(changed.min()), float(changed.max())],
        "bias": [float(start.bias), float(result.readout.bias)], "saved": str(out / "readout.npz"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary

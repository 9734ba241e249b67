"""Training the connectome agent's descending readout by imitation (DAgger).

The teacher maps the raw ommatidia to the (left, right) descending drive
(:func:`make_teacher`, one of ``TEACHERS``):

- ``visual_taxis``: the simple vision baseline (:mod:`connectofly.agents.visual_taxis`)
  computes the dark object's bearing and the drive that turns toward it; with
  nothing in view it labels walking straight (the baseline itself searches by
  turning left, and a readout taught that search turned left in every scene).
- ``visual_escape``: the same bearing, turned around (:func:`~connectofly.agents.visual_taxis.escape_drive`):
  the drive that turns away from the dark object, walking straight with nothing
  in view (``Looming``).
- ``ppo_mlp``: the PPO-MLP policy embedded for the task
  (:mod:`connectofly.agents.ppo_mlp`), which also sets the walking speed, e.g.
  to keep ``FollowObject``'s distance.

The student is the connectome agent (:mod:`connectofly.agents.connectome`): it
must produce the same drive from the optic lobes' output types alone.

1. **Collect.** Run visual-task episodes on the MuJoCo C env with the optic
   lobes in the loop; at each vision frame record the readout features and the
   teacher's drive. In round 0 the teacher steers; in later rounds the student
   steers with the readout of the round before (DAgger, Ross et al. 2011), so the
   data cover the states the student itself reaches.
2. **Fit.** Sparse linear regression of the drive on the standardized features
   (lasso by proximal gradient, :func:`fit_lasso`), on all rounds' data; each
   vision frame gives two rows, one per descending unit (the readout is
   bilaterally symmetric). The penalty is chosen from ``L1_GRID`` by R² on
   held-out episodes (one in four).
3. Report the fit on held-out episodes (R²) each round.

Training seeds start at ``TRAIN_SEED_OFFSET`` so they never coincide with the
benchmark's seeds (0, 1, ...).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from connectofly.agents.connectome import ConnectomeAgent, Readout, resting_readout, save_readout, unit_inputs
from connectofly.agents.optic_lobe_vision import lobe_parameters
from connectofly.agents.rollout import run_episode

log = logging.getLogger(__name__)
TRAIN_SEED_OFFSET = 1000
L1_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03)
TEACHERS = ("visual_taxis", "visual_escape", "ppo_mlp")

Teacher = Callable[[np.ndarray], np.ndarray]  # obs["vision"] (both eyes) → (left, right) drive


def make_teacher(name: str, env) -> Teacher:
    """The teacher ``name`` (one of ``TEACHERS``, see the module doc) for a visual FlyEnv."""
    from connectofly.agents.ppo_mlp import PPOMLPAgent
    from connectofly.agents.visual_taxis import STRAIGHT_DRIVE, VisualTaxisAgent, escape_drive, steering_drive

    if name == "visual_taxis":
        return VisualTaxisAgent.for_env(env, steer=functools.partial(steering_drive, search=STRAIGHT_DRIVE)).drive
    if name == "visual_escape":
        return VisualTaxisAgent.for_env(env, steer=escape_drive).drive
    if name == "ppo_mlp":
        return PPOMLPAgent.for_env(env).drive
    raise ValueError(f"teacher {name!r} is not one of {TEACHERS}")


@dataclass
class LabelledAgent:
    """The connectome agent with the teacher's drive recorded beside its features at every vision frame.

    ``student_steers``: the student's descending units steer (else the teacher's drive does).
    """

    student: ConnectomeAgent
    teacher: Teacher
    student_steers: bool
    features: list = field(default_factory=list)
    labels: list = field(default_factory=list)

    def default_params(self):
        return self.student.default_params()

    def init(self, rng: np.random.Generator):
        return self.student.init(rng)

    def act(self, params, carry, obs: dict, rng: np.random.Generator):
        carry, features = self.student.sense(carry, obs["vision"])
        if (int(carry.lobes.observations) - 1) % self.student.lobes.observations_per_frame == 0:
            self.features.append(np.asarray(unit_inputs(features)).reshape(2, -1))
            self.labels.append(self.teacher(obs["vision"]))
        drive = np.asarray(carry.dn, dtype=float) if self.student_steers else self.labels[-1]
        return self.student.move(params, carry, obs, drive, rng)


def collect(env, agent: LabelledAgent, seeds: list[int], progress: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per episode: (n_frames, 2 units, n_inputs) unit inputs and (n_frames, 2) drive labels."""
    episodes = []
    for seed in tqdm(seeds, desc=f"episodes ({'student' if agent.student_steers else 'teacher'} steers)",
                     disable=not progress, leave=False):
        agent.features, agent.labels = [], []
        run_episode(env, agent, seed=seed)
        episodes.append((np.array(agent.features, np.float32), np.array(agent.labels, np.float32)))
    return episodes


def soft_threshold(x: jax.Array, threshold: float) -> jax.Array:
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - threshold, 0.0)


def fit_lasso(features: np.ndarray, labels: np.ndarray, l1s, n_iter: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """``labels ≈ features @ weight + bias`` minimizing mean squared error/2 + ``l1`` × |weight|₁
    on standardized features (FISTA, Beck & Teboulle 2009, step 1/L), for each penalty in
    ``l1s`` at once: (len(l1s), n_features) weights and (len(l1s),) biases, in raw-feature
    units. The features are strongly correlated (neighbouring types and regions), so plain
    ISTA would need far more iterations; the penalties share each iteration's matrix
    product, several times cheaper than one fit after another."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = (features - mean) / std
    # The gradient x.T (x w - y) / n needs only these two (features², features), not the rows.
    gram = jnp.asarray(x.T @ x / len(x))
    target = jnp.asarray(x.T @ (labels - labels.mean()) / len(x))[:, None]
    step = 1.0 / float(jnp.linalg.eigvalsh(gram)[-1])  # 1 / Lipschitz constant
    thresholds = step * jnp.asarray(l1s, jnp.float32)  # one column per penalty

    def iterate(carry, _):
        w, momentum_point, t = carry
        new = soft_threshold(momentum_point - step * (gram @ momentum_point - target), thresholds)
        t_next = (1 + jnp.sqrt(1 + 4 * t**2)) / 2
        return (new, new + (t - 1) / t_next * (new - w), t_next), None

    zeros = jnp.zeros((x.shape[1], len(thresholds)))
    (w, _, _), _ = jax.lax.scan(iterate, (zeros, zeros, jnp.float32(1.0)), None, length=n_iter)
    weights = np.asarray(w).T / std
    return weights, labels.mean() - weights @ mean


def r_squared(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(1 - ((labels - predicted) ** 2).sum() / ((labels - labels.mean()) ** 2).sum())


def unit_rows(episodes) -> tuple[np.ndarray, np.ndarray]:
    """Both units' (inputs, label) rows of all frames of ``episodes``."""
    features = np.concatenate([f for f, _ in episodes])
    labels = np.concatenate([y for _, y in episodes])
    return features.reshape(-1, features.shape[-1]), labels.reshape(-1)


def fit_readout(train_rows, held_out_rows, n_types: int, n_iter: int) -> tuple[Readout, dict]:
    """The lasso fit (``n_iter`` iterations) with the penalty of ``L1_GRID`` that predicts ``held_out_rows`` best."""
    fits = dict(zip(L1_GRID, zip(*fit_lasso(*train_rows, L1_GRID, n_iter))))
    scores = {l1: r_squared(held_out_rows[0] @ w + b, held_out_rows[1]) for l1, (w, b) in fits.items()}
    best = max(scores, key=scores.get)
    weight, bias = fits[best]
    readout = Readout(jnp.asarray(weight.reshape(2, n_types, -1), jnp.float32), jnp.asarray(bias, jnp.float32))
    return readout, {"l1": best, "r2_held_out_by_l1": scores,
                     "r2_train": r_squared(train_rows[0] @ weight + bias, train_rows[1]),
                     "r2_held_out": scores[best], "nonzero_weights": int((weight != 0).sum()),
                     "weights": int(weight.size)}


@dataclass(frozen=True)
class ReadoutConfig:
    tasks: tuple[str, ...] = ("visual_taxis",)
    teacher: str = "visual_taxis"  # one of TEACHERS
    episodes_per_task: int = 12  # per round; one in four is held out
    rounds: int = 3
    duration: float = 2.0  # s per episode
    motor: str = "hybrid"  # the student's motor stage, one of MOTOR_STAGES: the data cover the states it reaches
    lobe: str = "trained"  # the optic lobes read out: one of LOBE_CHOICES, a trainable.npz or a flyvis checkpoint (lobe_parameters)
    lasso_iterations: int = 20000  # FISTA steps per fit (fit_lasso)


def train(config: ReadoutConfig, out: Path, progress: bool = True) -> dict:
    """Run the DAgger rounds; write ``readout.npz``, ``history.json`` and ``readout.png`` to ``out``."""
    from connectofly.circuits.optic_lobe import read_spec
    from connectofly.envs.fly_env import FlyEnv

    lobe = lobe_parameters(config.lobe)
    out.mkdir(parents=True, exist_ok=True)
    n_types = len(read_spec().output_types)
    envs = {task: FlyEnv(task=task, duration=config.duration) for task in config.tasks}
    students = {task: ConnectomeAgent.for_env(env, resting_readout(n_types), motor=config.motor, lobe=lobe)
                for task, env in envs.items()}
    teachers = {task: make_teacher(config.teacher, env) for task, env in envs.items()}
    n_held_out = max(1, config.episodes_per_task // 4)
    train_data, held_out, history, readout = [], [], [], None
    for round_ in range(config.rounds):
        for task, env in envs.items():
            student = students[task]
            if readout is not None:
                student.readout = readout
            agent = LabelledAgent(student, teachers[task], student_steers=readout is not None)
            first = TRAIN_SEED_OFFSET + 100 * round_ + 10 * config.tasks.index(task)
            episodes = collect(env, agent, list(range(first, first + config.episodes_per_task)), progress)
            train_data += episodes[n_held_out:]
            held_out += episodes[:n_held_out]
        train_rows = unit_rows(train_data)
        readout, fit = fit_readout(train_rows, unit_rows(held_out), n_types, config.lasso_iterations)
        history.append({"round": round_, "rows": len(train_rows[1]), **fit})
        log.info("round %d: %s", round_, json.dumps(history[-1]))
    cell_types = students[config.tasks[0]].cell_types
    save_readout(out / "readout.npz", readout, cell_types, lobe, config=json.dumps(config.__dict__))
    (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    plot_readout(readout, cell_types, out / "readout.png")
    return {"history": history, "readout": str(out / "readout.npz")}


def plot_readout(readout: Readout, cell_types: tuple[str, ...], path: Path) -> None:
    """Heat maps of the weights from each eye: cell type × region (both units share them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from connectofly.agents.connectome import ELEVATION_EDGES, N_SECTORS

    weight = np.asarray(readout.weight)
    limit = float(np.abs(weight).max()) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(8, 9), sharey=True)
    for ax, eye in zip(axes, ("ipsilateral", "contralateral")):
        image = ax.imshow(weight[("ipsilateral", "contralateral").index(eye)], cmap="RdBu_r", vmin=-limit,
                          vmax=limit, aspect="auto")
        ax.set_title(f"DN ← {eye} eye", fontsize=10)
        n_bands = len(ELEVATION_EDGES) + 1
        ax.set_xticks([n_bands * k + 1 for k in range(N_SECTORS)], [str(k) for k in range(N_SECTORS)])
        for k in range(1, N_SECTORS):
            ax.axvline(n_bands * k - 0.5, color="0.6", lw=0.5)
        ax.set_xlabel("azimuth sector, medial → lateral\n(within each: floor, horizon, sky)")
    axes[0].set_yticks(range(len(cell_types)), cell_types, fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="weight (drive per unit rate change)")
    fig.suptitle("Descending readout from optic-lobe output types (0 = pruned by the lasso)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)

"""Gradient through physics: a CPG trained for walking speed by backprop through MJX.

The objective is the thorax's forward displacement per second after a horizon
of control steps of the open-loop CPG (:func:`connectofly.agents.mjx_rollout.cpg_walk`)
on the primitive NeuroMechFly. ``jax.grad`` runs backwards through every MJX
physics step; each control step is checkpointed, so memory grows with the
number of control steps, not physics steps.

Trainable parameters (:class:`Gait`) are per-leg stepping frequencies,
amplitudes and phase offsets, squashed into plausible ranges (5-20 Hz, a
fraction 0.2-1.5 of the recorded step) so the optimizer cannot leave them.

The constraint solver's loop is made reverse-differentiable by
:mod:`connectofly.envs.mjx_grad` (a capped, masked scan of 4 Newton
iterations per physics step). The trained gait is then evaluated on the
unchanged model (full solver) and on the exact MuJoCo C model, so it cannot
profit unseen from the approximation.

    python -m connectofly.training.bptt_cpg --iterations 15 --horizon 0.1
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import optax
from tqdm.auto import tqdm

from connectofly.agents.cpg import TRIPOD, CPGParams, tripod_params
from connectofly.agents.mjx_rollout import cpg_walk
from connectofly.envs import mjx_physics
from connectofly.envs.mjx_grad import differentiable_model, differentiable_solver

FREQUENCY_RANGE = (5.0, 20.0)  # Hz; Drosophila steps at roughly 5-20 Hz
AMPLITUDE_RANGE = (0.2, 1.5)  # fraction of the recorded step


@dataclass(frozen=True)
class Gait:
    """Unconstrained trainable parameters (see :func:`to_cpg_params`)."""

    frequency_logits: jax.Array  # (6,)
    amplitude_logits: jax.Array  # (6,)
    phase_offsets: jax.Array  # (6,) rad; leg i leads at phase offset ψ_i


jax.tree_util.register_dataclass(Gait, data_fields=[f.name for f in fields(Gait)], meta_fields=[])


def _squash(logits, bounds):
    low, high = bounds
    return low + (high - low) * jax.nn.sigmoid(logits)


def _unsquash(values, bounds):
    low, high = bounds
    fraction = (np.asarray(values, float) - low) / (high - low)
    return np.log(fraction / (1 - fraction))


def initial_gait(frequency: float = 12.0, amplitude: float = 1.0) -> Gait:
    """NeuroMechFly v2's tripod (12 Hz, full recorded step, tripods in antiphase)."""
    n = len(TRIPOD)
    return Gait(
        jnp.asarray(_unsquash(np.full(n, frequency), FREQUENCY_RANGE), jnp.float32),
        jnp.asarray(_unsquash(np.full(n, amplitude), AMPLITUDE_RANGE), jnp.float32),
        jnp.asarray(np.pi * TRIPOD, jnp.float32),
    )


def to_cpg_params(gait: Gait) -> CPGParams:
    """CPG parameters of a gait; the coupling pattern is the tripod's.

    Phase biases φ_ij = ψ_j - ψ_i make the oscillators lock at the offsets ψ.
    """
    template = tripod_params()
    offsets = gait.phase_offsets
    return CPGParams(
        frequencies=_squash(gait.frequency_logits, FREQUENCY_RANGE),
        amplitudes=_squash(gait.amplitude_logits, AMPLITUDE_RANGE),
        coupling=jnp.asarray(template.coupling, offsets.dtype),
        phase_biases=offsets[None, :] - offsets[:, None],
        convergence=jnp.asarray(template.convergence, offsets.dtype),
    )


def forward_speed(gait: Gait, body: mjx_physics.MjxBody, model: mujoco.MjModel, initial_phases, n_steps: int):
    """Mean forward (x) speed over ``n_steps`` control steps of 1 ms, mm/s, and the final up-vector z."""
    positions, up_z = cpg_walk(body, model, to_cpg_params(gait), initial_phases, n_steps)
    return (positions[-1, 0] - positions[0, 0]) / (n_steps * 1e-3), up_z


def loss(gait: Gait, body, model, initial_phases, n_steps: int):
    """Negative mean speed over a batch of initial phases, plus a penalty for tipping over."""
    with differentiable_solver():
        speeds, up_z = jax.vmap(lambda p: forward_speed(gait, body, model, p, n_steps))(initial_phases)
    return -speeds.mean() + 100.0 * jnp.maximum(0.5 - up_z, 0.0).mean()


@dataclass
class TrainingResult:
    gait: Gait
    losses: list[float]  # per iteration, before the update
    gradient_norms: list[float]
    seconds_per_iteration: float
    compile_seconds: float


def train(
    body: mjx_physics.MjxBody,
    model: mujoco.MjModel,
    *,
    iterations: int,
    horizon_steps: int,
    batch: int = 2,
    learning_rate: float = 0.05,
    seed: int = 0,
    progress: bool = True,
) -> TrainingResult:
    """Adam on :func:`loss` by backprop through MJX, from the tripod gait.

    ``body``/``model`` should come from :func:`differentiable_model`. Each
    iteration draws ``batch`` fresh random initial phases. Gradients are
    clipped to norm 1: contacts make rare, huge gradients.
    """
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
    gait = initial_gait()
    state = optimizer.init(gait)

    @jax.jit
    def update(gait, state, phases):
        value, grads = jax.value_and_grad(loss)(gait, body, model, phases, horizon_steps)
        updates, state = optimizer.update(grads, state, gait)
        return optax.apply_updates(gait, updates), state, value, optax.global_norm(grads)

    key = jax.random.key(seed)
    losses, norms = [], []
    start = time.perf_counter()
    compile_seconds = 0.0
    for i in tqdm(range(iterations), desc="BPTT", unit="it", disable=not progress):
        key, sub = jax.random.split(key)
        phases = jax.random.uniform(sub, (batch, 6), minval=0.0, maxval=2 * np.pi)
        gait, state, value, norm = update(gait, state, phases)
        losses.append(float(value))
        norms.append(float(norm))
        if i == 0:
            compile_seconds = time.perf_counter() - start
            start = time.perf_counter()
    per_iteration = (time.perf_counter() - start) / max(iterations - 1, 1)
    return TrainingResult(gait, losses, norms, per_iteration, compile_seconds)


def evaluate_mjx(gaits: list[Gait], body, model, seeds: int = 4, n_steps: int = 1000) -> np.ndarray:
    """(len(gaits), seeds) forward speeds, mm/s, over ``n_steps`` ms on ``body``; one compile for all."""
    phases = jax.random.uniform(jax.random.key(1234), (seeds, 6), minval=0.0, maxval=2 * np.pi)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *gaits)
    per_gait = jax.vmap(lambda p, g: forward_speed(g, body, model, p, n_steps)[0], in_axes=(0, None))
    return np.asarray(jax.jit(jax.vmap(per_gait, in_axes=(None, 0)))(phases, stacked))


def evaluate_exact(gait: Gait, seeds: int = 4, duration: float = 1.0) -> np.ndarray:
    """Forward speeds (mm/s) of the same CPG on the exact MuJoCo C model, one per seed."""
    from connectofly.agents.cpg import CPGAgent
    from connectofly.agents.rollout import run_episode
    from connectofly.envs.fly_env import FlyEnv

    params = jax.tree.map(lambda x: np.asarray(x, np.float64), to_cpg_params(gait))
    env = FlyEnv(duration=duration)
    agent = CPGAgent(control_dt=env.control_dt, params=params)
    return np.array([run_episode(env, agent, seed=seed).mean_forward_speed() for seed in range(seeds)])


def describe(gait: Gait) -> dict:
    params = to_cpg_params(gait)
    return {
        "frequencies_hz": np.round(np.asarray(params.frequencies), 2).tolist(),
        "amplitudes": np.round(np.asarray(params.amplitudes), 3).tolist(),
        "phase_offsets_rad": np.round(np.asarray(gait.phase_offsets - gait.phase_offsets[0]) % (2 * np.pi), 3).tolist(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--horizon", type=float, default=0.1, help="simulated seconds per rollout")
    parser.add_argument("--batch", type=int, default=2, help="rollouts (initial phases) per gradient")
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--eval-seeds", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path("outputs/bptt_cpg"))
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.horizon <= 0:
        raise SystemExit("--iterations must be >= 1 and --horizon > 0")

    from connectofly.envs.body import build_primitive_model

    model = build_primitive_model()
    single = differentiable_model(model)
    result = train(
        mjx_physics.load(single), single, iterations=args.iterations, horizon_steps=int(round(args.horizon / 1e-3)),
        batch=args.batch, learning_rate=args.learning_rate,
    )
    full = mjx_physics.load(model)
    before, after = initial_gait(), result.gait
    summary = {
        "iterations": args.iterations,
        "horizon_s": args.horizon,
        "losses": [round(v, 3) for v in result.losses],
        "gradient_norms": [round(v, 3) for v in result.gradient_norms],
        "compile_seconds": round(result.compile_seconds, 1),
        "seconds_per_iteration": round(result.seconds_per_iteration, 2),
        "before": describe(before),
        "after": describe(after),
    }
    mjx_speeds = evaluate_mjx([before, after], full, model, args.eval_seeds)
    summary |= {
        "mjx_speed_before_mm_s": mjx_speeds[0].round(2).tolist(),
        "mjx_speed_after_mm_s": mjx_speeds[1].round(2).tolist(),
        "exact_speed_before_mm_s": evaluate_exact(before, args.eval_seeds).round(2).tolist(),
        "exact_speed_after_mm_s": evaluate_exact(after, args.eval_seeds).round(2).tolist(),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

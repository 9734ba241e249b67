"""PPO on the descending drive: an MLP from the photoreceptors to the walker's turning drive.

The policy acts in :class:`~connectofly.envs.drive_env.DriveEnv` (the MuJoCo C
body, its compound eyes, NeuroMechFly v2's hybrid walker; one decision per 50
ms). Episodes run in parallel worker processes (gymnasium's
``AsyncVectorEnv``); the policy samples on the host; the update is the MJX
trainer's, brax's clipped-surrogate loss with GAE (:func:`connectofly.training.ppo.sgd`),
jitted once. The physics cannot be batched on the C backend, so this trainer
is for the visual tasks, whose eyes the MJX env does not render yet.

    connectofly train --algo ppo --env VisualTaxis --updates 100
    connectofly bench --controllers ppo_mlp,connectome,visual_taxis

A run writes ``policy.npz`` after every update (:func:`save_policy`; load it
with :func:`load_policy`, or the ``ppo_mlp`` controller), ``history.jsonl`` and
``learning_curve.png``. Training seeds start at ``TRAIN_SEED_OFFSET`` so they
never coincide with the benchmark's seeds (0, 1, ...).
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from brax.training import types
from brax.training.acme import running_statistics
from tqdm.auto import tqdm

from connectofly.envs.drive_env import DECISION_DT, N_FEATURES, DriveEnv
from connectofly.training.ppo import (
    PPOConfig, init_normalizer, init_params, make_networks, make_optimizer, plot_learning_curve, sgd,
)

TRAIN_SEED_OFFSET = 1000
N_DRIVES = 2  # left, right
# Photoreceptor units (0-2). Regions whose reading barely varies in training
# (the sky) would otherwise be divided by ~0 and blow up off-distribution.
FEATURE_STD_FLOOR = 0.02

# The CPU-sized defaults for the drive policy: few, slow worlds (each decision
# is 50 ms of C physics), a short horizon (γ = 0.95 at 20 Hz: ~1 s), more
# exploration than for joint actions and small networks for 48 inputs.
DRIVE_PPO = PPOConfig(
    num_envs=8, unroll_length=30, num_minibatches=4, epochs=8, learning_rate=1e-3, entropy_cost=1e-3,
    discounting=0.95, gae_lambda=0.95, reward_scaling=0.1, initial_action_std=0.3,
    policy_hidden=(64, 64), value_hidden=(64, 64),
)


@dataclass(frozen=True)
class DrivePolicy:
    """A trained drive policy: ``policy(features) -> (2,)`` mean action in ``[-1, 1]``."""

    config: PPOConfig
    normalizer: running_statistics.RunningStatisticsState
    params: dict  # the policy network's parameters
    task: str
    decision_dt: float

    @functools.cached_property
    def _mean(self):
        networks = make_networks(N_FEATURES, N_DRIVES, self.config)
        dist = networks.parametric_action_distribution

        def mean(normalizer, params, features):
            logits = networks.policy_network.apply(normalizer, params, features)
            return jnp.clip(dist.create_dist(logits).loc, -1.0, 1.0)

        return jax.jit(mean)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self._mean(self.normalizer, self.params, jnp.asarray(features, jnp.float32)))


# -- saving and loading -----------------------------------------------------------


def _flatten(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _policy_template(config: PPOConfig):
    networks = make_networks(N_FEATURES, N_DRIVES, config)
    return init_normalizer(N_FEATURES), init_params(networks, jax.random.key(0)).policy


def save_policy(path: str | Path, config: PPOConfig, normalizer, policy_params, task: str, decision_dt: float) -> Path:
    """Write a drive policy (normalizer, policy network, config) to one ``.npz``."""
    from connectofly.training.ppo import config_dict

    meta = {"config": config_dict(config), "task": task, "decision_dt": decision_dt, "n_features": N_FEATURES}
    arrays = {f"normalizer{k}": v for k, v in _flatten(normalizer).items()}
    arrays |= {f"policy{k}": v for k, v in _flatten(policy_params).items()}
    path = Path(path)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, meta=np.array(json.dumps(meta)), **arrays)
    partial.replace(path)  # atomic: a reader never sees a half-written policy
    return path


def load_policy(path: str | Path) -> DrivePolicy:
    """A :class:`DrivePolicy` from :func:`save_policy`'s file."""
    with np.load(path) as saved:
        meta = json.loads(str(saved["meta"]))
        if meta["n_features"] != N_FEATURES:
            raise ValueError(f"{path} was trained on {meta['n_features']} features; this version has {N_FEATURES}")
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        config = PPOConfig(**fields)
        normalizer, params = _policy_template(config)

        def filled(prefix, template):
            paths, treedef = jax.tree_util.tree_flatten_with_path(template)
            leaves = [jnp.asarray(saved[prefix + jax.tree_util.keystr(p)]) for p, _ in paths]
            return jax.tree_util.tree_unflatten(treedef, leaves)

        return DrivePolicy(config, filled("normalizer", normalizer), filled("policy", params), meta["task"],
                           meta["decision_dt"])


# -- the training loop --------------------------------------------------------------


def make_envs(task: str, num_envs: int, duration: float, workers: bool = True) -> gym.vector.VectorEnv:
    """``num_envs`` DriveEnvs that restart on their own when an episode ends (same step)."""
    make = [functools.partial(DriveEnv, task, duration) for _ in range(num_envs)]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if workers:
        return gym.vector.AsyncVectorEnv(make, autoreset_mode=mode, context="spawn")
    return gym.vector.SyncVectorEnv(make, autoreset_mode=mode)


def _episode_stats(info: dict, done: np.ndarray) -> tuple[int, int, float]:
    """(episodes ended, of which reached the target, summed per-decision task success) of one vector step."""
    ended = int(done.sum())
    reached = 0
    if ended:
        final = info["final_info"]
        reached = int(sum(final["termination"][i] == "success" for i in np.flatnonzero(done)))
    return ended, reached, float(np.asarray(info.get("success", np.zeros(len(done))), float).sum())


def make_sampler(networks):
    """Jitted ``(normalizer, policy_params, obs, key) -> (raw action, log-prob, logits)``."""
    dist = networks.parametric_action_distribution

    def sample(normalizer, policy_params, obs, key):
        logits = networks.policy_network.apply(normalizer, policy_params, obs)
        raw = dist.sample_no_postprocessing(logits, jax.random.key_data(key))
        return dist.postprocess(raw), raw, dist.log_prob(logits, raw), logits

    return jax.jit(sample)


def collect(envs, sample, normalizer, policy_params, obs: np.ndarray, key: jax.Array, unroll_length: int):
    """``unroll_length`` decisions in every env: transitions (num_envs, T, ...), the next obs, stats."""
    steps, stats = [], np.zeros(4)  # reward sum, episodes ended, reached, per-decision success
    for step_key in jax.random.split(key, unroll_length):
        action, raw, log_prob, logits = sample(normalizer, policy_params, jnp.asarray(obs), step_key)
        next_obs, reward, terminated, truncated, info = envs.step(np.clip(np.asarray(action), -1.0, 1.0))
        done = terminated | truncated
        # The episode's own last observation, also where the env restarted.
        final_obs = np.stack([info["final_obs"][i] if ended else next_obs[i] for i, ended in enumerate(done)])
        steps.append((obs, raw, reward, done, final_obs, truncated, log_prob, logits))
        ended, reached, success = _episode_stats(info, done)
        stats += (reward.sum(), ended, reached, success)
        obs = next_obs
    # (num_envs, T, ...) float32 arrays; the logits may be a tuple (the distribution's parameters).
    stacked = jax.tree.map(lambda *x: jnp.asarray(np.stack(x, axis=1), jnp.float32), *steps)
    obs_t, raw_t, reward_t, done_t, next_t, trunc_t, logp_t, logits_t = stacked
    transitions = types.Transition(
        observation=obs_t,
        action=raw_t,
        reward=reward_t,
        discount=1.0 - done_t,
        next_observation=next_t,
        extras={
            "policy_extras": {"raw_action": raw_t, "log_prob": logp_t, "distribution_params": logits_t},
            "state_extras": {"truncation": trunc_t},
        },
    )
    return transitions, obs, stats


def train(task: str, updates: int, out: str | Path, config: PPOConfig = DRIVE_PPO, seed: int = 0,
          duration: float = 3.0, workers: bool = True, progress: bool = True) -> list[dict]:
    """Train a drive policy on ``task`` for ``updates`` PPO updates; returns the per-update history.

    Writes ``policy.npz`` (after every update), ``history.jsonl`` and ``learning_curve.png`` to ``out``.
    """
    if updates < 1:
        raise ValueError(f"updates={updates} must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    networks, optimizer = make_networks(N_FEATURES, N_DRIVES, config), make_optimizer(config)
    key_params, key = jax.random.split(jax.random.key(seed))
    params = init_params(networks, key_params)
    opt_state, normalizer = optimizer.init(params), init_normalizer(N_FEATURES)
    update_step = jax.jit(functools.partial(sgd, networks, optimizer, config))
    sample = make_sampler(networks)
    action_scale = jax.jit(lambda logits: networks.parametric_action_distribution.create_dist(logits).scale.mean())

    envs = make_envs(task, config.num_envs, duration, workers)
    history = []
    try:
        first_seed = TRAIN_SEED_OFFSET + seed * config.num_envs
        obs, _ = envs.reset(seed=list(range(first_seed, first_seed + config.num_envs)))
        bar = tqdm(range(updates), desc=f"PPO {task}", unit="update", disable=not progress)
        for update in bar:
            start = time.perf_counter()
            key, key_collect, key_sgd = jax.random.split(key, 3)
            transitions, obs, stats = collect(envs, sample, normalizer, params.policy, obs, key_collect,
                                              config.unroll_length)
            normalizer = running_statistics.update(normalizer, transitions.observation, std_min_value=FEATURE_STD_FLOOR)
            params, opt_state, losses = update_step(params, opt_state, normalizer, transitions, key_sgd)
            n = config.steps_per_update
            row = {
                "update": update + 1,
                "decisions": (update + 1) * n,
                "simulated_s": (update + 1) * n * DECISION_DT,
                "reward_per_step": stats[0] / n,
                "episodes_ended": int(stats[1]),
                "reached": int(stats[2]),
                "task_success_per_decision": stats[3] / n,
                "action_std": float(action_scale(transitions.extras["policy_extras"]["distribution_params"])),
                "seconds": time.perf_counter() - start,
                **{f"loss/{k}": float(v) for k, v in losses.items()},
            }
            history.append(row)
            bar.set_postfix(reward=f"{row['reward_per_step']:.2f}", reached=row["reached"])
            save_policy(out / "policy.npz", config, normalizer, params.policy, task, DECISION_DT)
            with (out / "history.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
    finally:
        envs.close()
    plot_learning_curve(history, out / "learning_curve.png", ("simulated_s", "simulated seconds (all worlds)"), [
        ("reward_per_step", "reward per control step", "training reward"),
        ("task_success_per_decision", "fraction of decisions", "task success while training"),
    ])
    return history

"""PPO on the descending drive: an MLP from the photoreceptors to the walker's turning drive.

The policy acts in :class:`~connectofly.envs.drive_env.DriveEnv` (the MuJoCo C
body, its compound eyes, NeuroMechFly v2's hybrid walker; one decision per 50
ms). Episodes run in parallel worker processes (gymnasium's
``AsyncVectorEnv``); the policy samples on the host; the update is the MJX
trainer's, brax's clipped-surrogate loss with GAE (:func:`connectofly.training.ppo.sgd`),
jitted once. The physics cannot be batched on the C backend, so this trainer
is for the visual tasks, whose eyes the MJX env does not render yet.

    connectofly train --algo ppo --env VisualTaxis --updates 100
    connectofly train --algo ppo --env VisualTaxis --policy connectome --updates 20
    connectofly bench --controllers ppo_mlp,connectome,visual_taxis

Two policies (``POLICIES``):

- ``mlp``: an MLP from the photoreceptor region means (the ``ppo_mlp``
  controller).
- ``connectome``: the connectome agent's descending readout
  (:class:`~connectofly.agents.connectome.Readout`: linear, bilaterally
  symmetric) over the optic lobes' output types, which run in the loop
  (``DriveEnv(observation="optic_lobe")``). It starts from a readout (by
  default the one embedded for the task, trained by imitation,
  ``connectofly dn-readout``; or ``"rest"``, blind straight walking) and PPO
  trains its weights, bias and the exploration noise; the result is a ``readout.npz`` the ``connectome``
  controller loads. Its weights are learnt in units of each feature's root
  mean square times the number of weights (:func:`calibrated`, from the first
  update's data): Adam moves every weight by about the learning rate per step,
  so this way one step moves the drive by at most about the learning rate, in
  all, whether a type's rate is small or large (with raw weights, 1e-4 moved
  the policy by a KL of 3.5 in the first update and sent the fly backwards). The descending units hold each decision's drive for 50 ms here; the
  agent low-passes it with ``DN_TAU`` (20 ms).

A run is a curriculum of one or more :class:`Stage` s (task, terrain, updates),
e.g. ``VisualTaxis`` (a static target) then ``FollowObject`` (a moving one), or
flat ground then ``mixed`` terrain: the policy, its optimizer and the
observation statistics carry over from stage to stage, the worlds are new.

    connectofly train --algo ppo --env FollowObject --curriculum VisualTaxis:40,FollowObject:80

A run writes ``policy.npz`` after every update (:func:`save_policy`; load it
with :func:`load_policy`, or the ``ppo_mlp`` controller), ``history.jsonl`` and
``learning_curve.png``. Training seeds start at ``TRAIN_SEED_OFFSET`` so they
never coincide with the benchmark's seeds (0, 1, ...).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from brax.training import types
from brax.training.acme import running_statistics
from tqdm.auto import tqdm

from brax.training import distribution
from brax.training import networks as brax_networks
from brax.training.agents.ppo import networks as ppo_networks

from connectofly.agents.connectome import (Readout, embedded_readout, load_readout, readout_lobe, resting_readout,
                                           save_readout)
from connectofly.agents.optic_lobe_vision import lobe_parameters
from connectofly.agents.visual_taxis import DRIVE_RANGE
from connectofly.envs.drive_env import DECISION_DT, N_FEATURES, STRAIGHT_DRIVE, DriveEnv
from connectofly.training.ppo import (
    PPOConfig, config_dict, init_normalizer, init_params, make_networks, make_optimizer, plot_learning_curve, sgd,
)

TRAIN_SEED_OFFSET = 1000
STAGE_SEED_STRIDE = 100_000  # a curriculum stage's worlds start this many seeds after the previous stage's
N_DRIVES = 2  # left, right
# Photoreceptor units (0-2). Regions whose reading barely varies in training
# (the sky) would otherwise be divided by ~0 and blow up off-distribution.
FEATURE_STD_FLOOR = 0.02
LOBE_FEATURE_SCALE_FLOOR = 1e-4  # rate units; the scale of a readout feature that stays ~0
POLICIES = ("mlp", "connectome")
OBSERVATION_OF = {"mlp": "photoreceptors", "connectome": "optic_lobe"}

# The CPU-sized defaults for the drive policy: few, slow worlds (each decision
# is 50 ms of C physics), a short horizon (γ = 0.95 at 20 Hz: ~1 s), more
# exploration than for joint actions and small networks for 48 inputs.
DRIVE_PPO = PPOConfig(
    num_envs=8, unroll_length=30, num_minibatches=4, epochs=8, learning_rate=1e-3, entropy_cost=1e-3,
    discounting=0.95, gae_lambda=0.95, reward_scaling=0.1, initial_action_std=0.3,
    policy_hidden=(64, 64), value_hidden=(64, 64),
)
# The readout's learning rate is in drive units per Adam step (see calibrated).
READOUT_PPO = dataclasses.replace(DRIVE_PPO, learning_rate=1e-2, initial_action_std=0.2)


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

    def mean_action(self, features: jax.Array) -> jax.Array:
        """The (2,) mean action for (N_FEATURES,) ``features``; traceable (inside jit and vmap)."""
        return self._mean(self.normalizer, self.params, jnp.asarray(features, jnp.float32))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.mean_action(features))


# -- the connectome readout as a PPO policy -----------------------------------------


def unit_from_drive(drive: jax.Array) -> jax.Array:
    """Inverse of :func:`~connectofly.envs.drive_env.drive_from_unit` (not clipped)."""
    low, high = DRIVE_RANGE
    excess = drive - STRAIGHT_DRIVE
    return jnp.where(excess >= 0, excess / (high - STRAIGHT_DRIVE), excess / (STRAIGHT_DRIVE - low))


def readout_of(policy_params: dict) -> Readout:
    """The :class:`Readout` (raw feature units) a readout policy's parameters stand for."""
    return Readout(policy_params["weight"] / jax.lax.stop_gradient(policy_params["scale"]), policy_params["bias"])


def readout_drive(readout: Readout, features: jax.Array) -> jax.Array:
    """(..., 2) target drive of both descending units for (..., 2 eyes, n_types, N_REGIONS) features
    (:func:`~connectofly.agents.connectome.dn_target`, batched)."""
    units = jnp.stack([features, jnp.flip(features, axis=-3)], axis=-4)  # ipsilateral eye first
    return jnp.einsum("...uetr,etr->...u", units, readout.weight) + readout.bias


def make_readout_networks(start: Readout, config: PPOConfig) -> ppo_networks.PPONetworks:
    """PPO networks whose policy mean is ``start``'s drive (in action units) and whose
    value network is the MLP over normalized features."""
    shape = start.weight.shape
    size = int(np.prod(shape))

    def init(_key):
        return {"weight": jnp.asarray(start.weight), "bias": jnp.asarray(start.bias),
                "scale": jnp.ones(shape[1:]), "log_std": jnp.full(N_DRIVES, np.log(config.initial_action_std))}

    def apply(_normalizer, params, obs):
        drive = readout_drive(readout_of(params), obs.reshape(*obs.shape[:-1], *shape))
        mean = unit_from_drive(drive)
        return mean, jnp.broadcast_to(jnp.exp(params["log_std"]), mean.shape)

    value = brax_networks.make_value_network(size, preprocess_observations_fn=running_statistics.normalize,
                                             hidden_layer_sizes=config.value_hidden)
    return ppo_networks.PPONetworks(brax_networks.FeedForwardNetwork(init, apply), value,
                                    distribution.NormalDistribution(event_size=N_DRIVES))


def calibrated(policy_params: dict, observations: jax.Array) -> dict:
    """The same policy with its weights re-expressed per (root mean square of each (type,
    region) feature in ``observations`` × number of weights). The r.m.s. is pooled over
    both eyes, so the readout stays symmetric; not the standard deviation, because a
    feature that barely varies around a large mean would get huge steps."""
    shape = policy_params["weight"].shape
    features = observations.reshape(-1, *shape)
    rms = jnp.maximum(jnp.sqrt(jnp.mean(features**2, axis=(0, 1))), LOBE_FEATURE_SCALE_FLOOR)
    scale = rms * np.prod(shape)
    return {**policy_params, "weight": readout_of(policy_params).weight * scale, "scale": scale}


# -- saving and loading -----------------------------------------------------------


def _flatten(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _policy_template(config: PPOConfig):
    networks = make_networks(N_FEATURES, N_DRIVES, config)
    return init_normalizer(N_FEATURES), init_params(networks, jax.random.key(0)).policy


def save_policy(path: str | Path, config: PPOConfig, normalizer, policy_params, task: str, decision_dt: float) -> Path:
    """Write a drive policy (normalizer, policy network, config) to one ``.npz``."""
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


class Stage(NamedTuple):
    """One stage of a training curriculum: ``updates`` PPO updates on ``task`` over ``terrain``."""

    task: str
    updates: int
    terrain: str = "flat"


def check_stages(stages: list[Stage]) -> None:
    """Raise ValueError for an empty curriculum, or a stage with an unknown task or
    terrain or fewer than one update."""
    from connectofly.envs.body import TERRAINS
    from connectofly.envs.visual_tasks import VISUAL_TASKS

    if not stages:
        raise ValueError("a curriculum needs at least one stage")
    for stage in stages:
        if stage.task not in VISUAL_TASKS:
            raise ValueError(f"stage {stage}: task {stage.task!r} is not a visual task; valid: {VISUAL_TASKS}")
        if stage.terrain not in TERRAINS:
            raise ValueError(f"stage {stage}: unknown terrain {stage.terrain!r}; valid terrains: {TERRAINS}")
        if stage.updates < 1:
            raise ValueError(f"stage {stage}: updates={stage.updates} must be at least 1")


def make_envs(task: str, num_envs: int, duration: float, workers: bool = True,
              observation: str = "photoreceptors", terrain: str = "flat", lobe="trained") -> gym.vector.VectorEnv:
    """``num_envs`` DriveEnvs that restart on their own when an episode ends (same step)."""
    make = [functools.partial(DriveEnv, task, duration, observation=observation, terrain=terrain, lobe=lobe)
            for _ in range(num_envs)]
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


def connectome_start(start_readout: str | Path | None, task: str, cell_types: tuple[str, ...]):
    """The readout PPO starts from (see :func:`train`) and the optic-lobe parameters it reads."""
    if start_readout == "rest":
        return resting_readout(len(cell_types)), lobe_parameters("trained")
    path = start_readout or embedded_readout(task)
    return load_readout(path, cell_types), readout_lobe(path)


def train(stages: list[Stage], out: str | Path, config: PPOConfig = DRIVE_PPO, seed: int = 0,
          duration: float = 3.0, workers: bool = True, progress: bool = True, policy: str = "mlp",
          start_readout: str | Path | None = None) -> list[dict]:
    """Train a drive policy (one of ``POLICIES``) through the curriculum ``stages``, one
    after the other; returns the per-update history (each row names its stage).

    Writes the policy after every update (``policy.npz`` for ``mlp``; ``readout.npz``
    for ``connectome``, which starts from ``start_readout``: a saved readout, ``"rest"``
    for one that ignores vision and walks straight on the trained lobes, or by default the
    one embedded for the first stage's task; it reads the lobes its start was fitted on),
    ``history.jsonl`` and ``learning_curve.png`` to ``out``.
    """
    check_stages(stages)
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {POLICIES}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if policy == "mlp":
        n_obs, networks, lobe = N_FEATURES, make_networks(N_FEATURES, N_DRIVES, config), "trained"  # no lobes used
    else:
        from connectofly.circuits.optic_lobe import read_spec

        cell_types = read_spec().output_types
        start, lobe = connectome_start(start_readout, stages[0].task, cell_types)
        n_obs, networks = start.weight.size, make_readout_networks(start, config)
    optimizer = make_optimizer(config)
    key_params, key = jax.random.split(jax.random.key(seed))
    params = init_params(networks, key_params)
    opt_state, normalizer = optimizer.init(params), init_normalizer(n_obs)
    update_step = jax.jit(functools.partial(sgd, networks, optimizer, config))
    sample = make_sampler(networks)
    action_scale = jax.jit(lambda logits: networks.parametric_action_distribution.create_dist(logits).scale.mean())

    def save(params, task: str) -> None:
        if policy == "mlp":
            save_policy(out / "policy.npz", config, normalizer, params.policy, task, DECISION_DT)
        else:
            save_readout(out / "readout.npz", readout_of(params.policy), cell_types, lobe, task=task,
                         trained_by="ppo", config=json.dumps(config_dict(config)))

    history: list[dict] = []
    bar = tqdm(total=sum(stage.updates for stage in stages), desc="PPO", unit="update", disable=not progress)
    for index, stage in enumerate(stages):
        bar.set_description(f"PPO {stage.task}" + ("" if stage.terrain == "flat" else f" on {stage.terrain}"))
        envs = make_envs(stage.task, config.num_envs, duration, workers, OBSERVATION_OF[policy], stage.terrain, lobe)
        try:
            first_seed = TRAIN_SEED_OFFSET + seed * config.num_envs + index * STAGE_SEED_STRIDE
            obs, _ = envs.reset(seed=list(range(first_seed, first_seed + config.num_envs)))
            for _ in range(stage.updates):
                update = len(history)
                start = time.perf_counter()
                key, key_collect, key_sgd = jax.random.split(key, 3)
                transitions, obs, stats = collect(envs, sample, normalizer, params.policy, obs, key_collect,
                                                  config.unroll_length)
                normalizer = running_statistics.update(normalizer, transitions.observation,
                                                       std_min_value=FEATURE_STD_FLOOR)
                if policy == "connectome" and update == 0:  # same policy, weights now per feature r.m.s.
                    params = params.replace(policy=calibrated(params.policy, transitions.observation))
                    opt_state = optimizer.init(params)
                params, opt_state, losses = update_step(params, opt_state, normalizer, transitions, key_sgd)
                n = config.steps_per_update
                row = {
                    "update": update + 1,
                    "stage": index,
                    "task": stage.task,
                    "terrain": stage.terrain,
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
                bar.update()
                bar.set_postfix(reward=f"{row['reward_per_step']:.2f}", reached=row["reached"])
                save(params, stage.task)
                with (out / "history.jsonl").open("a") as f:
                    f.write(json.dumps(row) + "\n")
        finally:
            envs.close()
    bar.close()
    plot_drive_curve(history, out / "learning_curve.png")
    return history


def plot_drive_curve(history: list[dict], path: Path) -> None:
    """Reward, and the task's success while training: for a task that ends on success the
    fraction of ended episodes that reached the target, else the fraction of decisions
    that succeed (e.g. tracking); dashed lines where a curriculum stage ends."""
    from connectofly.envs.visual_tasks import make_visual_task

    ends_on_success = {task: make_visual_task(task).ends_on_success for task in {row["task"] for row in history}}
    rows = [{**row, "success": row["reached"] / max(row["episodes_ended"], 1) if ends_on_success[row["task"]]
             else row["task_success_per_decision"]} for row in history]
    if all(ends_on_success.values()):
        success = ("success", "reached / episodes ended", "targets reached while training")
    elif not any(ends_on_success.values()):
        success = ("success", "fraction of decisions", "task success while training")
    else:
        success = ("success", "reached / ended, or fraction of decisions", "task success while training")
    stage_ends = [previous["simulated_s"] for previous, row in zip(rows, rows[1:]) if row["stage"] != previous["stage"]]
    plot_learning_curve(rows, path, ("simulated_s", "simulated seconds (all worlds)"),
                        [("reward_per_step", "reward per control step", "training reward"), success],
                        marks=stage_ends)

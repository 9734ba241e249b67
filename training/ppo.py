"""PPO on the MJX env, with brax's PPO loss and networks, resumable to the bit.

One update collects ``unroll_length`` control steps in each of ``num_envs``
worlds (:meth:`MjxEnv.autoreset_step`, vmapped), updates the observation
normalizer, then runs ``epochs`` passes of minibatch Adam steps on brax's
clipped-surrogate loss (:func:`brax.training.agents.ppo.losses.compute_ppo_loss`,
GAE, value and entropy terms). The policy is a Gaussian whose samples are
clipped to ``[-1, 1]`` and mapped onto the env's action bounds with 0 at the
neutral pose (:func:`connectofly.envs.brax_env.unit_to_action`); it starts
near that pose with small exploration noise (:class:`PPOConfig`).

Why not ``brax.training.agents.ppo.train``: its checkpoints hold the network
parameters only, so a resumed run restarts the optimizer's moments, the
worlds and the random stream. Here the whole :class:`TrainState` (parameters,
Adam state, normalizer, every world's physics state, keys, counters) is the
orbax checkpoint, so a resumed run makes exactly the update an uninterrupted
run would have made (``tests/test_ppo.py``).

    connectofly train --algo ppo --env Walk --updates 60 --num-envs 16
    tensorboard --logdir outputs/<run>/tensorboard
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax.training import types
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import losses as ppo_losses
from brax.training.agents.ppo import networks as ppo_networks
from tqdm.auto import tqdm

from connectofly.envs.brax_env import flat_observation_size, flatten_obs, unit_to_action
from connectofly.training.checkpoints import Checkpoints
from connectofly.training.records import open_record
from connectofly.envs.mjx_env import EnvState, MjxEnv, replicate, shard_worlds


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters. The defaults are a CPU-sized run; scale ``num_envs`` up on a GPU."""

    num_envs: int = 16
    unroll_length: int = 32  # control steps per world per update
    num_minibatches: int = 4  # minibatches split the worlds
    epochs: int = 4  # passes over one update's data
    learning_rate: float = 3e-4
    max_grad_norm: float = 1.0
    entropy_cost: float = 1e-3
    discounting: float = 0.97
    gae_lambda: float = 0.95
    clipping_epsilon: float = 0.2
    reward_scaling: float = 0.1
    initial_action_std: float = 0.1  # the policy's exploration noise at the start, in [-1, 1] action units
    initial_mean_scale: float = 0.01  # init scale of the policy's output layer: start near the neutral pose
    policy_hidden: tuple[int, ...] = (128, 128)
    value_hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        for name in ("num_envs", "unroll_length", "num_minibatches", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if not self.initial_action_std > 0:
            raise ValueError(f"initial_action_std={self.initial_action_std} must be positive")
        if self.num_envs % self.num_minibatches:
            raise ValueError(
                f"num_envs={self.num_envs} must be a multiple of num_minibatches={self.num_minibatches} "
                "(minibatches split the worlds)"
            )

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.unroll_length


# -- the learner: networks, optimizer and the PPO minibatch updates -----------------
# Shared by the MJX loop below and the host-stepped loop (training/ppo_drive.py).


def make_networks(observation_size: int, action_size: int, config: PPOConfig) -> ppo_networks.PPONetworks:
    """brax's PPO policy and value MLPs over normalized observations."""
    return ppo_networks.make_ppo_networks(
        observation_size,
        action_size,
        preprocess_observations_fn=running_statistics.normalize,
        policy_hidden_layer_sizes=config.policy_hidden,
        value_hidden_layer_sizes=config.value_hidden,
        # A Gaussian with a learned, state-independent log-std, clipped to
        # [-1, 1] by the caller's action map; a near-zero output layer so the
        # untrained policy's mean is the neutral action (Andrychowicz et al.
        # 2021, "What matters in on-policy RL", recommend both).
        distribution_type="normal",
        noise_std_type="log",
        init_noise_std=config.initial_action_std,
        mean_kernel_init_fn=functools.partial(
            jax.nn.initializers.variance_scaling, config.initial_mean_scale, "fan_in", "uniform"
        ),
    )


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate))


def init_params(networks: ppo_networks.PPONetworks, key: jax.Array) -> ppo_losses.PPONetworkParams:
    """Fresh network weights, every array strongly typed as a restored checkpoint's are
    (brax makes the policy's log-std weakly typed): the update compiled for a fresh
    run's state then also fits a resumed one, and XLA's cache finds it."""
    key_policy, key_value = jax.random.split(key)
    params = ppo_losses.PPONetworkParams(
        policy=networks.policy_network.init(jax.random.key_data(key_policy)),
        value=networks.value_network.init(jax.random.key_data(key_value)),
    )
    return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), params)


def init_normalizer(observation_size: int) -> running_statistics.RunningStatisticsState:
    return running_statistics.init_state(specs.Array((observation_size,), jnp.dtype("float32")))


def sgd(networks, optimizer, config: PPOConfig, params, opt_state, normalizer, transitions, key):
    """``epochs`` passes of minibatch Adam steps on brax's clipped-surrogate loss.

    ``transitions`` are (num_envs, T, ...) trajectories; minibatches split the worlds.
    """

    def loss(params, data, key):
        return ppo_losses.compute_ppo_loss(
            params, normalizer, data, jax.random.key_data(key), networks,
            entropy_cost=config.entropy_cost, discounting=config.discounting, reward_scaling=config.reward_scaling,
            gae_lambda=config.gae_lambda, clipping_epsilon=config.clipping_epsilon,
        )

    grad_fn = jax.value_and_grad(loss, has_aux=True)

    def minibatch_step(carry, minibatch):
        params, opt_state, key = carry
        key, key_loss = jax.random.split(key)
        (_, metrics), grads = grad_fn(params, minibatch, key_loss)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), metrics

    def epoch(carry, epoch_key):
        key_perm, key_steps = jax.random.split(epoch_key)
        order = jax.random.permutation(key_perm, config.num_envs)
        minibatches = jax.tree.map(
            lambda x: x[order].reshape(config.num_minibatches, -1, *x.shape[1:]), transitions
        )
        params, opt_state = carry
        (params, opt_state, _), metrics = jax.lax.scan(minibatch_step, (params, opt_state, key_steps), minibatches)
        return (params, opt_state), metrics

    (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, config.epochs))
    return params, opt_state, jax.tree.map(jnp.mean, metrics)


@dataclass(frozen=True)
class TrainState:
    """Everything a PPO run needs to continue, as one PyTree (the checkpoint)."""

    params: ppo_losses.PPONetworkParams
    opt_state: optax.OptState
    normalizer: running_statistics.RunningStatisticsState
    env_state: EnvState  # (num_envs, ...) worlds
    episode_return: jax.Array  # (num_envs,) return so far of each world's running episode
    key: jax.Array
    update: jax.Array  # updates done


jax.tree_util.register_dataclass(TrainState, data_fields=[f.name for f in fields(TrainState)], meta_fields=[])


@dataclass(frozen=True)
class PPO:
    """A PPO learner bound to an env and a config: networks, optimizer, update step."""

    env: MjxEnv
    config: PPOConfig
    networks: ppo_networks.PPONetworks = field(init=False)
    optimizer: optax.GradientTransformation = field(init=False)
    observation_size: int = field(init=False)
    _compiled: dict = field(init=False, default_factory=dict)  # the compiled update, made once

    def __post_init__(self) -> None:
        size = flat_observation_size(self.env)
        object.__setattr__(self, "observation_size", size)
        object.__setattr__(self, "networks", make_networks(size, int(self.env.action_low.shape[0]), self.config))
        object.__setattr__(self, "optimizer", make_optimizer(self.config))

    # -- state ------------------------------------------------------------------

    def init(self, seed: int) -> TrainState:
        """Fresh networks and ``num_envs`` freshly reset worlds.

        The worlds are sharded across the local devices
        (:func:`~connectofly.envs.mjx_env.shard_worlds`) and the rest replicated
        on each: the jitted update steps each device's worlds there. Every array
        is placed as a restored checkpoint's is, so the update compiled for a
        fresh run also serves a resumed one (and XLA's cache finds it).
        """
        n_devices = len(jax.local_devices())
        if self.config.num_envs % n_devices:
            raise ValueError(f"num_envs={self.config.num_envs} must be a multiple of the {n_devices} local devices")
        key_params, key_envs, key = jax.random.split(jax.random.key(seed), 3)
        params = init_params(self.networks, key_params)
        env_state, episode_return = shard_worlds((
            self.env.batch_reset(jax.random.split(key_envs, self.config.num_envs)),
            jnp.zeros(self.config.num_envs, jnp.float32),
        ))
        params, opt_state, normalizer, key, update = replicate((
            params, self.optimizer.init(params), init_normalizer(self.observation_size), key, jnp.int32(0)))
        return TrainState(params=params, opt_state=opt_state, normalizer=normalizer, env_state=env_state,
                          episode_return=episode_return, key=key, update=update)

    # -- one update -------------------------------------------------------------

    def _collect(self, state: TrainState, key: jax.Array):
        """``unroll_length`` steps in every world: transitions (num_envs, T, ...) and episode stats."""
        dist = self.networks.parametric_action_distribution
        to_action = jax.vmap(functools.partial(unit_to_action, self.env))

        def one_step(carry, step_key):
            env_state, episode_return = carry
            obs = jax.vmap(flatten_obs)(env_state.obs)
            logits = self.networks.policy_network.apply(state.normalizer, state.params.policy, obs)
            raw = dist.sample_no_postprocessing(logits, jax.random.key_data(step_key))
            action = dist.postprocess(raw)
            next_state = jax.vmap(self.env.autoreset_step)(env_state, to_action(action))
            done = next_state.done
            episode_return = episode_return + next_state.reward
            transition = types.Transition(
                observation=obs,
                action=action,
                reward=next_state.reward,
                discount=1.0 - done.astype(jnp.float32),
                # The episode's own last observation, also where autoreset began a new one.
                next_observation=jax.vmap(flatten_obs)(next_state.info["final_obs"]),
                extras={
                    "policy_extras": {"raw_action": raw, "log_prob": dist.log_prob(logits, raw), "distribution_params": logits},
                    "state_extras": {"truncation": next_state.info["truncated"].astype(jnp.float32)},
                },
            )
            stats = {
                "finished_return": jnp.where(done, episode_return, 0.0).sum(),
                "episodes": done.sum(),
                **{name: value.sum() for name, value in next_state.metrics.items()},
            }
            return (next_state, jnp.where(done, 0.0, episode_return)), (transition, stats)

        keys = jax.random.split(key, self.config.unroll_length)
        (env_state, episode_return), (transitions, stats) = jax.lax.scan(
            one_step, (state.env_state, state.episode_return), keys
        )
        transitions = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), transitions)  # (num_envs, T, ...)
        return env_state, episode_return, transitions, jax.tree.map(jnp.sum, stats)

    def update(self, state: TrainState) -> tuple[TrainState, dict]:
        """One PPO update (pure; jit it). Returns the next state and scalar metrics."""
        key, key_collect, key_sgd = jax.random.split(state.key, 3)
        env_state, episode_return, transitions, stats = self._collect(state, key_collect)
        normalizer = running_statistics.update(state.normalizer, transitions.observation)
        params, opt_state, loss_metrics = sgd(
            self.networks, self.optimizer, self.config, state.params, state.opt_state, normalizer, transitions, key_sgd
        )
        n = self.config.steps_per_update
        episodes = stats.pop("episodes")
        finished_return = stats.pop("finished_return")
        metrics = {
            "reward_per_step": transitions.reward.mean(),
            # Mean return of the episodes that ended during this update (NaN if none did).
            "episode_return": jnp.where(episodes > 0, finished_return / jnp.maximum(episodes, 1), jnp.nan),
            "episodes_ended": episodes.astype(jnp.float32),
            **{f"mean_{name}": value / n for name, value in stats.items()},
            **{f"loss/{name}": value for name, value in loss_metrics.items()},
        }
        next_state = TrainState(
            params=params, opt_state=opt_state, normalizer=normalizer, env_state=env_state,
            episode_return=episode_return, key=key, update=state.update + 1,
        )
        return next_state, metrics

    def compiled_update(self, like: TrainState) -> tuple[Callable, float]:
        """:meth:`update`, jitted and compiled for states like ``like``, and the seconds compiling took (0 when cached)."""
        if "update" in self._compiled:
            return self._compiled["update"], 0.0
        start = time.perf_counter()
        self._compiled["update"] = jax.jit(self.update).lower(like).compile()
        return self._compiled["update"], time.perf_counter() - start


# -- checkpoints ------------------------------------------------------------------


# -- the training loop ---------------------------------------------------------------


@dataclass
class TrainResult:
    state: TrainState
    history: list[dict]  # one dict of floats per update (with "update" and "env_steps")
    compile_seconds: float
    seconds_per_update: float


def train(
    ppo: PPO,
    updates: int,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    log_dir: str | Path | None = None,
    progress: bool = True,
    history_path: str | Path | None = None,
) -> TrainResult:
    """Run PPO to ``updates`` updates in all, resuming from ``checkpoint_dir`` if it holds one.

    Scalars go to TensorBoard under ``log_dir`` (``tensorboardX``), one point
    per update at x = environment steps, and each update's row of the history
    to ``history_path`` (JSON lines) as it is made; a resumed run first drops
    the rows of the updates after its checkpoint (:func:`~connectofly.training.records.open_record`).
    """
    if updates < 1:
        raise ValueError(f"updates={updates} must be at least 1")
    state = ppo.init(seed)
    checkpoints = Checkpoints(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoints is not None and checkpoints.latest_step() is not None:
        state = checkpoints.restore(state)
    writer = None
    if log_dir is not None:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    compiled, compile_seconds = ppo.compiled_update(state)

    history = []
    first = int(state.update)
    history_file = None
    if history_path is not None:
        history_file = open_record(Path(history_path), first, lambda line: json.loads(line)["update"])
    bar = tqdm(range(first, updates), desc="PPO", unit="update", disable=not progress, initial=first, total=updates)
    run_start = time.perf_counter()
    for _ in bar:
        state, metrics = compiled(state)
        row = {name: float(value) for name, value in metrics.items()}
        row["update"] = int(state.update)
        row["env_steps"] = int(state.update) * ppo.config.steps_per_update
        history.append(row)
        if history_file is not None:
            history_file.write(json.dumps(row) + "\n")
        bar.set_postfix(reward=f"{row['reward_per_step']:.2f}", speed=f"{row['mean_forward_speed']:.1f}")
        if writer is not None:
            for name, value in row.items():
                if name not in ("update", "env_steps") and np.isfinite(value):  # no episode ended: no return
                    writer.add_scalar(name, value, row["env_steps"])
        if checkpoints is not None and (row["update"] % checkpoint_every == 0 or row["update"] == updates):
            checkpoints.save(int(state.update), state)
    seconds_per_update = (time.perf_counter() - run_start) / max(len(history), 1)
    for file in (writer, history_file):
        if file is not None:
            file.close()
    return TrainResult(state, history, compile_seconds, seconds_per_update)


def evaluate(ppo: PPO, state: TrainState, seconds: float, seed: int = 0, frame_every: int = 0, stochastic: bool = False):
    """The policy in one fresh world for ``seconds``: its mean action, or sampled as in training.

    Returns (mean forward speed mm/s, summed reward, qpos every ``frame_every``
    control steps as (n_frames, nq), or an empty array when ``frame_every`` is 0).
    Steps after a flip or divergence are left out.
    """
    n_steps = max(1, int(round(seconds / ppo.env.control_dt)))
    rollout = ppo._compiled.get(("evaluate", n_steps))
    if rollout is None:
        rollout = ppo._compiled[("evaluate", n_steps)] = jax.jit(functools.partial(_policy_rollout, ppo, n_steps))
    speeds, rewards, done, qpos = jax.device_get(
        rollout(state.normalizer, state.params.policy, jax.random.key(seed), jnp.float32(stochastic))
    )
    alive = np.cumsum(done) - done == 0
    frames = qpos[alive][::frame_every] if frame_every else np.zeros((0, qpos.shape[1]))
    return float(speeds[alive].mean()), float(rewards[alive].sum()), frames


def _policy_rollout(ppo: PPO, n_steps: int, normalizer, policy_params, key, noise):
    """Per-step forward speed, reward, done and qpos of one episode; ``noise`` 0 = mean action, 1 = sampled."""
    env, dist = ppo.env, ppo.networks.parametric_action_distribution
    key_reset, key_steps = jax.random.split(key)

    def one_step(env_state, step_key):
        logits = ppo.networks.policy_network.apply(normalizer, policy_params, flatten_obs(env_state.obs))
        action_dist = dist.create_dist(logits)
        action = action_dist.loc + noise * action_dist.scale * jax.random.normal(step_key, action_dist.loc.shape)
        next_state = env.step(env_state, unit_to_action(env, action))
        return next_state, (next_state.metrics["forward_speed"], next_state.reward, next_state.done, next_state.data.qpos)

    return jax.lax.scan(one_step, env.reset(key_reset), jax.random.split(key_steps, n_steps))[1]


def plot_learning_curve(history: list[dict], path: str | Path, x: tuple[str, str],
                        panels: list[tuple[str, str, str]], marks: list[float] = ()) -> None:
    """One panel per ``(metric, y label, title)`` of ``history`` rows against ``x = (key, label)``;
    dashed vertical lines at the x values ``marks``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = np.array([row[x[0]] for row in history])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), constrained_layout=True, squeeze=False)
    for ax, (metric, ylabel, title) in zip(axes[0], panels):
        ax.plot(xs, [row[metric] for row in history])
        ax.axhline(0, color="0.6", lw=0.8)
        for mark in marks:
            ax.axvline(mark, color="0.4", lw=0.8, ls="--")
        ax.set(xlabel=x[1], ylabel=ylabel, title=title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def config_dict(config: PPOConfig) -> dict:
    """The config as JSON-ready values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}

"""Tune the VNC's motor-neuron stage with the body in the loop: evolution strategies on the C physics.

The gait is trained in the air (:mod:`connectofly.training.vnc_walk`) against
NeuroMechFly's recorded step; what walks on the body also depends on what the
air does not show (ground contact, load, slipping). This stage closes that gap
without gradients through contacts: it searches, on the exact MuJoCo C body,
for per leg segment and motor pool (channel side, e.g. the middle legs'
tibia extensors) a change of the MNs' excitability (a factor ``exp(x)``) and
of their resting drive (``+ y``) that makes the fly walk faster.

The search is OpenAI-style evolution strategies (Salimans et al. 2017,
arXiv:1703.03864): antithetic Gaussian perturbations of the offsets, fitness
per candidate = mean forward speed over the configured drives and seeds
minus a penalty for a fall, centred ranks, and an Adam step along the
estimated gradient. Episodes run in worker processes.

Only ``motor_gain`` and ``motor_bias`` change. Excitabilities stay positive
(they scale ``softplus``'s output), so Dale's law and the synapse counts are
untouched; the checks run after every generation anyway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.circuits import motor_map, vnc
from connectofly.training.records import open_record
from connectofly.training.workers import worker_pool


class BodyTuneConfig(NamedTuple):
    drives: tuple[float, ...] = (1.5, 2.0)  # forward drives every candidate walks at
    seeds: tuple[int, ...] = (0,)  # episode seeds (reset noise) per drive
    duration: float = 1.5  # s per episode
    population: int = 16  # candidates per generation (antithetic pairs)
    generations: int = 12
    sigma: float = 0.1  # perturbation s.d. of the log-excitability and bias offsets
    learning_rate: float = 0.03  # Adam, on the offsets
    fall_penalty: float = 10.0  # mm/s taken off an episode that ends with the fly flipped
    proprioception: bool = False  # the body's sensors into the network (VNCAgent's default: off)
    workers: int = 2
    seed: int = 0


def pools(mmap: motor_map.MotorMap) -> np.ndarray:
    """The motor pools (channel × side slots) that hold MNs, in slot order."""
    return np.unique(np.asarray(mmap.slot))


def with_offsets(params: vnc.VNCParams, mmap: motor_map.MotorMap, offsets: np.ndarray) -> vnc.VNCParams:
    """Apply (2, 3, n_pools) offsets: row 0 log-excitability factors, row 1 resting-drive shifts per segment."""
    slot = np.asarray(mmap.slot)
    column = np.searchsorted(pools(mmap), slot)  # pool index of each MN
    t = params.trainable
    excitability = jax.nn.softplus(t["motor_gain"]) * jnp.exp(jnp.asarray(offsets[0][:, column], jnp.float32))
    trainable = {**t, "motor_gain": jnp.log(jnp.expm1(excitability)),
                 "motor_bias": t["motor_bias"] + jnp.asarray(offsets[1][:, column], jnp.float32)}
    return params._replace(trainable=trainable)


def centred_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` mapped to [-0.5, 0.5] (ties broken by order)."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x)] = np.arange(len(x))
    return ranks / max(len(x) - 1, 1) - 0.5


class _Adam:
    """Adam ascent on a numpy vector (state kept as arrays so it can be saved)."""

    def __init__(self, size: int, learning_rate: float, b1: float = 0.9, b2: float = 0.999):
        self.lr, self.b1, self.b2 = learning_rate, b1, b2
        self.m, self.v, self.t = np.zeros(size), np.zeros(size), 0

    def step(self, gradient: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * gradient
        self.v = self.b2 * self.v + (1 - self.b2) * gradient ** 2
        m_hat, v_hat = self.m / (1 - self.b1 ** self.t), self.v / (1 - self.b2 ** self.t)
        return self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)


# -- Worker processes: each loads the model once --------------------------------------

_WORKER: dict = {}


class _WithParams:
    """An agent run with other parameters than its own (one jitted step serves every candidate)."""

    def __init__(self, agent, params):
        self.agent, self.params = agent, params

    def default_params(self):
        return self.params

    def init(self, rng):
        return self.agent.init(rng)

    def act(self, params, carry, obs, rng):
        return self.agent.act(params, carry, obs, rng)


def _init_worker(params_path: str, proprioception: bool, duration: float) -> None:
    from connectofly.cli.train import configure_libraries
    from connectofly.envs.fly_env import FlyEnv
    from connectofly.training import vnc_evaluate

    configure_libraries()
    model = vnc_evaluate.load_model(params_path)
    env = FlyEnv(duration=duration)
    agents = {}  # forward drive → VNCAgent (the drive is the agent's tonic input)
    _WORKER.update(model=model, env=env, agents=agents, proprioception=proprioception)


def _episode(job: tuple[np.ndarray, float, int]) -> tuple[float, bool]:
    from connectofly.agents.rollout import run_episode
    from connectofly.training import vnc_evaluate

    offsets, drive, seed = job
    model, env, agents = _WORKER["model"], _WORKER["env"], _WORKER["agents"]
    if drive not in agents:
        agents[drive] = model.agent(env.control_dt, vnc_evaluate.forward(drive), _WORKER["proprioception"])
    candidate = _WithParams(agents[drive], with_offsets(model.params, model.mmap, offsets))
    rollout = run_episode(env, candidate, seed=seed)
    return rollout.mean_forward_speed(), rollout.termination is None


def _fitness(results: list[tuple[float, bool]], penalty: float) -> float:
    return float(np.mean([speed - (0.0 if upright else penalty) for speed, upright in results]))


def tune(params_path: Path, out_dir: Path, config: BodyTuneConfig = BodyTuneConfig(),
         progress: bool = True) -> tuple[vnc.VNCParams, list[dict]]:
    """Evolution strategies on the MN stage of the VNC saved at ``params_path``; resumes from ``out_dir``.

    Writes ``out_dir/state.npz`` (offsets, Adam state, generation; after every
    generation), ``out_dir/history.jsonl`` (per generation: the centre's
    speeds, the population's mean and best fitness) and the same fitnesses as
    TensorBoard scalars in ``out_dir/tensorboard``. Returns the tuned
    parameters (the last centre) and the history.
    """
    from tensorboardX import SummaryWriter
    from tqdm import tqdm

    from connectofly.training import vnc_evaluate

    if config.population < 2 or config.population % 2:
        raise ValueError(f"population must be an even number >= 2 (antithetic pairs), got {config.population}")
    if config.generations < 1 or config.sigma <= 0 or not config.drives or not config.seeds:
        raise ValueError(f"need generations >= 1, sigma > 0 and some drives and seeds, got {config}")
    base = vnc_evaluate.load_model(params_path)
    shape = (2, 3, len(pools(base.mmap)))
    size = int(np.prod(shape))
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path, history_path = out_dir / "state.npz", out_dir / "history.jsonl"
    rng = np.random.default_rng(config.seed)
    centre, adam, first = np.zeros(size), _Adam(size, config.learning_rate), 0
    if state_path.exists():
        saved = np.load(state_path)
        centre, adam.m, adam.v = saved["centre"], saved["adam_m"], saved["adam_v"]
        adam.t = first = int(saved["generation"])
        rng = np.random.default_rng([config.seed, first])
    generation_of = lambda line: json.loads(line)["generation"]  # noqa: E731
    conditions = [(d, s) for d in config.drives for s in config.seeds]
    pairs = config.population // 2
    with worker_pool(config.workers, _init_worker,
                     (str(params_path), config.proprioception, config.duration)) as pool, \
            SummaryWriter(str(out_dir / "tensorboard")) as writer, \
            open_record(history_path, first, generation_of) as history_file:
        history = [json.loads(line) for line in history_path.read_text().splitlines()]
        def evaluate(candidates: np.ndarray) -> list[list[tuple[float, bool]]]:
            jobs = [(c.reshape(shape), d, s) for c in candidates for d, s in conditions]
            flat = list(pool.map(_episode, jobs))
            return [flat[i * len(conditions):(i + 1) * len(conditions)] for i in range(len(candidates))]

        bar = tqdm(range(first, config.generations), desc="body ES", unit="gen", disable=not progress,
                   initial=first, total=config.generations)
        for generation in bar:
            noise = rng.standard_normal((pairs, size))
            candidates = np.concatenate([centre + config.sigma * noise, centre - config.sigma * noise, centre[None]])
            results = evaluate(candidates)
            fitness = np.array([_fitness(r, config.fall_penalty) for r in results[:-1]])
            shaped = centred_ranks(fitness)
            gradient = ((shaped[:pairs] - shaped[pairs:])[:, None] * noise).sum(0) / (config.population * config.sigma)
            row = {"generation": generation + 1,
                   "centre_fitness": _fitness(results[-1], config.fall_penalty),
                   "centre_speed_mm_s": [round(s, 3) for s, _ in results[-1]],
                   "centre_upright": [bool(u) for _, u in results[-1]],
                   "mean_fitness": float(fitness.mean()), "best_fitness": float(fitness.max())}
            centre = centre + adam.step(gradient)
            tuned = with_offsets(base.params, base.mmap, centre.reshape(shape))
            if any(vnc.sign_violations(tuned).values()):
                raise RuntimeError(f"sign constraint violated after generation {generation + 1}")
            history.append(row)
            for name in ("centre_fitness", "mean_fitness", "best_fitness"):
                writer.add_scalar(f"body_es/{name}", row[name], generation + 1)
            history_file.write(json.dumps(row) + "\n")
            np.savez(state_path, centre=centre, adam_m=adam.m, adam_v=adam.v, generation=generation + 1)
            bar.set_postfix(centre=f"{row['centre_fitness']:.2f}", best=f"{row['best_fitness']:.2f}")
    return with_offsets(base.params, base.mmap, centre.reshape(shape)), history


def plot_history(rows: list[dict], path: Path) -> None:
    """Fitness (mm/s) per generation: the centre's, the population's mean and best."""
    import matplotlib.pyplot as plt

    g = [r["generation"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
    ax.plot(g, [r["centre_fitness"] for r in rows], "o-", label="centre (before its update)")
    ax.plot(g, [r["mean_fitness"] for r in rows], "-", label="population mean")
    ax.plot(g, [r["best_fitness"] for r in rows], ":", label="population best")
    ax.axhline(10.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("generation")
    ax.set_ylabel("mean forward speed − fall penalty, mm/s")
    ax.set_title("MN stage tuned on the body (ES)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)

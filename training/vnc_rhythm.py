"""Train the VNC's free premotor parameters for an in-air walking rhythm (BPTT).

With the body in the air (no proprioceptive input), a tonic forward drive (the
DNg100/BDN2 channel) should make the motor neurons of each joint fire
rhythmically, flexors alternating with extensors, at a frequency that rises
with the drive within the fly's stepping range (about 5-15 Hz; Pugliese et al.
2025 report 7.9-12.7 Hz for their MANC T1 model as its DNg100 drive rises).

What is trained: the premotor ↔ premotor magnitudes (Dale-signed), the
descending → premotor magnitudes, the premotor → MN synaptic strengths
(positive, one per edge) and the premotor and MN biases of
:mod:`connectofly.circuits.vnc`, on one leg (all legs share them). Premotor →
MN synapse counts are the connectome's and are not touched. Before training,
the rhythm core is seeded (:func:`seed_rhythm_core`).

Loss per drive level ``d`` with target frequency ``f*(d)`` and per antagonist
pair (ThC swing/stance, CTr flex/extend, FTi flex/extend), on the recruited
motor drive after a transient:

* spectral: ``-log`` of the share of the flexor-minus-extensor power within
  ±1 Hz of ``f*`` (power read on a 0.5 Hz grid by projection on sines and
  cosines, Hann window);
* alternation: the correlation of flexor and extensor drive (→ -1);
* amplitude: a hinge that keeps each side's drive modulated;
* plus the hemilineage group lasso (:func:`connectofly.circuits.vnc.sparsity_penalty`).

Run: ``python -m connectofly.training.vnc_rhythm --steps 400 --out /tmp/vnc.npz``
(about 4 minutes on 2 CPU cores); it prints the frequency against drive before
and after training. ``--load /tmp/vnc.npz --silence 13A+13B,19A`` re-evaluates
saved parameters with hemilineages silenced.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from connectofly.circuits import motor_map, vnc, vnc_connectome

log = logging.getLogger(__name__)

RHYTHM_CHANNELS = ("thc_protraction", "ctr_flexion", "fti_flexion")
TRAINED = ("recurrent", "descending", "premotor_bias", "synapse_gain", "motor_bias")


class RhythmConfig(NamedTuple):
    dt: float = 1e-3
    duration: float = 1.0  # s simulated per drive level
    transient: float = 0.3  # s discarded before the analysis window
    train_drives: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0)
    freq_low: float = 7.0  # Hz at the lowest train drive
    freq_high: float = 13.0  # Hz at the highest train drive
    band: float = 1.0  # Hz half-width of the target band
    min_amplitude: float = 0.05  # std of each side's drive
    sparsity: float = 1e-5
    learning_rate: float = 0.01
    seed: int = 0


def target_frequency(drive: jax.Array, config: RhythmConfig) -> jax.Array:
    """Linear drive → frequency target through (lowest, freq_low), (highest, freq_high)."""
    lo, hi = min(config.train_drives), max(config.train_drives)
    return config.freq_low + (drive - lo) * (config.freq_high - config.freq_low) / (hi - lo)


def forward_drive(drive: jax.Array) -> jax.Array:
    """(4,) descending input with ``drive`` on the forward (DNg100/BDN2) channel only."""
    return jnp.array([1.0, 0.0, 0.0, 0.0]) * drive


def simulate_in_air(params: vnc.VNCParams, descending: jax.Array, n_steps: int, dt: float,
                    n_sensory: int, key: jax.Array, init_noise: float = 0.01) -> vnc.VNCOutput:
    """Outputs over ``n_steps`` with tonic (4,) descending input and no proprioception.

    Premotor voltages start at ``init_noise`` × standard normal noise.
    """
    state = vnc.init_state(params)
    state = state._replace(premotor=init_noise * jax.random.normal(key, state.premotor.shape))
    inputs = vnc.VNCInput(
        descending=descending,
        proprio=jnp.zeros((state.premotor.shape[0], n_sensory)),
    )

    def body(s, _):
        return vnc.step(params, s, inputs, dt)

    _, outputs = jax.lax.scan(body, state, None, length=n_steps)
    return outputs


def antagonist_drive(mmap: motor_map.MotorMap, mn_rate: jax.Array) -> jax.Array:
    """(T, 3, 2) recruited drive of the rhythm channels (agonist, antagonist), leg 0."""
    drive = motor_map.recruit(mmap, mn_rate[:, 0])
    index = jnp.array([motor_map.CHANNEL_NAMES.index(c) for c in RHYTHM_CHANNELS])
    return drive[:, index]


def band_power_share(x: jax.Array, dt: float, centre: jax.Array, band: float) -> jax.Array:
    """Share of the power of ``x`` (T,) within ``centre ± band`` Hz, on a 2-25 Hz grid."""
    t = jnp.arange(x.shape[0]) * dt
    window = jnp.hanning(x.shape[0])
    xw = (x - x.mean()) * window
    freqs = jnp.arange(2.0, 25.0, 0.5)
    phase = 2 * jnp.pi * freqs[:, None] * t[None, :]
    power = (jnp.cos(phase) @ xw) ** 2 + (jnp.sin(phase) @ xw) ** 2
    in_band = jnp.abs(freqs - centre) <= band
    return jnp.sum(jnp.where(in_band, power, 0.0)) / (jnp.sum(power) + 1e-12)


def safe_std(x: jax.Array) -> jax.Array:
    """Standard deviation with a finite gradient at zero spread."""
    return jnp.sqrt(jnp.var(x) + 1e-8)


def correlation(a: jax.Array, b: jax.Array) -> jax.Array:
    a, b = a - a.mean(), b - b.mean()
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b) + 1e-12)


def rhythm_loss(trainable, fixed, graph, mmap, drives, config: RhythmConfig, n_sensory: int, key):
    """Mean rhythm loss over drive levels (see module doc); also returns metrics."""
    params = vnc.VNCParams(trainable={**fixed, **trainable}, graph=graph)
    n_steps = int(round(config.duration / config.dt))
    start = int(round(config.transient / config.dt))

    def one(drive, k):
        out = simulate_in_air(params, forward_drive(drive), n_steps, config.dt, n_sensory, k)
        pair = antagonist_drive(mmap, out.mn_rate)[start:]  # (T, 3, 2)
        centre = target_frequency(drive, config)
        losses, shares = [], []
        for c in range(len(RHYTHM_CHANNELS)):
            ag, ant = pair[:, c, 0], pair[:, c, 1]
            share = band_power_share(ag - ant, config.dt, centre, config.band)
            amp = jax.nn.relu(config.min_amplitude - safe_std(ag)) + jax.nn.relu(config.min_amplitude - safe_std(ant))
            losses.append(-jnp.log(share + 1e-4) + correlation(ag, ant) + 10.0 * amp)
            shares.append(share)
        return jnp.mean(jnp.stack(losses)), jnp.mean(jnp.stack(shares))

    keys = jax.random.split(key, len(drives))
    per_drive, shares = jax.vmap(one)(drives, keys)
    loss = per_drive.mean() + config.sparsity * vnc.sparsity_penalty(params)
    return loss, {"band_share": shares.mean()}


def split_trainable(params: vnc.VNCParams, trained: tuple[str, ...] = TRAINED) -> tuple[dict, dict]:
    """(the ``trained`` parameter groups, the rest)."""
    trainable = {k: v for k, v in params.trainable.items() if k in trained}
    fixed = {k: v for k, v in params.trainable.items() if k not in trained}
    return trainable, fixed


def zero_crossing_frequency(x: np.ndarray, dt: float) -> float:
    """Frequency from upward mean crossings of ``x`` (independent of the loss's spectrum)."""
    centred = x - x.mean()
    ups = np.flatnonzero((centred[:-1] < 0) & (centred[1:] >= 0))
    if len(ups) < 2:
        return 0.0
    return float((len(ups) - 1) / ((ups[-1] - ups[0]) * dt))


def frequency_vs_drive(params: vnc.VNCParams, mmap: motor_map.MotorMap, drives, n_sensory: int,
                       dt: float = 1e-3, duration: float = 2.0, transient: float = 0.5,
                       seed: int = 1, min_amplitude: float = 1e-3) -> list[dict]:
    """Per drive: rhythm frequency (zero crossings), flexor/extensor correlation, amplitude.

    The amplitude is the smaller of the flexor and extensor drive's standard
    deviations; below ``min_amplitude`` the frequency is reported as 0 (no rhythm).
    """
    n_steps, start = int(round(duration / dt)), int(round(transient / dt))
    run = jax.jit(lambda d, k: simulate_in_air(params, forward_drive(d), n_steps, dt, n_sensory, k).mn_rate)
    rows = []
    for i, drive in enumerate(drives):
        mn = run(jnp.asarray(drive), jax.random.PRNGKey(seed + i))
        pair = np.asarray(antagonist_drive(mmap, mn))[start:]
        row = {"drive": float(drive)}
        for c, name in enumerate(RHYTHM_CHANNELS):
            ag, ant = pair[:, c, 0], pair[:, c, 1]
            rhythmic = min(ag.std(), ant.std()) >= min_amplitude
            row[f"{name}_hz"] = zero_crossing_frequency(ag - ant, dt) if rhythmic else 0.0
            row[f"{name}_corr"] = float(np.corrcoef(ag, ant)[0, 1]) if ag.std() > 0 and ant.std() > 0 else float("nan")
            row[f"{name}_amp"] = float(min(ag.std(), ant.std()))
        rows.append(row)
    return rows


# The rhythm core seeded before training. Pugliese et al. 2025 find a core of
# about six interneuron types (17A, 16B, 19A, 03A and two others) that generates
# the rhythm in MANC; here the cholinergic 03A and 17A units excite each other
# and the inhibitory 16B and 19A units, which inhibit them back: an
# excitatory-inhibitory loop that oscillates at ~13 Hz untrained. The other
# W_PP magnitudes start small (softplus(N(-4, 0.5)) ~ 0.02). Values are the
# block totals (summed over presynaptic units) found by a short scan.
CORE_EXCITATORY = ("03A", "17A")
CORE_INHIBITORY = ("19A", "16B")
CORE_WEIGHTS = {"e_to_e": 3.0, "i_to_e": 4.0, "e_to_i": 2.0, "drive_to_e": 1.0}
RHYTHM_INIT = vnc.VNCConfig(legs=("lf",), recurrent_init=-4.0, recurrent_init_std=0.5)


def inverse_softplus(w: float) -> float:
    return float(np.log(np.expm1(w)))


def seed_rhythm_core(params: vnc.VNCParams, spec: vnc.LegSpec, weights: dict = CORE_WEIGHTS) -> vnc.VNCParams:
    """Set the core blocks of W_PP (magnitudes only; signs stay the transmitter's)."""
    hl = spec.premotor_hemilineage
    e, i = np.isin(hl, CORE_EXCITATORY), np.isin(hl, CORE_INHIBITORY)
    if not e.any() or not i.any():
        raise ValueError(f"the connectome has no units of {CORE_EXCITATORY} or {CORE_INHIBITORY}")
    theta = np.array(params.trainable["recurrent"])
    theta[np.ix_(e, e)] = inverse_softplus(weights["e_to_e"] / e.sum())
    theta[np.ix_(i, e)] = inverse_softplus(weights["e_to_i"] / e.sum())
    theta[np.ix_(e, i)] = inverse_softplus(weights["i_to_e"] / i.sum())
    dn = np.array(params.trainable["descending"])
    dn[:, i, :] = -6.0  # the inhibitory core is driven through the excitatory one
    dn[:, e, 0] = inverse_softplus(weights["drive_to_e"])
    trainable = {**params.trainable, "recurrent": jnp.asarray(theta), "descending": jnp.asarray(dn)}
    return params._replace(trainable=trainable)


def build(seed: int = 0, config: vnc.VNCConfig = RHYTHM_INIT):
    """Connectome, one-leg VNC params (core seeded), motor map and spec."""
    connectome = vnc_connectome.load_fanc_t1l_premotor_to_mn()
    spec = vnc.build_leg_spec(connectome)
    params = seed_rhythm_core(vnc.init(jax.random.PRNGKey(seed), connectome, config), spec)
    mmap = motor_map.build_motor_map(list(spec.mn_module), spec.mn_size, recruitment_threshold=0.05)
    return params, mmap, spec


def train(params: vnc.VNCParams, mmap: motor_map.MotorMap, n_sensory: int, n_steps: int,
          config: RhythmConfig = RhythmConfig(), progress: bool = True):
    """Adam on the free parameters; checks Dale's law after every update."""
    from tqdm import tqdm

    trainable, fixed = split_trainable(params)
    drives = jnp.asarray(config.train_drives)
    schedule = optax.cosine_decay_schedule(config.learning_rate, max(n_steps, 1), alpha=0.1)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    opt_state = optimizer.init(trainable)
    loss_and_grad = jax.jit(jax.value_and_grad(
        lambda tr, k: rhythm_loss(tr, fixed, params.graph, mmap, drives, config, n_sensory, k), has_aux=True))
    key = jax.random.PRNGKey(config.seed)
    history = []
    for i in tqdm(range(n_steps), disable=not progress, desc="rhythm BPTT"):
        key, sub = jax.random.split(key)
        (loss, metrics), grads = loss_and_grad(trainable, sub)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        current = vnc.VNCParams(trainable={**fixed, **trainable}, graph=params.graph)
        violations = vnc.sign_violations(current)
        if any(violations.values()) or not np.isfinite(float(loss)):
            raise RuntimeError(f"sign constraint violated after update {i}: {violations}")
        history.append((float(loss), float(metrics["band_share"])))
        if i % 5 == 0:
            log.info("step %d loss %.3f band share %.3f", i, *history[-1])
    return vnc.VNCParams(trainable={**fixed, **trainable}, graph=params.graph), history


def silence(params: vnc.VNCParams, spec: vnc.LegSpec, hemilineages: tuple[str, ...]) -> vnc.VNCParams:
    """Silence every premotor unit of ``hemilineages`` (a bias far below threshold)."""
    units = np.isin(spec.premotor_hemilineage, hemilineages)
    if not units.any():
        raise ValueError(f"no premotor units of {hemilineages}; known: {sorted(set(spec.premotor_hemilineage))}")
    bias = params.trainable["premotor_bias"].at[jnp.asarray(np.flatnonzero(units))].set(-100.0)
    return params._replace(trainable={**params.trainable, "premotor_bias": bias})


def load_trainable(params: vnc.VNCParams, path: str) -> vnc.VNCParams:
    """Parameters saved by ``--out`` on top of ``params`` (same connectome and config)."""
    with np.load(path) as saved:
        loaded = {k: jnp.asarray(saved[k]) for k in saved.files}
    loaded = _upgrade_shared_parameters(params, loaded)
    for k, v in loaded.items():
        if k not in params.trainable or v.shape != params.trainable[k].shape:
            raise ValueError(f"{path}: parameter {k!r} with shape {v.shape} does not fit this network")
    return params._replace(trainable={**params.trainable, **loaded})


def _upgrade_shared_parameters(params: vnc.VNCParams, loaded: dict) -> dict:
    """Files saved before MN biases were per segment and premotor → MN strengths per edge and segment.

    Then every segment had the same MN biases and every edge of a source the
    same strength (``premotor_gain``, one per source unit): that is what they
    become.
    """
    loaded = dict(loaded)
    n_sources = sum(params.trainable["sensory_to_premotor"].shape)  # premotor + sensory units
    if "premotor_gain" in loaded and loaded["premotor_gain"].shape == (n_sources,):
        loaded["synapse_gain"] = loaded.pop("premotor_gain")[params.graph.pm_src]
    for name in ("motor_bias", "synapse_gain"):
        if name in loaded and loaded[name].shape == params.trainable[name].shape[1:]:
            loaded[name] = jnp.broadcast_to(loaded[name], params.trainable[name].shape)
    return loaded


def _print_table(title: str, rows: list[dict]) -> None:
    print(title)
    print("drive | " + " | ".join(f"{c} Hz (corr, amp)" for c in RHYTHM_CHANNELS))
    for r in rows:
        cells = [f"{r[f'{c}_hz']:.1f} ({r[f'{c}_corr']:+.2f}, {r[f'{c}_amp']:.3f})" for c in RHYTHM_CHANNELS]
        print(f"{r['drive']:.2f} | " + " | ".join(cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="optional .npz for the trained parameters (outside the repo)")
    parser.add_argument("--eval-drives", default="0.75,0.875,1.0,1.125,1.25,1.375,1.5,1.625,1.75,1.875,2.0,2.25")
    parser.add_argument("--load", default=None, help="evaluate parameters saved with --out instead of training")
    parser.add_argument("--silence", default="", help="hemilineage sets to silence, e.g. '13A+13B,19A'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    params, mmap, spec = build(args.seed)
    drives = [float(x) for x in args.eval_drives.split(",")]
    if args.load:
        trained = load_trainable(params, args.load)
        _print_table("loaded", frequency_vs_drive(trained, mmap, drives, spec.n_sensory))
        for group in filter(None, args.silence.split(",")):
            silenced = silence(trained, spec, tuple(group.split("+")))
            _print_table(f"silenced {group}", frequency_vs_drive(silenced, mmap, drives, spec.n_sensory))
        return
    _print_table("before training", frequency_vs_drive(params, mmap, drives, spec.n_sensory))
    start = time.time()
    trained, history = train(params, mmap, spec.n_sensory, args.steps, RhythmConfig(seed=args.seed))
    print(f"trained {args.steps} steps in {time.time() - start:.0f} s; loss {history[0][0]:.3f} -> {history[-1][0]:.3f}")
    _print_table("after training", frequency_vs_drive(trained, mmap, drives, spec.n_sensory))
    print("sign violations:", vnc.sign_violations(trained))
    if args.out:
        np.savez(args.out, **{k: np.asarray(v) for k, v in trained.trainable.items()})


if __name__ == "__main__":
    main()

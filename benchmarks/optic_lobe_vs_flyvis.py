"""Optic lobe: connectofly (JAX) against flyvis 1.2.0 (PyTorch), same run.

Builds (once) a side virtualenv with Python 3.11, ``torch==2.13.0`` and
``flyvis==1.2.0``, then runs both networks at extent 15 (45,669 neurons) with
flyvis's default untrained parameters (ours copies them from flyvis), dt 10 ms,
on the same stimuli (ON/OFF flashes, ON/OFF moving edges, random noise):

* forward, 1 s (100 steps) from the grey steady state, batch 1 and batch 8;
* one BPTT step: batch 4 x 40 steps, loss = mean squared voltage, Adam;
* peak resident memory of each process, and max |delta| between the two
  networks' voltages over all neurons, frames and samples;
* the closed loop: physics steps/s of the connectome agent (both eyes, two
  lobes) against the same body walking without eyes and walking with them,
  steady state, and the median time of each part of the connectome agent's
  control step (``--closed-loop-only`` runs just this part).

Each measurement runs in its own process (peak memory per process). Usage::

    python benchmarks/optic_lobe_vs_flyvis.py [--threads 1] [--repeats 3]
    python benchmarks/optic_lobe_vs_flyvis.py --fixture tests/data/flyvis_extent2.npz

The second form writes the small parity fixture of the test suite instead: flyvis's
parameters, grey steady state and full responses at extent 2 to ON/OFF flashes,
a moving edge and noise (25 frames at dt 20 ms). The third::

    python benchmarks/optic_lobe_vs_flyvis.py --checkpoint-fixture tests/data

writes the checkpoint fixture: flyvis's network at extent 2 after four of its
training steps, saved by flyvis's ``MultiTaskSolver.checkpoint``
(``flyvis_model/chkpts/chkpt_00000``), and that network's steady state and
responses to an ON flash and noise, 20 frames at dt 20 ms
(``flyvis_checkpoint_responses.npz``).

Needs ``CONNECTOFLY_DATA_DIR`` (or network access) for the connectome file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORKER = HERE / "optic_lobe_flyvis_worker.py"
DEFAULT_VENV = Path.home() / ".cache" / "connectofly" / "flyvis-venv"
SIDE_PYTHON_ENV = "CONNECTOFLY_FLYVIS_PYTHON"  # a Python 3.11 to build the side venv with
SIDE_PACKAGES = ("torch==2.13.0", "flyvis==1.2.0")
EXTENT, DT, N_FRAMES, BATCH = 15, 0.01, 100, 8


# -- Side environment -------------------------------------------------------------


def is_python_311(python: str) -> bool:
    probe = "import sys; print(sys.version_info[:2] == (3, 11))"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.strip() == "True"
    except OSError:
        return False


def find_side_python(given: str | None) -> str:
    """A Python 3.11 (flyvis 1.2.0 and its torch need it): ``--base-python``, then
    ``$CONNECTOFLY_FLYVIS_PYTHON``, ``python3.11`` on PATH, pyenv's 3.11 versions."""
    if given or os.environ.get(SIDE_PYTHON_ENV):
        python = given or os.environ[SIDE_PYTHON_ENV]
        if not is_python_311(python):
            sys.exit(f"error: {python} is not a Python 3.11 interpreter (flyvis 1.2.0 needs 3.11)")
        return python
    pyenv = sorted((Path.home() / ".pyenv" / "versions").glob("3.11*/bin/python"), reverse=True)
    for python in ["python3.11", *map(str, pyenv)]:
        if is_python_311(python):
            return python
    sys.exit(f"error: no Python 3.11 found for the flyvis side venv; pass --base-python PATH or set {SIDE_PYTHON_ENV} "
             "(e.g. 'pyenv install 3.11')")


def ensure_flyvis_venv(venv: Path, base_python: str | None) -> Path:
    """Create the flyvis venv (with a Python 3.11, see :func:`find_side_python`) if it
    cannot yet import flyvis; return its python."""
    python = venv / "bin" / "python"
    probe = "import importlib.metadata as m; print(m.version('flyvis'), m.version('torch'))"
    if python.exists():
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.startswith("1.2.0"):
            return python
    base_python = find_side_python(base_python)
    print(f"creating {venv} with {base_python}: pip install {' '.join(SIDE_PACKAGES)}", flush=True)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *SIDE_PACKAGES], check=True)
    return python


def run_json(command: list, env: dict | None = None) -> dict:
    """Run a subprocess that prints one JSON line last; return it."""
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- Stimuli ------------------------------------------------------------------------


def _fit(movie: np.ndarray, n_frames: int) -> np.ndarray:
    """Truncate, or pad by holding the last frame, to ``n_frames``."""
    if len(movie) >= n_frames:
        return movie[:n_frames]
    return np.concatenate([movie, np.repeat(movie[-1:], n_frames - len(movie), axis=0)])


def make_stimuli() -> np.ndarray:
    """(8, 100, 721): ON flash, OFF flash, four moving edges (ON 0 and 90 deg,
    OFF 180 and 270 deg, 13 columns/s), two random-noise movies."""
    from connectofly.circuits import stimuli

    movies = [
        stimuli.flash(EXTENT, level, DT, radius=6, t_pre=0.2, t_stim=0.5, t_post=0.3)
        for level in (1.0, 0.0)
    ]
    for angle, level in ((0, 1.0), (90, 1.0), (180, 0.0), (270, 0.0)):
        movies.append(stimuli.moving_edge(EXTENT, angle, 13.0, level, DT, t_pre=0.1))
    movies = [_fit(m, N_FRAMES) for m in movies]
    noise = np.random.default_rng(0).random((2, N_FRAMES, movies[0].shape[1]))
    return np.concatenate([np.stack(movies), noise]).astype(np.float32)


def make_fixture_stimuli(extent: int, dt: float, n_frames: int) -> np.ndarray:
    """(4, n_frames, n_columns): ON and OFF flash, an ON edge at 60 deg, noise."""
    from connectofly.circuits import stimuli

    movies = [
        stimuli.flash(extent, level, dt, radius=1, t_pre=0.1, t_stim=0.2, t_post=0.3)
        for level in (1.0, 0.0)
    ]
    movies.append(stimuli.moving_edge(extent, 60, 13.0, 1.0, dt, t_pre=0.1))
    movies = [_fit(m, n_frames) for m in movies]
    noise = np.random.default_rng(1).random((1, n_frames, movies[0].shape[1]))
    return np.concatenate([np.stack(movies), noise]).astype(np.float32)


# -- Our side (runs in a subprocess: --ours forward|bptt) -----------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _our_network(flyvis_params: Path):
    import jax

    from connectofly.circuits import optic_lobe as ol

    connectome = ol.load_connectome(EXTENT)
    params = ol.init(jax.random.PRNGKey(0), connectome)
    trainable = ol.with_flyvis_parameters(
        params.trainable, ol.spec_of(connectome), np.load(flyvis_params)
    )
    return params._replace(trainable=trainable)


def _time_runs(fn, repeats: int) -> tuple[float, list[float]]:
    """Fastest of ``repeats`` runs (robust to other load on the machine), and all."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), times


def ours_forward(args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp

    from connectofly.circuits import optic_lobe as ol

    start = time.perf_counter()
    params = _our_network(args.params)
    result = {"build_s": time.perf_counter() - start, "rss_after_build_mib": peak_rss_mib()}
    movies = jnp.asarray(np.load(args.stimulus))
    batched = jax.jit(jax.vmap(ol.simulate, in_axes=(None, 0, 0, None)))
    single = jax.jit(ol.simulate)
    for batch in (1, movies.shape[0]):
        grey = ol.steady_state(params, DT)
        states = jax.tree.map(lambda v, b=batch: jnp.broadcast_to(v, (b, *v.shape)), grey)

        def run(batch=batch, grey=grey, states=states):
            if batch == 1:
                return single(params, grey, movies[0], DT)[1].block_until_ready()
            return batched(params, states, movies, DT)[1].block_until_ready()

        start = time.perf_counter()
        responses = np.asarray(run())
        result[f"compile_and_first_b{batch}_s"] = time.perf_counter() - start
        t, times = _time_runs(run, args.repeats)
        np.save(args.out / f"ours_b{batch}.npy", responses.reshape(batch, *responses.shape[-2:]))
        result[f"forward_b{batch}_s"] = t
        result[f"forward_b{batch}_all_s"] = times
        result[f"peak_rss_after_b{batch}_mib"] = peak_rss_mib()
    return result


def ours_bptt(args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from connectofly.circuits import optic_lobe as ol

    params = _our_network(args.params)
    rss_built = peak_rss_mib()
    movies = jnp.asarray(np.load(args.stimulus))[: args.batch, : args.steps]
    grey = ol.steady_state(params, DT)
    states = jax.tree.map(lambda v: jnp.broadcast_to(v, (args.batch, *v.shape)), grey)
    optimizer = optax.adam(1e-3)
    simulate = jax.vmap(ol.simulate, in_axes=(None, 0, 0, None))

    @jax.jit
    def train_step(trainable, graph, opt_state):
        def loss_fn(trainable):
            _, voltages = simulate(ol.OpticLobeParams(trainable, graph), states, movies, DT)
            return jnp.mean(voltages**2)

        loss, grads = jax.value_and_grad(loss_fn)(trainable)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return ol.clamp(optax.apply_updates(trainable, updates)), opt_state, loss

    trainable, opt_state = params.trainable, optimizer.init(params.trainable)

    def step() -> None:
        nonlocal trainable, opt_state
        trainable, opt_state, loss = train_step(trainable, params.graph, opt_state)
        loss.block_until_ready()

    start = time.perf_counter()
    step()
    compile_s = time.perf_counter() - start
    t, times = _time_runs(step, args.repeats)
    return {
        "bptt_s": t,
        "bptt_all_s": times,
        "compile_and_first_s": compile_s,
        "rss_after_build_mib": rss_built,
        "peak_rss_mib": peak_rss_mib(),
    }


# -- Orchestration ------------------------------------------------------------------


def jax_env(threads: int) -> dict:
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
            " intra_op_parallelism_threads=1"
        ).strip()
    return env


def report(fly: dict, ours: dict, deltas: dict, args: argparse.Namespace) -> None:
    rows = [
        ("forward 1 s, batch 1", fly["forward_b1_s"], ours["forward_b1_s"]),
        (f"forward 1 s, batch {BATCH}", fly[f"forward_b{BATCH}_s"], ours[f"forward_b{BATCH}_s"]),
        (f"BPTT step, batch {args.batch} x {args.steps}", fly["bptt_s"], ours["bptt_s"]),
    ]
    print(f"\nextent {EXTENT}, dt {DT} s, {args.threads} thread(s), fastest of {args.repeats} runs")
    print(f"{'':34s} {'flyvis (s)':>11s} {'ours (s)':>10s} {'speed-up':>9s}")
    for name, a, b in rows:
        print(f"{name:34s} {a:11.3f} {b:10.3f} {a / b:8.1f}x")
    medians = [
        (np.median(fly[f"{k}_all_s"]), np.median(ours[f"{k}_all_s"]))
        for k in ("forward_b1", f"forward_b{BATCH}", "bptt")
    ]
    print("medians (s): " + ", ".join(f"{a:.3f} vs {b:.3f}" for a, b in medians))
    print(f"\n{'peak RSS (MiB)':34s} {'flyvis':>11s} {'ours':>10s}")
    for key, label in (
        ("rss_after_build_mib", "after building the network"),
        ("peak_rss_after_b1_mib", "after forward batch 1"),
        (f"peak_rss_after_b{BATCH}_mib", f"after forward batch {BATCH}"),
    ):
        print(f"{label:34s} {fly[key]:11.0f} {ours[key]:10.0f}")
    fly_rss, ours_rss = fly["bptt_peak_rss_mib"], ours["bptt_peak_rss_mib"]
    print(f"{'BPTT process':34s} {fly_rss:11.0f} {ours_rss:10.0f}")
    print("\nmax |delta| (all neurons, frames, samples):")
    for name, value in deltas.items():
        print(f"  {name:38s} {value:.3e}")
    print(
        f"\nours: compile + first run {ours['compile_and_first_b1_s']:.2f} s (batch 1), "
        f"{ours[f'compile_and_first_b{BATCH}_s']:.2f} s (batch {BATCH}), "
        f"{ours['bptt_compile_and_first_s']:.2f} s (BPTT); "
        f"flyvis network build {fly['build_s']:.1f} s, ours {ours['build_s']:.1f} s"
    )


# -- The lobes in the closed loop ----------------------------------------------------

CLOSED_LOOP_RUNS = {  # what the connectome agent's loop costs against the same body walking alone
    "walking only (cpg, no eyes)": ["--task", "walk", "--controller", "cpg"],
    "walking with the eyes (cpg)": ["--task", "visual_taxis", "--controller", "cpg"],
    "connectome agent (eyes, two lobes, readout, walker)": ["--task", "visual_taxis", "--controller", "connectome"],
}


def episode_rates(options: list[str], duration: float, seed: int, out: Path) -> dict:
    """Physics steps/s of one ``connectofly walk --no-video`` episode (its summary): steady (after
    the first quarter of the control steps, so without compilation) and over the whole episode."""
    name = f"run{len(list(out.iterdir()))}"
    done = subprocess.run([sys.executable, "-m", "connectofly.cli.main", "walk", "--no-video", *options,
                           "--duration", str(duration), "--seed", str(seed), "--output-dir", str(out),
                           "--run-name", name], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"connectofly walk {' '.join(options)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads((out / name / "summary.json").read_text())
    return {"steady_steps_per_s": summary["steady_steps_per_second"],
            f"episode_{duration}s_steps_per_s": summary["steps_per_second"]}


def closed_loop_rates(seed: int = 103, duration: float = 2.0, repeats: int = 3) -> dict:
    """Physics steps/s of each of :data:`CLOSED_LOOP_RUNS`, each episode in its own process like a
    user's command: the fastest of ``repeats`` (other load only slows a run down), the runs
    interleaved so that a slow spell of the machine falls on every kind alike."""
    runs = {label: [] for label in CLOSED_LOOP_RUNS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(repeats):
            for label, options in CLOSED_LOOP_RUNS.items():
                print(f"closed loop, round {round_ + 1} of {repeats}: {label} ...", flush=True)
                runs[label].append(episode_rates(options, duration, seed, Path(tmp)))
    return {label: max(rates, key=lambda r: r["steady_steps_per_s"]) for label, rates in runs.items()}


def closed_loop_parts(seed: int = 103, n_steps: int = 1500, warm_up: int = 200) -> dict:
    """Median wall time (ms) of each part of the connectome agent's control step, in this process:
    the lobes and the descending units on a frame step and between frames, the walker, and the env
    step (physics, eye render on frame steps, task), with the eye render timed apart."""
    import jax

    from connectofly.agents.registry import make_controller
    from connectofly.envs.fly_env import FlyEnv

    env = FlyEnv(task="visual_taxis", duration=(n_steps + warm_up + 1) * 1e-3)
    agent = make_controller("connectome", env)
    base, times = env.unwrapped, {k: [] for k in ("sense on a frame", "sense between frames", "walker", "env step",
                                                  "eye render (a frame)")}
    eye = base._eye

    def timed_eye(data):
        start = time.perf_counter()
        readout = eye(data)
        times["eye render (a frame)"].append(time.perf_counter() - start)
        return readout

    base._eye = timed_eye
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    params, carry = agent.default_params(), agent.init(rng)
    for step in range(n_steps + warm_up):
        frame = agent.lobes.is_frame(int(carry.lobes.observations))
        start = time.perf_counter()
        carry, _ = agent.sense(carry, obs["vision"])
        drive = np.asarray(jax.block_until_ready(carry.dn), dtype=float)
        sensed = time.perf_counter()
        carry, action = agent.move(params, carry, obs, drive, rng)
        moved = time.perf_counter()
        obs, *_ = env.step(action)
        if step >= warm_up:
            times["sense on a frame" if frame else "sense between frames"].append(sensed - start)
            times["walker"].append(moved - sensed)
            times["env step"].append(time.perf_counter() - moved)
    times["eye render (a frame)"] = times["eye render (a frame)"][warm_up // 2:]
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}


def report_closed_loop(rates: dict) -> None:
    walking = rates[next(iter(CLOSED_LOOP_RUNS))]["steady_steps_per_s"]
    print("\nclosed loop (MuJoCo C physics, dt 0.1 ms), physics steps/s:")
    for label, rate in rates.items():
        steady, whole = rate["steady_steps_per_s"], next(v for k, v in rate.items() if k.startswith("episode_"))
        print(f"  {label:55s} steady {steady:7.0f} ({steady / walking:.2f}x walking only), whole episode {whole:6.0f}")


def report_parts(parts: dict) -> None:
    print("\nconnectome agent, one control step (1 ms; a frame every 2 steps), median ms:")
    for label, ms in parts.items():
        print(f"  {label:30s} {ms:6.3f}")


def write_fixture(python: Path, path: Path, extent: int = 2, dt: float = 0.02) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stimulus = Path(tmp) / "stimulus.npy"
        np.save(stimulus, make_fixture_stimuli(extent, dt, n_frames=25))
        run_json([python, WORKER, "fixture", "--stimulus", str(stimulus), "--out", tmp,
                  "--extent", str(extent), "--dt", str(dt)])
        path.parent.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "fixture.npz").replace(path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


CHECKPOINT_FILE = Path("flyvis_model") / "chkpts" / "chkpt_00000"
CHECKPOINT_RESPONSES = "flyvis_checkpoint_responses.npz"


def write_checkpoint_fixture(python: Path, folder: Path, extent: int = 2, dt: float = 0.02) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stimulus = Path(tmp) / "stimulus.npy"
        np.save(stimulus, make_fixture_stimuli(extent, dt, n_frames=20)[[0, 3]])  # ON flash, noise
        result = run_json([python, WORKER, "checkpoint", "--stimulus", str(stimulus), "--out", tmp,
                           "--extent", str(extent), "--dt", str(dt), "--steps", "4"])
        for source, target in ((Path(tmp) / "model" / "chkpts" / "chkpt_00000", folder / CHECKPOINT_FILE),
                               (Path(tmp) / "checkpoint_responses.npz", folder / CHECKPOINT_RESPONSES)):
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
            print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")
    print(f"flyvis's training losses: {result['losses']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--base-python", help=f"Python 3.11 for the side venv (default: ${SIDE_PYTHON_ENV}, "
                        "python3.11 on PATH, pyenv's 3.11)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4, help="BPTT batch")
    parser.add_argument("--steps", type=int, default=40, help="BPTT steps")
    parser.add_argument("--fixture", type=Path, help="write the test fixture here and stop")
    parser.add_argument("--checkpoint-fixture", type=Path, metavar="FOLDER",
                        help="write the checkpoint fixture into FOLDER (e.g. tests/data) and stop")
    parser.add_argument("--closed-loop-only", action="store_true",
                        help="only the closed-loop rates (no flyvis side venv needed)")
    parser.add_argument("--ours", choices=("forward", "bptt"), help=argparse.SUPPRESS)
    parser.add_argument("--params", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stimulus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours:
        print(json.dumps(ours_forward(args) if args.ours == "forward" else ours_bptt(args)))
        return

    if args.closed_loop_only:
        report_closed_loop(closed_loop_rates())
        report_parts(closed_loop_parts())
        return
    python = ensure_flyvis_venv(args.venv, args.base_python)
    if args.fixture:
        write_fixture(python, args.fixture)
        return
    if args.checkpoint_fixture:
        write_checkpoint_fixture(python, args.checkpoint_fixture)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        stimulus = out / "stimulus.npy"
        np.save(stimulus, make_stimuli())
        common = ["--stimulus", str(stimulus), "--out", str(out), "--repeats", str(args.repeats)]
        bptt_args = ["--batch", str(args.batch), "--steps", str(args.steps)]
        ours_cmd = [sys.executable, __file__, "--params", str(out / "flyvis_params.npz"), *common]
        env = jax_env(args.threads)
        print("flyvis forward ...", flush=True)
        fly = run_json([python, WORKER, "forward", *common, "--threads", str(args.threads)])
        print("ours forward ...", flush=True)
        ours = run_json([*ours_cmd, "--ours", "forward"], env)
        print("flyvis BPTT ...", flush=True)
        fly_bptt = run_json(
            [python, WORKER, "bptt", *common, *bptt_args, "--threads", str(args.threads)]
        )
        print("ours BPTT ...", flush=True)
        ours_bptt_result = run_json([*ours_cmd, "--ours", "bptt", *bptt_args], env)
        fly.update(
            bptt_s=fly_bptt["bptt_s"],
            bptt_all_s=fly_bptt["bptt_all_s"],
            bptt_peak_rss_mib=fly_bptt["peak_rss_mib"],
        )
        ours.update(
            bptt_s=ours_bptt_result["bptt_s"],
            bptt_all_s=ours_bptt_result["bptt_all_s"],
            bptt_peak_rss_mib=ours_bptt_result["peak_rss_mib"],
            bptt_compile_and_first_s=ours_bptt_result["compile_and_first_s"],
        )
        deltas = {}
        for batch in (1, BATCH):
            theirs, ours_v = (np.load(out / f"{who}_b{batch}.npy") for who in ("flyvis", "ours"))
            delta = np.abs(theirs - ours_v)
            deltas[f"batch {batch}"] = float(delta.max())
            if batch == BATCH:
                names = ("ON flash", "OFF flash", "ON edge 0", "ON edge 90", "OFF edge 180",
                         "OFF edge 270", "noise 1", "noise 2")
                for name, d in zip(names, delta):
                    deltas[f"  {name}"] = float(d.max())
    report(fly, ours, deltas, args)
    rates = closed_loop_rates()
    report_closed_loop(rates)
    parts = closed_loop_parts()
    report_parts(parts)
    print("\nraw:", json.dumps({"flyvis": fly, "ours": ours, "closed_loop": rates, "closed_loop_parts_ms": parts}))


if __name__ == "__main__":
    main()

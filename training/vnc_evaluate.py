"""The trained VNC on the body: speed against drive, gait phases, turning, backward, silencing.

Everything runs the network in closed loop on :class:`~connectofly.envs.fly_env.FlyEnv`
(MuJoCo C physics, flat ground) through :class:`~connectofly.agents.vnc_agent.VNCAgent`
and records the motor neurons and muscles on the way. Measures:

* forward speed (thorax displacement along the initial heading per second,
  over the whole episode) and mean yaw rate after a transient;
* stepping frequency: the peak (2-25 Hz) of the power spectrum of all legs'
  and channels' muscle signals;
* the phase matrix: the phase of each leg's stance command (the claw muscle,
  i.e. adhesion) relative to every other's at the stepping frequency, degrees;
  and the same from the body's footfalls (leg load above
  :data:`STANCE_LOAD`). Their *tripod index* is the mean of cos(phase −
  tripod phase) over leg pairs: 1 a perfect tripod, about 0 unrelated legs,
  −0.2 all legs in phase. (The recorded step that the network is trained on
  scores 0.99 on the stance command; joint signals such as the ThC's are not
  used because each leg's ThC DoF has its own phase within the step.)
* upright: the episode ended without the env's "flipped" termination.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import NamedTuple

import numpy as np

from connectofly.agents.rollout import Rollout, run_episode
from connectofly.agents.vnc_agent import VNCAgent, leg_load
from connectofly.circuits import motor_map, vnc, vnc_connectome
from connectofly.envs.body import LEGS
from connectofly.envs.fly_env import FlyEnv
from connectofly.envs.kinematics import load_step_kinematics
from connectofly.training import vnc_rhythm, vnc_walk

STANCE_LOAD = 20.0  # µN: a leg with more ground-reaction force than this is in stance
MIN_ANALYSED = 0.25  # s: a shorter window (a fall soon after the transient) holds under ~3 steps: no frequency
TRIPOD_PHASE = np.degrees(vnc_walk.TRIPOD_OFFSET[None, :] - vnc_walk.TRIPOD_OFFSET[:, None]) % 360


@dataclass(frozen=True)
class WalkModel:
    """A six-leg VNC with what it needs to drive the body."""

    params: vnc.VNCParams
    mmap: motor_map.MotorMap
    spec: vnc.LegSpec
    rest_action: np.ndarray

    def agent(self, control_dt: float, descending, proprioception: bool = False) -> VNCAgent:
        return VNCAgent(control_dt, self.params, self.mmap, tuple(self.spec.sensory_names),
                        self.rest_action, np.asarray(descending, dtype=np.float32), proprioception)

    def silenced(self, hemilineages: tuple[str, ...]) -> "WalkModel":
        return WalkModel(vnc_rhythm.silence(self.params, self.spec, hemilineages), self.mmap, self.spec,
                         self.rest_action)


def premotor_hemilineages() -> set[str]:
    """The hemilineages of the VNC's premotor units (what can be silenced)."""
    return set(vnc.build_leg_spec(vnc_connectome.load_fanc_t1l_premotor_to_mn()).premotor_hemilineage)


def embedded_weights() -> Path:
    """The trained six-leg VNC shipped with the package (``connectofly vnc``'s ``params.npz``; docs/vnc.md)."""
    return Path(str(files("connectofly.agents") / "weights" / "vnc_walk.npz"))


def load_model(params_path: str | Path | None = None) -> WalkModel:
    """Six-leg parameters saved by ``connectofly vnc`` (``params.npz``); default: the embedded ones."""
    one_leg, mmap, spec = vnc_rhythm.build()
    six = vnc_walk.six_legs(one_leg, spec, vnc_connectome.load_fanc_t1l_premotor_to_mn())
    params = vnc_rhythm.load_trainable(six, str(params_path or embedded_weights()))
    return WalkModel(params, mmap, spec, vnc_walk.gait_target(load_step_kinematics()).rest_action)


class RecordingAgent:
    """Wraps an agent and keeps its MN rates, muscle signals and the legs' load each step."""

    def __init__(self, agent: VNCAgent) -> None:
        self.agent = agent
        self.mn_rate: list[np.ndarray] = []
        self.signal: list[np.ndarray] = []
        self.load: list[np.ndarray] = []

    def default_params(self):
        return self.agent.default_params()

    def init(self, rng):
        return self.agent.init(rng)

    def act(self, params, carry, obs, rng):
        carry, action = self.agent.act(params, carry, obs, rng)
        self.mn_rate.append(np.asarray(carry.mn_rate))
        self.signal.append(np.asarray(vnc_walk.channel_signal(carry.activation)))
        self.load.append(leg_load(obs["contact_forces"]))
        return carry, action


class BodyRun(NamedTuple):
    descending: np.ndarray
    rollout: Rollout
    mn_rate: np.ndarray  # (T, 6, M)
    signal: np.ndarray  # (T, 6, n_channels) agonist − antagonist activation (claw: activation)
    load: np.ndarray  # (T, 6) leg load, µN
    dt: float
    transient: float

    @property
    def analysed(self) -> slice:
        return slice(int(round(self.transient / self.dt)), None)

    @property
    def speed(self) -> float:
        return self.rollout.mean_forward_speed()

    @property
    def yaw_rate(self) -> float:
        yaw = self.rollout.yaw_rates[self.analysed]
        return float(np.mean(yaw)) if len(yaw) else float("nan")  # fell before the transient ended

    @property
    def upright(self) -> bool:
        return self.rollout.termination is None

    @property
    def frequency(self) -> float:
        """Stepping frequency, Hz; NaN when the fly fell within ``MIN_ANALYSED`` s of the transient's end."""
        signal = self.signal[self.analysed]
        if len(signal) * self.dt < MIN_ANALYSED:
            return float("nan")
        return dominant_frequency(signal.reshape(-1, self.signal[0].size), self.dt)

    @property
    def phase_matrix(self) -> np.ndarray:
        """From the stance command (claw muscle)."""
        return phase_matrix(self.signal[self.analysed, :, vnc_walk.CLAW], self.dt, self.frequency)

    @property
    def footfall_phase_matrix(self) -> np.ndarray:
        """From the body: stance = leg load above :data:`STANCE_LOAD`."""
        stance = (self.load[self.analysed] > STANCE_LOAD).astype(float)
        return phase_matrix(stance, self.dt, self.frequency)

    def summary(self) -> dict:
        phases, footfalls = self.phase_matrix, self.footfall_phase_matrix
        stance = self.load[self.analysed] > STANCE_LOAD
        return {
            "descending": dict(zip(vnc.DESCENDING_CHANNELS, map(float, self.descending))),
            "speed_mm_s": self.speed,
            "yaw_rate_rad_s": self.yaw_rate,
            "upright": self.upright,
            "termination": self.rollout.termination,
            "duration_s": self.rollout.duration,
            "frequency_hz": self.frequency,
            "tripod_index": tripod_index(phases),
            "footfall_tripod_index": tripod_index(footfalls),
            "duty_factor": dict(zip(LEGS, np.round(stance.mean(axis=0), 3).tolist())),
            "phase_matrix_deg": np.round(phases, 1).tolist(),
            "footfall_phase_matrix_deg": np.round(footfalls, 1).tolist(),
        }


def dominant_frequency(x: np.ndarray, dt: float, band: tuple[float, float] = (2.0, 25.0)) -> float:
    """Peak frequency (Hz) of the summed power spectrum of (T, N) signals within ``band``; 0 if flat or empty.

    Empty: a fly that fell over before the transient ended has nothing to analyse.
    """
    if len(x) < 2:
        return 0.0
    centred = x - x.mean(axis=0)
    n_fft = 8 * len(centred)  # zero padding: a finer frequency grid
    power = (np.abs(np.fft.rfft(centred, n=n_fft, axis=0)) ** 2).sum(axis=1)
    freqs = np.fft.rfftfreq(n_fft, dt)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    if power[inside].max() <= 1e-12 * len(centred):
        return 0.0
    return float(freqs[inside][np.argmax(power[inside])])


def phase_matrix(x: np.ndarray, dt: float, frequency: float) -> np.ndarray:
    """(L, L) phase of leg j relative to leg i at ``frequency``, degrees in [0, 360); NaN without a rhythm."""
    if frequency <= 0:
        return np.full((x.shape[1], x.shape[1]), np.nan)
    t = np.arange(x.shape[0]) * dt
    c = np.exp(-2j * np.pi * frequency * t) @ (x - x.mean(0))
    return np.degrees(np.angle(c[None, :] * np.conj(c[:, None]))) % 360


def tripod_index(phases: np.ndarray) -> float:
    """Mean cos(phase − tripod phase) over leg pairs i < j: 1 is a perfect tripod."""
    i, j = np.triu_indices(len(LEGS), k=1)
    return float(np.mean(np.cos(np.radians(phases[i, j] - TRIPOD_PHASE[i, j]))))


def run_on_body(model: WalkModel, descending, duration: float = 2.0, seed: int = 0, transient: float = 0.5,
                frame_interval: float | None = None, proprioception: bool = False) -> BodyRun:
    """One closed-loop episode on flat ground under a tonic ``descending`` drive."""
    if not 0 <= transient < duration:
        raise ValueError(f"transient={transient} s must lie in [0, duration={duration}) s")
    env = FlyEnv(duration=duration)
    agent = RecordingAgent(model.agent(env.control_dt, descending, proprioception))
    rollout = run_episode(env, agent, seed=seed, frame_interval=frame_interval)
    env.close()
    return BodyRun(np.asarray(descending, dtype=float), rollout, np.stack(agent.mn_rate), np.stack(agent.signal),
                   np.stack(agent.load), env.control_dt, transient)


def forward(drive: float) -> np.ndarray:
    return np.array([drive, 0.0, 0.0, 0.0])


def seed_summary(drive: float, runs: list[BodyRun]) -> dict:
    """Speeds and falls of several episodes at one forward drive."""
    speed = np.array([r.speed for r in runs])
    upright = np.array([r.upright for r in runs])
    return {"forward": drive, "speed_mm_s": speed.round(2).tolist(), "upright": upright.tolist(),
            "mean_speed_mm_s": float(speed.mean()), "upright_fraction": float(upright.mean()),
            "mean_speed_upright_mm_s": float(speed[upright].mean()) if upright.any() else float("nan")}


def plot_speed_vs_drive(rows: list[dict], path: Path, seed_rows: list[dict] = ()) -> None:
    """Forward speed and stepping frequency on the body against forward drive.

    With ``seed_rows`` (:func:`seed_summary`), every episode's speed is a dot
    (hollow: the fly fell over) and the line is their mean.
    """
    import matplotlib.pyplot as plt

    drive = [r["descending"]["forward"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
    if seed_rows:
        for row in seed_rows:
            for speed, upright in zip(row["speed_mm_s"], row["upright"]):
                ax.plot(row["forward"], speed, "o", ms=4, color="C0", mfc="C0" if upright else "none")
        ax.plot([r["forward"] for r in seed_rows], [r["mean_speed_mm_s"] for r in seed_rows], "-", color="C0",
                label=f"mean of {len(seed_rows[0]['speed_mm_s'])} episodes (hollow: fell over)")
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.plot(drive, [r["speed_mm_s"] for r in rows], "o-", color="C0")
    ax.axhline(10.0, color="C0", lw=0.8, ls=":")
    ax.set_xlabel("forward descending drive (model units)")
    ax.set_ylabel("forward speed, mm/s", color="C0")
    freq = ax.twinx()
    freq.plot(drive, [r["frequency_hz"] for r in rows], "s--", color="C1")
    freq.set_ylabel("stepping frequency, Hz", color="C1")
    ax.set_title("VNC on the body, flat ground")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_phase_matrix(phases: np.ndarray, path: Path, title: str) -> None:
    """Heat map of leg-to-leg phases (degrees), the tripod's expectation in brackets."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4), constrained_layout=True)
    image = ax.imshow(phases, cmap="twilight", vmin=0, vmax=360)
    for i in range(len(LEGS)):
        for j in range(len(LEGS)):
            ax.text(j, i, f"{phases[i, j]:.0f}\n({TRIPOD_PHASE[i, j]:.0f})", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(LEGS)), LEGS)
    ax.set_yticks(range(len(LEGS)), LEGS)
    ax.set_xlabel("leg j")
    ax.set_ylabel("relative to leg i")
    fig.colorbar(image, ax=ax, label="phase of j after i, degrees")
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_activity(run: BodyRun, spec: vnc.LegSpec, path: Path, window: float = 0.5) -> None:
    """Gait diagram (stance from leg load), left-front muscles and left-front MN raster."""
    import matplotlib.pyplot as plt

    steps = int(round(window / run.dt))
    stop = min(run.signal.shape[0], int(round(run.transient / run.dt)) + steps)
    start = max(0, stop - steps)  # a run that fell early: its last ``window`` s, transient included
    t = np.arange(start, stop) * run.dt
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True, constrained_layout=True,
                             gridspec_kw={"height_ratios": [1, 1.2, 2]})
    stance = run.load[start:stop] > STANCE_LOAD
    for leg in range(len(LEGS)):
        axes[0].fill_between(t, leg - 0.4, leg + 0.4, where=stance[:, leg], color="k", step="mid")
    axes[0].set_yticks(range(len(LEGS)), LEGS)
    axes[0].set_ylabel("stance (load)")
    for c, name in enumerate(motor_map.CHANNEL_NAMES):
        axes[1].plot(t, run.signal[start:stop, 0, c], label=name, lw=1)
    axes[1].set_ylabel("lf muscle signal\n(agonist − antagonist)")
    axes[1].legend(fontsize=6, ncol=3, loc="upper right")
    order = np.argsort(spec.mn_module, kind="stable")
    axes[2].imshow(run.mn_rate[start:stop, 0, order].T, aspect="auto", cmap="magma",
                   extent=(t[0], t[-1], len(order) - 0.5, -0.5), interpolation="nearest")
    modules = spec.mn_module[order]
    edges = [0, *np.flatnonzero(modules[1:] != modules[:-1]) + 1]
    axes[2].set_yticks(edges, [str(modules[e]) for e in edges], fontsize=6)
    axes[2].set_ylabel("lf motor neurons (by module)")
    axes[2].set_xlabel("time, s")
    drive = ", ".join(f"{name} {value:g}" for name, value in zip(vnc.DESCENDING_CHANNELS, run.descending) if value)
    axes[0].set_title(f"descending: {drive or 'none'}; {run.speed:.1f} mm/s, {run.frequency:.1f} Hz", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def silencing_markdown(rows: list[dict]) -> str:
    """Before/after table of silencing experiments (rows from :func:`evaluate`)."""
    lines = ["| silenced | speed, mm/s | stepping, Hz | tripod index: stance command / footfalls | upright "
             "| in-air FTi rhythm: Hz, flexor/extensor corr, amplitude |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        air = r["in_air"]
        corr = "—" if np.isnan(air["fti_flexion_corr"]) else f"{air['fti_flexion_corr']:+.2f}"  # no rhythm
        lines.append(f"| {r['silenced'] or 'none'} | {r['speed_mm_s']:.1f} | {r['frequency_hz']:.1f} | "
                     f"{r['tripod_index']:+.2f} / {r['footfall_tripod_index']:+.2f} | {'yes' if r['upright'] else 'no'} | "
                     f"{air['fti_flexion_hz']:.1f}, {corr}, {air['fti_flexion_amp']:.3f} |")
    return "\n".join(lines) + "\n"


def evaluate(model: WalkModel, out_dir: Path, drives=(0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25),
             steer: float = 1.0, turn_drive: float = 1.5, backward: float = 1.5, duration: float = 2.0,
             silence: tuple[tuple[str, ...], ...] = (), silence_drive: float = 1.5, seed: int = 0,
             video: bool = True, seeds: int = 1, proprioception: bool = False) -> dict:
    """Run the model on the body and write ``summary.json`` and plots into ``out_dir``.

    Returns the summary: forward runs over ``drives``, left and right steering,
    backward, the in-air rhythm of the left front leg over ``drives``, and each
    silencing experiment (in the air and on the body at ``silence_drive``),
    all from ``seed``; and ``forward_seeds``: speed and whether the fly stayed
    upright at each drive for ``seeds`` episodes (seed, seed + 1, ...; the
    initial premotor state differs), since one episode can fall where the next
    walks. ``proprioception=True`` feeds the body's sensors into the premotor
    units (their weights are untrained: off by default, see docs/vnc.md).
    """
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    conditions = [(f"forward {d:g}", forward(d)) for d in drives]
    conditions += [("steer left", np.array([turn_drive, steer, 0.0, 0.0])),
                   ("steer right", np.array([turn_drive, 0.0, steer, 0.0])),
                   ("backward", np.array([0.0, 0.0, 0.0, backward]))]
    runs = {}
    for name, descending in tqdm(conditions, desc="on the body", unit="run"):
        runs[name] = run_on_body(model, descending, duration, seed, proprioception=proprioception)
    forward_rows = [runs[f"forward {d:g}"].summary() for d in drives]
    seed_rows = []
    for d in tqdm(drives if seeds > 1 else (), desc=f"{seeds} seeds per drive", unit="drive"):
        episodes = [runs[f"forward {d:g}"], *(run_on_body(model, forward(d), duration, seed + k,
                                                          proprioception=proprioception) for k in range(1, seeds))]
        seed_rows.append(seed_summary(d, episodes))
    best = max(drives, key=lambda d: runs[f"forward {d:g}"].speed)
    summary = {
        "forward": forward_rows,
        "forward_seeds": seed_rows,
        "steer_left": runs["steer left"].summary(),
        "steer_right": runs["steer right"].summary(),
        "backward": runs["backward"].summary(),
        "fastest_drive": best,
        "in_air": vnc_rhythm.frequency_vs_drive(model.params, model.mmap, drives, model.spec.n_sensory),
        "sign_violations": vnc.sign_violations(model.params),
    }
    plot_speed_vs_drive(forward_rows, out_dir / "speed_vs_drive.png", seed_rows)
    fastest = runs[f"forward {best:g}"]
    plot_phase_matrix(fastest.phase_matrix, out_dir / "phase_matrix.png",
                      f"forward drive {best:g}: tripod index {tripod_index(fastest.phase_matrix):+.2f}")
    plot_activity(fastest, model.spec, out_dir / "activity.png")
    silencing = []
    for group in ((), *silence):
        silenced = model.silenced(group) if group else model
        baseline = runs.get(f"forward {silence_drive:g}") if not group else None  # already run above
        body = (baseline or run_on_body(silenced, forward(silence_drive), duration, seed,
                                        proprioception=proprioception)).summary()
        body.pop("phase_matrix_deg")
        air = vnc_rhythm.frequency_vs_drive(silenced.params, model.mmap, [silence_drive], model.spec.n_sensory)[0]
        silencing.append({"silenced": "+".join(group), **body, "in_air": air})
    summary["silencing"] = silencing
    (out_dir / "silencing.md").write_text(silencing_markdown(silencing))
    if video:
        from connectofly.videos.writer import frame_interval, write_video

        env = FlyEnv(duration=duration)
        rollout = run_episode(env, model.agent(env.control_dt, forward(best), proprioception), seed=seed,
                              frame_interval=frame_interval(30.0, 0.2))
        summary["video"] = str(write_video(env.model, rollout.frames, out_dir / "walk.mp4",
                                           camera=env.physics.index.camera, fps=30.0))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


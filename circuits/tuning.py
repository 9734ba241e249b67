"""Tuning analysis of the optic lobe: flash response index, direction selectivity.

Definitions follow Lappalainen et al., "Connectome-constrained networks predict
neural activity across the fly visual system", Nature 634 (2024), Methods, as
implemented in flyvis 1.2.0 (``flash_response_index``,
``direction_selectivity_index``):

* **Flash response index (FRI)** of a cell, from its responses to an ON flash
  (luminance 1) and an OFF flash (luminance 0) of radius 6 columns on grey:
  both responses, from one frame before onset to the end of the flash, are
  shifted by the absolute value of their joint minimum, and
  ``FRI = (peak_on - peak_off) / (peak_on + peak_off)``. FRI > 0: ON cell.
* **Direction selectivity index (DSI)** from the peak rectified responses
  ``r(theta)`` to edges moving in 12 directions:
  ``DSI = |sum_theta r(theta) exp(i theta)| / max_intensity sum_theta r(theta)``
  (the denominator is shared by the ON and OFF edges), averaged over speeds.
  The preferred direction is the angle of the vector sum.

The ``*_responses`` functions run the network (central column of every type);
the index functions are plain numpy on recorded responses. Every result carries
the time step it was measured at: with ``tau_eff = max(tau, dt)`` the same
parameters respond differently at another ``dt``. A type whose peak response to
an edge polarity stays below :data:`SILENT_PEAK` is *silent* for it: its DSI and
preferred direction are NaN, never a number read from noise. Plots use
``matplotlib.figure.Figure`` directly (no pyplot, so no display is needed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from connectofly.circuits import optic_lobe as ol
from connectofly.circuits import stimuli
from connectofly.circuits.connectome import Connectome

T4_T5 = ("T4a", "T4b", "T4c", "T4d", "T5a", "T5b", "T5c", "T5d")

# Contrast preference measured in the fly (+1: depolarized by light increments,
# ON; -1: by decrements, OFF): the 32 types of flyvis 1.2.0's ground truth
# (Lappalainen et al. 2024, Extended Data), each with its source. Photoreceptors
# depolarize to light (Hardie, 1985, in Fly Photoreceptors); lamina L1-L3
# hyperpolarize (Clark et al., Neuron 2011; Silies et al., Neuron 2013), L4 is OFF
# (flyvis's ground truth, ``groundtruth_utils.polarity``); L5 is ON
# (Drews et al., Curr Biol 2020; Matulis et al., Neuron 2020); Mi1, Tm3 ON and
# Tm1, Tm2, Tm4, Tm9 OFF (Behnia et al., Nature 2014; Meier et al., Curr Biol
# 2014; Serbe et al., Neuron 2016); Mi4, C3 ON and Mi9 OFF (Strother et al., Neuron
# 2017; Arenz et al., Curr Biol 2017); CT1 ON in M10, OFF in Lo1 (Meier & Borst,
# Curr Biol 2019); T4 ON and T5 OFF (Maisak et al., Nature 2013).
KNOWN_POLARITY: dict[str, int] = {
    **{f"R{i}": +1 for i in range(1, 9)},
    "L1": -1, "L2": -1, "L3": -1, "L4": -1, "L5": +1,
    "Mi1": +1, "Tm3": +1, "Mi4": +1, "C3": +1, "CT1(M10)": +1,
    "Mi9": -1, "Tm1": -1, "Tm2": -1, "Tm4": -1, "Tm9": -1, "CT1(Lo1)": -1,
    **{t: +1 for t in T4_T5[:4]},
    **{t: -1 for t in T4_T5[4:]},
}

# Preferred directions of T4 and T5 subtypes a-d measured by Maisak et al.,
# Nature 2013 (front-to-back, back-to-front, upward, downward), as flyvis's
# analysis states them in its moving-edge angles, which are this module's
# (connectofly.circuits.stimuli). The ON subtype and the OFF subtype of a letter
# share a direction.
KNOWN_PREFERRED_DIRECTION: dict[str, float] = {
    f"{kind}{letter}": angle for kind in ("T4", "T5") for letter, angle in zip("abcd", (180.0, 0.0, 90.0, 270.0))
}


# A type whose response to a stimulus stays below this (peak rectified voltage for
# edges, change from the pre-onset level for flashes) is silent for it: it gets no
# polarity, DSI or preferred direction.
SILENT_PEAK = 1e-4


def angular_difference(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Smallest absolute difference of two angles, degrees in [0, 180]."""
    return np.abs(np.mod(np.asarray(a, dtype=float) - b + 180.0, 360.0) - 180.0)


# -- Indices -------------------------------------------------------------------


def flash_response_index(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """FRI from responses ``(n_frames, ...)`` to an ON and an OFF flash.

    The frames should span the flash (flyvis: from one frame before onset to
    its end). Returns shape ``(...)``; positive for ON cells, negative for OFF.
    """
    on, off = np.asarray(on, dtype=float), np.asarray(off, dtype=float)
    if on.shape != off.shape:
        raise ValueError(f"on and off responses differ in shape: {on.shape} vs {off.shape}")
    shift = np.abs(np.minimum(on.min(axis=0), off.min(axis=0)))
    on_peak, off_peak = (on + shift).max(axis=0), (off + shift).max(axis=0)
    return (on_peak - off_peak) / (on_peak + off_peak + 1e-16)


def polarity_table(fri: np.ndarray, cell_types: tuple[str, ...], silent: np.ndarray) -> list[dict]:
    """One row per cell type: its FRI, predicted polarity (the sign of the FRI, as
    flyvis reads it; "none" for a type that is ``silent`` (bool per type, e.g.
    :meth:`FlashResponses.silent`) or has FRI exactly 0) and, where
    :data:`KNOWN_POLARITY` has it, the measured one and whether they agree."""
    rows = []
    for name, value, quiet in zip(cell_types, np.asarray(fri, dtype=float), np.asarray(silent, dtype=bool)):
        predicted = "none" if quiet or value == 0 else ("ON" if value > 0 else "OFF")
        known = KNOWN_POLARITY.get(name)
        measured = None if known is None else ("ON" if known > 0 else "OFF")
        rows.append({
            "cell_type": name,
            "fri": float(value),
            "predicted": predicted,
            "measured": measured,
            "match": None if known is None else predicted == measured,
        })
    return rows


def polarity_markdown(tables: dict[str, list[dict]], dt: float) -> str:
    """Tables from :func:`polarity_table`, one per network (e.g. untrained,
    trained), side by side as Markdown, with the match count of each; ``dt``
    (s) is the time step the flashes were run at."""
    names = list(tables)
    first = tables[names[0]]
    head = "| cell type | measured | " + " | ".join(f"FRI {n} | {n}" for n in names) + " |"
    lines = [f"Flash response index (flyvis's definition), dt = {dt * 1e3:g} ms.", "",
             head, "|---|---|" + "---:|---|" * len(names)]
    for i, row in enumerate(first):
        cells = []
        for n in names:
            r = tables[n][i]
            mark = "" if r["match"] is None else (" ✓" if r["match"] else " ✗")
            cells += [f"{r['fri']:+.3f}", f"{r['predicted']}{mark}"]
        lines.append(f"| {row['cell_type']} | {row['measured'] or 'unknown'} | " + " | ".join(cells) + " |")
    lines.append("")
    for n in names:
        known = [r for r in tables[n] if r["match"] is not None]
        lines.append(
            f"{n}: {sum(r['match'] for r in known)} of {len(known)} types with a measured "
            f"polarity match (a type whose flash responses stay within {SILENT_PEAK:g} of its level "
            "before onset has no polarity)."
        )
    return "\n".join(lines)


def peak_responses(responses: np.ndarray) -> np.ndarray:
    """Peak of the rectified response over frames (axis 0)."""
    return np.clip(np.asarray(responses, dtype=float), 0.0, None).max(axis=0)


def _vector_sum(peaks: np.ndarray, angles: np.ndarray, axis: int) -> np.ndarray:
    phase = np.exp(1j * np.deg2rad(np.asarray(angles, dtype=float)))
    shape = [1] * peaks.ndim
    shape[axis] = len(phase)
    return np.sum(peaks * phase.reshape(shape), axis=axis)


def direction_selectivity_index(peaks: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """DSI from peak responses ``(n_intensities, n_angles, ...)``.

    Returns ``(n_intensities, ...)``: the length of the vector sum over angles,
    divided by the largest (over intensities) sum of absolute peaks.
    """
    peaks = np.asarray(peaks, dtype=float)
    if peaks.ndim < 2 or peaks.shape[1] != len(angles):
        raise ValueError(
            f"peaks: got shape {peaks.shape}; expected (n_intensities, {len(angles)}, ...)"
        )
    length = np.abs(_vector_sum(peaks, angles, axis=1))
    norm = np.abs(peaks).sum(axis=1).max(axis=0)
    return length / (norm + 1e-15)


def preferred_direction(peaks: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Angle (degrees in [0, 360)) of the vector sum of ``peaks (n_angles, ...)``."""
    vector = _vector_sum(np.asarray(peaks, dtype=float), angles, axis=0)
    return np.mod(np.rad2deg(np.angle(vector)), 360.0)


# -- Running the protocols -----------------------------------------------------


@dataclass(frozen=True)
class FlashResponses:
    """Central-column responses to ON and OFF flashes.

    Attributes:
        time: (n_frames,) s relative to flash onset.
        on, off: (n_frames, n_types) voltages.
        window: frames used for the FRI, ``-dt <= time <= t_stim`` as in flyvis.
        dt: the network's time step, s.
    """

    time: np.ndarray
    on: np.ndarray
    off: np.ndarray
    window: slice
    dt: float

    def index(self) -> np.ndarray:
        """FRI of every cell type."""
        return flash_response_index(self.on[self.window], self.off[self.window])

    def amplitude(self) -> np.ndarray:
        """(n_types,) largest change from the frame before onset, over the FRI
        window of both flashes."""
        before = self.window.start
        change = [np.abs(r[self.window] - r[before]).max(axis=0) for r in (self.on, self.off)]
        return np.maximum(*change)

    def silent(self) -> np.ndarray:
        """(n_types,) True where neither flash moves a type by :data:`SILENT_PEAK`."""
        return self.amplitude() < SILENT_PEAK


def flash_responses(
    params: ol.OpticLobeParams,
    connectome: Connectome,
    dt: float,
    radius: int = 6,
    t_pre: float = 1.0,
    t_stim: float = 1.0,
    t_post: float = 0.0,
) -> FlashResponses:
    """Run ON and OFF flashes from the grey steady state (flyvis's protocol)."""
    extent = connectome.meta["extent"]
    movies = np.stack([
        stimuli.flash(extent, level, dt, radius, t_pre, t_stim, t_post) for level in (1.0, 0.0)
    ])
    traces = _run_batch(params, connectome, movies, dt)
    onset, n_stim = int(round(t_pre / dt)), int(round(t_stim / dt))
    time = (np.arange(movies.shape[1]) - onset) * dt  # flyvis: frame `onset` is t = 0
    return FlashResponses(time, traces[0], traces[1], slice(onset - 1, onset + n_stim + 1), dt)


@dataclass(frozen=True)
class EdgeTuning:
    """Peak responses of the central column to moving edges.

    Attributes:
        angles: (n_angles,) directions, degrees.
        speeds: (n_speeds,) columns/s.
        intensities: (n_intensities,) edge luminance (1: ON, 0: OFF).
        peaks: (n_intensities, n_angles, n_speeds, n_types) peak rectified
            voltages (flyvis's definition).
        peaks_from_grey: the same, of the rectified change from the grey
            steady state (:meth:`from_grey`).
        dt: the network's time step, s.
        definition: ``"flyvis"`` (peak rectified voltage) or ``"from grey"``.
    """

    angles: np.ndarray
    speeds: np.ndarray
    intensities: np.ndarray
    peaks: np.ndarray
    peaks_from_grey: np.ndarray
    dt: float
    definition: str = "flyvis"

    def from_grey(self) -> "EdgeTuning":
        """A variant, not flyvis's definition: the indices and plots of this tuning
        from the rectified change from grey. A cell sitting above 0 whose response
        to edges is a dip has its flyvis peak at the grey level in every direction
        (DSI 0, however selective the dip); from grey it is the depolarizing part
        of the response only. Its DSI is larger than flyvis's for any cell that
        rests above 0, so report it under its own name."""
        return replace(self, peaks=self.peaks_from_grey, definition="from grey")

    def peak(self) -> np.ndarray:
        """(n_intensities, n_types) largest peak over directions and speeds."""
        return self.peaks.max(axis=(1, 2))

    def silent(self) -> np.ndarray:
        """(n_intensities, n_types) True where a type's :meth:`peak` is below
        :data:`SILENT_PEAK`: it has no measurable response to that edge polarity."""
        return self.peak() < SILENT_PEAK

    def dsi(self) -> np.ndarray:
        """(n_intensities, n_types) DSI averaged over speeds; NaN where :meth:`silent`."""
        per_speed = direction_selectivity_index(self.peaks, self.angles)
        return np.where(self.silent(), np.nan, per_speed.mean(axis=1))

    def preferred_direction(self) -> np.ndarray:
        """(n_intensities, n_types) preferred direction (degrees) of the
        speed-averaged peaks; NaN where :meth:`silent`."""
        angle = preferred_direction(np.moveaxis(self.peaks.mean(axis=2), 1, 0), self.angles)
        return np.where(self.silent(), np.nan, angle)


def edge_tuning(
    params: ol.OpticLobeParams,
    connectome: Connectome,
    dt: float,
    angles: tuple[float, ...] = stimuli.EDGE_ANGLES,
    speeds: tuple[float, ...] = stimuli.EDGE_SPEEDS,
    intensities: tuple[float, ...] = (1.0, 0.0),
) -> EdgeTuning:
    """Run ON/OFF edges in every direction and speed from the grey steady state."""
    extent = connectome.meta["extent"]
    grey = _grey_central(params, connectome, dt)
    per_speed, per_speed_from_grey = [], []
    for speed in speeds:
        movies = np.stack([
            stimuli.moving_edge(extent, angle, speed, level, dt)
            for level in intensities
            for angle in angles
        ])
        traces = np.moveaxis(_run_batch(params, connectome, movies, dt), 1, 0)
        shape = (len(intensities), len(angles), -1)
        per_speed.append(peak_responses(traces).reshape(shape))
        per_speed_from_grey.append(peak_responses(traces - grey).reshape(shape))
    return EdgeTuning(
        np.asarray(angles, float), np.asarray(speeds, float), np.asarray(intensities, float),
        np.stack(per_speed, axis=2), np.stack(per_speed_from_grey, axis=2), dt,
    )


def _grey_central(params: ol.OpticLobeParams, connectome: Connectome, dt: float) -> np.ndarray:
    """(n_types,) central-column voltages at the grey steady state."""
    return np.asarray(ol.steady_state(params, dt).voltage)[ol.central_neurons(connectome)]


def _run_batch(
    params: ol.OpticLobeParams, connectome: Connectome, movies: np.ndarray, dt: float
) -> np.ndarray:
    """Central-column voltages ``(batch, n_frames, n_types)`` for stimuli from grey."""
    for movie in movies:
        ol.check_stimulus(movie, ol.n_columns(params), ndim=2)
    start = ol.steady_state(params, dt)
    states = jax.tree.map(lambda v: jnp.broadcast_to(v, (len(movies), *v.shape)), start)
    central = jnp.asarray(ol.central_neurons(connectome))
    run = jax.vmap(ol.simulate, in_axes=(None, 0, 0, None, None))
    _, traces = run(params, states, jnp.asarray(movies), dt, central)
    return np.asarray(traces)


MOTION_DSI_TARGET = 0.3  # a motion detector's DSI at least this (flyvis's definition)...
MOTION_DIRECTION_TOLERANCE = 45.0  # ...and its preferred direction within this of Maisak et al. 2013


def motion_table(edges: EdgeTuning, cell_types: tuple[str, ...]) -> list[dict]:
    """One row per T4/T5 subtype, each measured with the edges of its own polarity
    (T4: ON, T5: OFF): DSI, preferred direction, the measured one
    (:data:`KNOWN_PREFERRED_DIRECTION`) and the angle between them, the peak
    response, whether it is silent, and whether it passes both
    :data:`MOTION_DSI_TARGET` and :data:`MOTION_DIRECTION_TOLERANCE` (a silent
    type does not). ``edges`` must hold the ON (1) and OFF (0) edges."""
    dsi, direction, peak, silent = edges.dsi(), edges.preferred_direction(), edges.peak(), edges.silent()
    rows = []
    for name in T4_T5:
        polarity = "ON" if name.startswith("T4") else "OFF"
        level = np.flatnonzero(edges.intensities == (1.0 if polarity == "ON" else 0.0))
        if len(level) != 1:
            raise ValueError(f"edges: intensities {edges.intensities.tolist()} lack the {polarity} edge (needed for {name})")
        j, i = int(level[0]), cell_types.index(name)
        error = float(angular_difference(direction[j, i], KNOWN_PREFERRED_DIRECTION[name]))
        rows.append({
            "cell_type": name,
            "edges": polarity,
            "dsi": float(dsi[j, i]),
            "preferred_direction": float(direction[j, i]),
            "measured_direction": KNOWN_PREFERRED_DIRECTION[name],
            "direction_error": error,
            "peak": float(peak[j, i]),
            "silent": bool(silent[j, i]),
            "passes": bool(dsi[j, i] >= MOTION_DSI_TARGET and error <= MOTION_DIRECTION_TOLERANCE),
        })
    return rows


def motion_markdown(rows: list[dict], edges: EdgeTuning) -> str:
    """:func:`motion_table` rows as Markdown, stating the DSI definition, the time
    step and the speeds, with the count of types that pass."""
    def number(value: float, fmt: str) -> str:
        return "—" if np.isnan(value) else format(value, fmt)

    lines = [
        f"T4/T5 direction selectivity ({edges.definition} DSI), dt = {edges.dt * 1e3:g} ms, "
        f"edges at {', '.join(f'{v:g}' for v in edges.speeds)} columns/s in {len(edges.angles)} directions.",
        "",
        "| type | edges | DSI | preferred | measured | error | peak | |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        verdict = "silent" if r["silent"] else ("✓" if r["passes"] else "✗")
        lines.append(
            f"| {r['cell_type']} | {r['edges']} | {number(r['dsi'], '.2f')} | {number(r['preferred_direction'], '.0f')}° "
            f"| {r['measured_direction']:.0f}° | {number(r['direction_error'], '.0f')}° | {r['peak']:.2g} | {verdict} |"
        )
    lines += ["", f"{sum(r['passes'] for r in rows)} of {len(rows)} types with DSI ≥ {MOTION_DSI_TARGET} and a preferred "
              f"direction within {MOTION_DIRECTION_TOLERANCE:g}° of Maisak et al. 2013 "
              f"(silent: peak < {SILENT_PEAK:g}, no direction)."]
    return "\n".join(lines)


@dataclass(frozen=True)
class LobeTuning:
    """A network's flash and moving-edge responses and what is measured from them."""

    cell_types: tuple[str, ...]
    flashes: FlashResponses
    edges: EdgeTuning

    @property
    def dt(self) -> float:
        return self.flashes.dt

    def polarity(self) -> list[dict]:
        return polarity_table(self.flashes.index(), self.cell_types, self.flashes.silent())

    def motion(self) -> list[dict]:
        """:func:`motion_table` by flyvis's DSI definition."""
        return motion_table(self.edges, self.cell_types)

    def motion_from_grey(self) -> list[dict]:
        """:func:`motion_table` by the from-grey variant (:meth:`EdgeTuning.from_grey`)."""
        return motion_table(self.edges.from_grey(), self.cell_types)

    def summary(self) -> dict:
        """Everything as JSON-ready values (None where a silent type has no DSI or direction)."""
        return _nan_to_none({
            "dt_s": self.dt,
            "edge_speeds": self.edges.speeds.tolist(),
            "fri": {t: float(v) for t, v in zip(self.cell_types, self.flashes.index())},
            "polarity": self.polarity(),
            "motion": self.motion(),
            "motion_from_grey": self.motion_from_grey(),
        })

    def save_plots(self, out_dir: Path) -> None:
        """``fri.png``, ``flash_responses.png`` and ``t4_t5_tuning.png`` (flyvis's peaks) in ``out_dir``."""
        plot_flash_response_indices(self.flashes.index(), self.cell_types).savefig(out_dir / "fri.png", dpi=120)
        plot_flash_responses(self.flashes, self.cell_types).savefig(out_dir / "flash_responses.png", dpi=100)
        plot_polar_tuning(self.edges, self.cell_types).savefig(out_dir / "t4_t5_tuning.png", dpi=120)


def _nan_to_none(value):
    """``value`` with every float NaN inside dicts and lists replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and np.isnan(value) else value


def lobe_tuning(
    params: ol.OpticLobeParams,
    connectome: Connectome,
    dt: float,
    speeds: tuple[float, ...] = stimuli.EDGE_SPEEDS,
) -> LobeTuning:
    """Run flyvis's flash and moving-edge protocols on a network at time step ``dt``."""
    return LobeTuning(
        ol.spec_of(connectome).cell_types,
        flash_responses(params, connectome, dt),
        edge_tuning(params, connectome, dt, speeds=speeds),
    )


# -- Plots ---------------------------------------------------------------------


def plot_flash_responses(
    flashes: FlashResponses, cell_types: tuple[str, ...], n_cols: int = 9
) -> Figure:
    """Small multiples: each type's ON (orange) and OFF (blue) flash response."""
    n_rows = -(-len(cell_types) // n_cols)
    fig = Figure(figsize=(1.6 * n_cols, 1.2 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, sharex=True, squeeze=False).ravel()
    fri = flashes.index()
    for i, name in enumerate(cell_types):
        ax = axes[i]
        ax.plot(flashes.time, flashes.on[:, i], color="tab:orange", lw=0.8)
        ax.plot(flashes.time, flashes.off[:, i], color="tab:blue", lw=0.8)
        ax.axvline(0.0, color="0.7", lw=0.5)
        ax.set_title(f"{name}  FRI {fri[i]:+.2f}", fontsize=6)
        ax.tick_params(labelsize=5)
    for ax in axes[len(cell_types):]:
        ax.set_axis_off()
    fig.supxlabel("time from flash onset (s)", fontsize=7)
    fig.supylabel("voltage (a.u.)", fontsize=7)
    return fig


def plot_flash_response_indices(fri: np.ndarray, cell_types: tuple[str, ...]) -> Figure:
    """Bar chart of the FRI of every type (ON > 0, OFF < 0)."""
    fig = Figure(figsize=(max(6.0, 0.15 * len(cell_types)), 2.2), layout="constrained")
    ax = fig.subplots()
    colors = np.where(np.asarray(fri) >= 0, "tab:orange", "tab:blue")
    ax.bar(np.arange(len(fri)), fri, color=colors)
    ax.set_xticks(np.arange(len(fri)), cell_types, rotation=90, fontsize=5)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("flash response index")
    return fig


def plot_polar_tuning(
    tuning: EdgeTuning, cell_types: tuple[str, ...], all_types: tuple[str, ...] = T4_T5
) -> Figure:
    """Polar plots of speed-averaged peak responses: T4 to ON edges, T5 to OFF
    edges (any other type to both), one panel per type; a dashed line marks the
    measured preferred direction (:data:`KNOWN_PREFERRED_DIRECTION`)."""
    names = [t for t in all_types if t in cell_types]
    n_cols = 4
    n_rows = -(-len(names) // n_cols)
    fig = Figure(figsize=(2.2 * n_cols, 2.4 * n_rows), layout="constrained")
    theta = np.deg2rad(np.append(tuning.angles, tuning.angles[0]))
    dsi = tuning.dsi()
    for k, name in enumerate(names):
        ax = fig.add_subplot(n_rows, n_cols, k + 1, projection="polar")
        i = cell_types.index(name)
        for j, level in enumerate(tuning.intensities):
            if (name.startswith("T4") and level < 0.5) or (name.startswith("T5") and level > 0.5):
                continue
            r = tuning.peaks[j, :, :, i].mean(axis=1)
            color = "tab:orange" if level > 0.5 else "tab:blue"
            ax.plot(theta, np.append(r, r[0]), color=color, lw=1.2)
            ax.set_title(f"{name}  " + ("silent" if np.isnan(dsi[j, i]) else f"DSI {dsi[j, i]:.2f}"), fontsize=7)
        if name in KNOWN_PREFERRED_DIRECTION:
            known = np.deg2rad(KNOWN_PREFERRED_DIRECTION[name])
            ax.plot([known, known], [0, ax.get_rmax()], color="k", ls="--", lw=0.8)
        ax.set_yticklabels([])  # each panel has its own radial scale; the shape is what matters
        ax.tick_params(labelsize=5)
    fig.suptitle(f"{tuning.definition} DSI, dt = {tuning.dt * 1e3:g} ms", fontsize=8)
    return fig

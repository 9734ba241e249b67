"""Visual stimuli on the hexagonal column lattice: flashes, moving edges, gratings.

Every stimulus is a float32 array of shape ``(n_frames, n_columns)``, one
luminance per lattice column (:mod:`connectofly.circuits.hex_lattice` order),
ready for :func:`connectofly.circuits.optic_lobe.simulate`. Luminance is in
[0, 1] around a grey background of 0.5. The stimuli follow the protocols of
Lappalainen et al., Nature 634 (2024) (flyvis's ``Flashes`` and
``MovingEdge``), drawn directly on the columns rather than rendered through
flyvis's pixel-to-ommatidium box filter:

* positions and speeds are in columns (the spacing of neighbouring columns,
  about 5.8 degrees of visual angle);
* directions are angles in degrees in the plane of
  :func:`connectofly.circuits.hex_lattice.to_cartesian`, counterclockwise from
  +x: the convention of flyvis's ``moving_angle`` (checked against its
  renderer: angle 0 moves towards +x, 90 towards +y);
* a moving edge lights a band ``height`` columns wide across its direction of
  motion (flyvis: 9 LEDs of 2.25 degrees), or the full field.
"""

from __future__ import annotations

import numpy as np

from connectofly.circuits import hex_lattice

BACKGROUND = 0.5
COLUMN_SPACING = np.sqrt(3.0)  # distance of neighbouring columns in to_cartesian units
LED_DEGREES, COLUMN_DEGREES = 2.25, 5.8  # flyvis's LED width and column spacing
EDGE_ANGLES = tuple(range(0, 360, 30))  # the 12 directions of flyvis's moving edges
EDGE_SPEEDS = (2.4, 4.8, 9.7, 13.0, 19.0, 25.0)  # columns/s, flyvis's moving edges
EDGE_START = -10 * LED_DEGREES / COLUMN_DEGREES  # first and last edge position,
EDGE_END = 11 * LED_DEGREES / COLUMN_DEGREES  # in columns from the centre
EDGE_HEIGHT = 9 * LED_DEGREES / COLUMN_DEGREES  # columns across the motion


def _n_frames(duration: float, dt: float) -> int:
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    if duration < 0:
        raise ValueError(f"duration must be >= 0, got {duration}")
    return int(round(duration / dt))


def _check_luminance(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def column_positions(extent: int) -> tuple[np.ndarray, np.ndarray]:
    """Planar ``(x, y)`` of every column in units of the column spacing."""
    x, y = hex_lattice.to_cartesian(*hex_lattice.columns(extent))
    return x / COLUMN_SPACING, y / COLUMN_SPACING


def hex_disc(extent: int, radius: int) -> np.ndarray:
    """Boolean mask of the columns within ``radius`` hex steps of the centre
    (``radius = -1``: every column, a full-field flash)."""
    u, v = hex_lattice.columns(extent)
    if radius == -1:
        return np.ones(len(u), dtype=bool)
    if radius < 0:
        raise ValueError(f"radius must be >= 0 or -1 (full field), got {radius}")
    return np.maximum(np.maximum(np.abs(u), np.abs(v)), np.abs(u + v)) <= radius


def flash(
    extent: int,
    intensity: float,
    dt: float,
    radius: int = 6,
    t_pre: float = 1.0,
    t_stim: float = 1.0,
    t_post: float = 1.0,
    background: float = BACKGROUND,
) -> np.ndarray:
    """Grey, then a disc of ``intensity`` (1: ON flash, 0: OFF flash), then grey.

    flyvis's ``Flashes`` uses radius 6, 1 s of stimulus and grey 1 s before and
    after. The stimulus starts at frame ``round(t_pre / dt)``.
    """
    _check_luminance("intensity", intensity)
    _check_luminance("background", background)
    disc = hex_disc(extent, radius)
    grey = np.full(disc.shape, background, dtype=np.float32)
    lit = np.where(disc, intensity, background).astype(np.float32)
    return np.concatenate([
        np.tile(grey, (_n_frames(t_pre, dt), 1)),
        np.tile(lit, (_n_frames(t_stim, dt), 1)),
        np.tile(grey, (_n_frames(t_post, dt), 1)),
    ])


def edge_position(angle: float, extent: int) -> tuple[np.ndarray, np.ndarray]:
    """Position of every column along the direction ``angle`` (degrees) and
    across it (90 degrees counterclockwise), in columns."""
    x, y = column_positions(extent)
    theta = np.deg2rad(angle)
    return x * np.cos(theta) + y * np.sin(theta), -x * np.sin(theta) + y * np.cos(theta)


def moving_edge(
    extent: int,
    angle: float,
    speed: float,
    intensity: float,
    dt: float,
    start: float = EDGE_START,
    end: float = EDGE_END,
    t_pre: float = 0.0,
    t_post: float = 0.0,
    height: float | None = EDGE_HEIGHT,
    background: float = BACKGROUND,
) -> np.ndarray:
    """An edge sweeping across the lattice in direction ``angle`` at ``speed``.

    The edge starts ``start`` columns from the centre along the direction of
    motion and stops at ``end``; the columns it has passed, within a band
    ``height`` columns wide centred on the line of motion through the centre
    (None: the full field), take ``intensity`` (1: ON edge, 0: OFF edge); all
    others stay at ``background``. ``t_pre`` s of grey come first and the last
    frame is held for ``t_post`` s. The edge crosses the central column
    ``(0 - start) / speed`` s after the sweep starts.
    """
    _check_luminance("intensity", intensity)
    _check_luminance("background", background)
    if speed <= 0:
        raise ValueError(f"speed must be > 0 columns/s, got {speed}")
    if end <= start:
        raise ValueError(f"end ({end}) must be beyond start ({start})")
    if height is not None and height <= 0:
        raise ValueError(f"height must be > 0 columns or None (full field), got {height}")
    along, across = edge_position(angle, extent)
    in_band = np.ones_like(across, dtype=bool) if height is None else np.abs(across) <= height / 2
    n_sweep = max(_n_frames((end - start) / speed, dt), 1)
    front = start + speed * dt * np.arange(1, n_sweep + 1)
    passed = (along[None, :] <= front[:, None]) & in_band[None, :]
    sweep = np.where(passed, intensity, background)
    grey = np.full((_n_frames(t_pre, dt), len(along)), background)
    hold = np.tile(sweep[-1], (_n_frames(t_post, dt), 1))
    return np.concatenate([grey, sweep, hold]).astype(np.float32)


def edge_crossing_frame(speed: float, dt: float, start: float = EDGE_START) -> int:
    """Frame (of the sweep) at which the edge reaches the central column."""
    return int(np.ceil(-start / (speed * dt))) - 1


def grating(
    extent: int,
    angle: float,
    wavelength: float,
    speed: float,
    dt: float,
    duration: float,
    contrast: float = 1.0,
    mean: float = BACKGROUND,
) -> np.ndarray:
    """A sinusoidal grating drifting in direction ``angle`` (degrees).

    ``mean + contrast * mean * sin(2 pi (position - speed t) / wavelength)``
    with the wavelength in columns and the speed in columns/s.
    """
    if wavelength <= 0:
        raise ValueError(f"wavelength must be > 0 columns, got {wavelength}")
    if not 0.0 <= contrast <= 1.0:
        raise ValueError(f"contrast must lie in [0, 1], got {contrast}")
    _check_luminance("mean", mean)
    if mean * (1 + contrast) > 1.0:
        raise ValueError(f"mean {mean} with contrast {contrast} exceeds luminance 1")
    position, _ = edge_position(angle, extent)
    t = dt * np.arange(_n_frames(duration, dt))
    phase = 2 * np.pi * (position[None, :] - speed * t[:, None]) / wavelength
    return (mean + contrast * mean * np.sin(phase)).astype(np.float32)

"""Human-readable pictures of compound-eye readouts, for videos and plots.

Each eye is drawn as its lattice of flat-topped hexagons
(:func:`connectofly.circuits.hex_lattice.to_cartesian`, ``+y`` up), which is how
the ommatidia lie over the eye camera's image: the picture of an eye is what its
camera sees, pooled into ommatidia. The left eye's picture is on the left, the
right eye's on the right, so the fly's front is in the middle.
"""

from __future__ import annotations

import functools

import numpy as np

from connectofly.circuits import hex_lattice
from connectofly.envs.eye_geometry import EXTENT, N_OMMATIDIA

_SQRT3 = np.sqrt(3.0)


def _round_axial(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hexagon centre to fractional axial coordinates (cube rounding)."""
    s = -u - v
    ru, rv, rs = np.rint(u), np.rint(v), np.rint(s)
    du, dv, ds = np.abs(ru - u), np.abs(rv - v), np.abs(rs - s)
    fix_u = (du > dv) & (du > ds)
    fix_v = ~fix_u & (dv > ds)
    ru = np.where(fix_u, -rv - rs, ru)
    rv = np.where(fix_v, -ru - rs, rv)
    return ru.astype(np.int64), rv.astype(np.int64)


@functools.cache
def hexagon_index_map(pixels_per_unit: float) -> np.ndarray:
    """``(height, width)`` lattice index of each pixel of one eye's picture, -1 outside.

    ``pixels_per_unit`` is the hexagon circumradius in pixels.
    """
    if not pixels_per_unit > 0:
        raise ValueError(f"pixels_per_unit must be > 0, got {pixels_per_unit}")
    half_width = 1.5 * EXTENT + 1.0
    half_height = _SQRT3 * (EXTENT + 0.5)
    width = int(np.ceil(2 * half_width * pixels_per_unit))
    height = int(np.ceil(2 * half_height * pixels_per_unit))
    x = (np.arange(width) + 0.5) / pixels_per_unit - half_width
    y_down = (np.arange(height) + 0.5) / pixels_per_unit - half_height
    x, y_down = np.meshgrid(x, y_down)
    v = x / 1.5
    u = y_down / _SQRT3 - v / 2.0
    u, v = _round_axial(u, v)
    inside = (np.abs(u) <= EXTENT) & (np.abs(v) <= EXTENT) & (np.abs(u + v) <= EXTENT)
    lattice_u, lattice_v = hex_lattice.columns(EXTENT)
    lookup = np.full((2 * EXTENT + 1, 2 * EXTENT + 1), -1)
    lookup[lattice_u + EXTENT, lattice_v + EXTENT] = np.arange(N_OMMATIDIA)
    index = np.where(inside, lookup[np.clip(u + EXTENT, 0, 2 * EXTENT), np.clip(v + EXTENT, 0, 2 * EXTENT)], -1)
    index.setflags(write=False)
    return index


def eye_image(
    readout,
    pixels_per_unit: float = 5.0,
    gap: int = 8,
    background: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """An RGB picture of both eyes' readouts.

    Args:
        readout: ``(2, 721, 2)`` yellow/pale readout in lattice order, as from
            :func:`connectofly.envs.raycast.render_eyes`, values in ``[0, 1]``.
            Each ommatidium is drawn as the grey level of its own channel.
        pixels_per_unit: hexagon circumradius in pixels.
        gap: pixels between the two eyes.
        background: RGB outside the hexagons.

    Returns:
        ``(height, 2 * width + gap, 3)`` uint8 image.
    """
    readout = np.asarray(readout, dtype=np.float64)
    if readout.shape != (2, N_OMMATIDIA, 2):
        raise ValueError(f"readout must have shape (2, {N_OMMATIDIA}, 2), got {readout.shape}")
    grey = np.clip(np.nan_to_num(readout.sum(axis=-1)), 0.0, 1.0)
    levels = np.rint(grey * 255).astype(np.uint8)
    index = hexagon_index_map(float(pixels_per_unit))
    height, width = index.shape
    image = np.empty((height, 2 * width + gap, 3), dtype=np.uint8)
    image[:] = np.asarray(background, dtype=np.uint8)
    for eye in range(2):
        panel = image[:, eye * (width + gap) : eye * (width + gap) + width]
        inside = index >= 0
        panel[inside] = levels[eye, index[inside], None]
    return image

"""Pictures of a fly's neural activity, drawn under a video's 3-D view.

Pure image functions (numpy and PIL): :func:`activity_panel` turns the activity
recorded with the frames of a rollout (:attr:`FrameState.activity
<connectofly.videos.frames.FrameState>`) into one image per frame. An activity
dict holds

* ``"lobe"``: cell type name -> ``(2, 721)`` rate minus grey-rest rate per
  column (left eye row 0, right eye row 1, in lattice order);
* ``"dn"`` (optional): ``(2,)`` left and right descending drive;
* ``"mn"`` (optional): ``(6, M)`` motor-neuron rates, one row per leg.

A panel's height depends only on its width, the number of cell types and which
keys are present, so all frames of a video have the same size.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from connectofly.envs.eye_geometry import N_OMMATIDIA
from connectofly.envs.eye_image import hexagon_index_map

WINDOW = 90  # frames of history shown by the descending traces and the motor raster
DN_RANGE = (-0.5, 1.5)
DN_COLOURS = ((255, 150, 40), (80, 190, 255))  # left, right
PAIR_WIDTH = 320  # px per cell type's pair of eyes; the panel fits as many side by side as it can
TRACE_HEIGHT = 110
RASTER_HEIGHT = 120
LABEL_HEIGHT = 16
MARGIN = 28  # left margin of the traces and the raster, for axis labels
GAP = 8
GREY = (110, 110, 110)
WHITE = (255, 255, 255)


@functools.cache
def colormap(name: str) -> np.ndarray:
    """``(256, 3)`` uint8 lookup table of a matplotlib colormap."""
    import matplotlib

    return np.rint(matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def colour(values, low: float, high: float, name: str) -> np.ndarray:
    """RGB uint8 of ``values`` on colormap ``name`` spanning ``[low, high]`` (clipped; NaN as 0)."""
    levels = np.clip((np.nan_to_num(np.asarray(values, np.float64)) - low) / (high - low), 0.0, 1.0)
    return colormap(name)[np.rint(levels * 255).astype(np.intp)]


def lattice_image(values, pixels_per_unit: float, limit: float) -> np.ndarray:
    """One eye's ``(721,)`` column values as hexagons, blue (-limit) to white (0) to red (+limit).

    Returns:
        ``(H, W, 3)`` uint8 image, black outside the hexagons (the shape of
        :func:`~connectofly.envs.eye_image.hexagon_index_map`).
    """
    values = np.asarray(values)
    if values.shape != (N_OMMATIDIA,):
        raise ValueError(f"values must have shape ({N_OMMATIDIA},), got {values.shape}")
    index = hexagon_index_map(float(pixels_per_unit))
    image = np.zeros((*index.shape, 3), np.uint8)
    inside = index >= 0
    image[inside] = colour(values, -limit, limit, "RdBu_r")[index[inside]]
    return image


def _lobe_grid(lobe: dict, width: int) -> np.ndarray:
    """Each cell type's left and right eye, side by side, labelled, as many types a row as fit."""
    per_row = max(1, width // PAIR_WIDTH)
    cell = width // per_row
    pixels_per_unit = (cell - 3 * GAP) / 2 / hexagon_index_map(1.0).shape[1]
    eye_height, eye_width = hexagon_index_map(pixels_per_unit).shape
    row_height = LABEL_HEIGHT + eye_height + GAP
    n_rows = -(-len(lobe) // per_row)
    canvas = np.zeros((n_rows * row_height, width, 3), np.uint8)
    labels = []
    for k, (name, rates) in enumerate(lobe.items()):
        rates = np.asarray(rates, np.float64)
        limit = max(float(np.nanmax(np.abs(rates), initial=0.0)), 1e-6)
        top, left = (k // per_row) * row_height, (k % per_row) * cell + GAP
        for eye, side in enumerate(("left", "right")):
            x = left + eye * (eye_width + GAP)
            canvas[top + LABEL_HEIGHT : top + LABEL_HEIGHT + eye_height, x : x + eye_width] = lattice_image(
                rates[eye], pixels_per_unit, limit
            )
            labels.append(((x, top + 2), f"{name} {side}", WHITE))
        labels.append(((left + 2 * eye_width - 40, top + 2), f"±{limit:.2g}", GREY))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for xy, text, fill in labels:
        draw.text(xy, text, fill=fill)
    return np.asarray(image)


def _slot_x(slot: int | np.ndarray, width: int) -> np.ndarray:
    """x of history slot ``slot`` (0 = oldest shown, WINDOW - 1 = now) in a plot right of the margin."""
    return MARGIN + np.asarray(slot) * (width - MARGIN - GAP) / (WINDOW - 1)


def _dn_traces(history: list[dict], width: int) -> np.ndarray:
    """The two descending units over the last WINDOW frames, on a fixed y range."""
    image = Image.new("RGB", (width, TRACE_HEIGHT))
    draw = ImageDraw.Draw(image)
    low, high = DN_RANGE
    top, bottom = LABEL_HEIGHT + 4, TRACE_HEIGHT - 6

    def y(value):
        return bottom + (np.clip(value, low, high) - low) / (high - low) * (top - bottom)

    for level in (0.0, 1.0):
        draw.line([(MARGIN, y(level)), (width - GAP, y(level))], fill=(50, 50, 50))
        draw.text((4, y(level) - 6), f"{level:g}", fill=GREY)
    recent = history[-WINDOW:]
    slots = [(WINDOW - len(recent) + i, np.asarray(a["dn"], np.float64)) for i, a in enumerate(recent) if "dn" in a]
    for unit, (fill, name) in enumerate(zip(DN_COLOURS, ("DN left", "DN right"))):
        points = [(float(_slot_x(slot, width)), float(y(dn[unit]))) for slot, dn in slots]
        if len(points) > 1:
            draw.line(points, fill=fill, width=2)
        if points:
            x, y_now = points[-1]
            draw.ellipse([x - 3, y_now - 3, x + 3, y_now + 3], fill=fill)
        draw.text((MARGIN + 80 * unit, 2), name, fill=fill)
    return np.asarray(image)


def _mn_raster(history: list[dict], width: int) -> np.ndarray:
    """Motor-neuron rates (rows, legs stacked) over the last WINDOW frames (columns),
    normalized by their maximum over the window."""
    recent = history[-WINDOW:]
    n_neurons = np.asarray(recent[-1]["mn"]).size
    rates = np.zeros((n_neurons, WINDOW), np.float32)
    for i, activity in enumerate(recent):
        if "mn" in activity:
            rates[:, WINDOW - len(recent) + i] = np.asarray(activity["mn"], np.float32).reshape(-1)
    peak = max(float(np.nanmax(rates)), 1e-6)
    plot_width = width - MARGIN - GAP
    scaled = np.asarray(Image.fromarray(rates / peak).resize((plot_width, RASTER_HEIGHT), Image.BOX))
    canvas = np.zeros((LABEL_HEIGHT + RASTER_HEIGHT + GAP, width, 3), np.uint8)
    canvas[LABEL_HEIGHT : LABEL_HEIGHT + RASTER_HEIGHT, MARGIN : MARGIN + plot_width] = colour(scaled, 0.0, 1.0, "magma")
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 2), f"motor neurons (6 legs stacked, max {peak:.2g})", fill=WHITE)
    for leg in range(6):
        row = LABEL_HEIGHT + leg * RASTER_HEIGHT / 6
        if leg:
            draw.line([(MARGIN, row), (MARGIN + plot_width - 1, row)], fill=GREY)
        draw.text((6, row + RASTER_HEIGHT / 12 - 6), f"{leg + 1}", fill=GREY)
    return np.asarray(image)


def activity_panel(history: list[dict], width: int) -> np.ndarray:
    """The current frame's neural activity as one ``(height, width, 3)`` uint8 image.

    From top to bottom: each optic-lobe cell type's left and right eye (colour
    range ``±`` that type's largest ``|value|`` now); the two descending units
    over the last :data:`WINDOW` frames; the motor-neuron raster over the same
    window. Parts whose key the current frame lacks are left out.

    Args:
        history: activity dicts of the frames so far, the current one last.
        width: the panel's width, px.
    """
    current = history[-1]
    parts = [_lobe_grid(current["lobe"], width)]
    if "dn" in current:
        parts.append(_dn_traces(history, width))
    if "mn" in current:
        parts.append(_mn_raster(history, width))
    return np.concatenate(parts, axis=0)

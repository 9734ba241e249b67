"""The hexagonal column lattice of the optic lobe (axial coordinates).

Columns are indexed by integer axial coordinates ``(u, v)``. A lattice of
*extent* ``n`` holds every column within ``n`` steps of the centre:
``u`` in ``[-n, n]`` and ``v`` in ``[max(-n, -n - u), min(n, n - u)]``, which is
``3 n (n + 1) + 1`` columns (721 at extent 15). Columns are ordered by ``u``
ascending, then ``v`` ascending: the order flyvis uses, so a stimulus vector of
length ``n_columns(extent)`` maps one value to each column.
"""

from __future__ import annotations

import numpy as np


def n_columns(extent: int) -> int:
    """Number of columns in a hexagonal lattice of the given extent."""
    if extent < 0:
        raise ValueError(f"extent must be >= 0, got {extent}")
    return 3 * extent * (extent + 1) + 1


def columns(extent: int, stride: tuple[int, int] = (1, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Axial coordinates ``(u, v)`` of the lattice columns, in lattice order.

    Args:
        extent: lattice radius in columns.
        stride: keep only columns with ``u % stride[0] == 0`` and
            ``v % stride[1] == 0`` (cell types that tile sparsely, such as Lawf1).
    """
    if extent < 0:
        raise ValueError(f"extent must be >= 0, got {extent}")
    u_stride, v_stride = stride
    if u_stride < 1 or v_stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    us, vs = [], []
    for u in range(-extent, extent + 1):
        v = np.arange(max(-extent, -extent - u), min(extent, extent - u) + 1)
        v = v[(u % u_stride == 0) & (v % v_stride == 0)]
        us.append(np.full(len(v), u))
        vs.append(v)
    return np.concatenate(us).astype(np.int64), np.concatenate(vs).astype(np.int64)


# A column and its six neighbours, as axial offsets (the column itself first).
NEIGHBOUR_OFFSETS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1))


def neighbourhoods(extent: int) -> np.ndarray:
    """``(n_columns, 7)`` lattice index of each column and its six neighbours
    (:data:`NEIGHBOUR_OFFSETS`); a neighbour beyond the lattice is ``n_columns``,
    one past the last column, so a caller can pad with a row of zeros."""
    u, v = columns(extent)
    index = {(a, b): i for i, (a, b) in enumerate(zip(u.tolist(), v.tolist()))}
    return np.array([[index.get((a + du, b + dv), len(u)) for du, dv in NEIGHBOUR_OFFSETS]
                     for a, b in zip(u.tolist(), v.tolist())], dtype=np.int64)


def to_cartesian(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Planar positions ``(x, y)`` of columns for hexagons of unit size.

    Neighbouring columns are ``sqrt(3)`` apart. The mapping is the one flyvis
    draws its lattices and renders its stimuli with: ``x = 3/2 v``,
    ``y = -sqrt(3) (u + v / 2)``. Directions (moving edges, gratings) are angles
    in this plane, counterclockwise from +x.
    """
    u = np.asarray(u, dtype=float)
    v = np.asarray(v, dtype=float)
    return 1.5 * v, -np.sqrt(3.0) * (u + v / 2.0)

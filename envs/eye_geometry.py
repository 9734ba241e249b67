"""Geometry of NeuroMechFly's compound eye, on the flyvis hexagonal lattice.

flygym 2.1.1 models each eye as a MuJoCo camera (a rectilinear pinhole camera,
``fovy_per_eye`` = 157 degrees, 450 x 512 pixels) whose image is warped by a
fisheye remap and then pooled into 721 ommatidia: every pixel of the warped image
belongs to at most one ommatidium (``vision/ommatidia_id_map.npy``, ids from 1, 0
outside the eye), and an ommatidium reads the mean of its pixels, from the green
channel if it is of the yellow type and the blue channel if it is pale
(``vision/pale_mask.npy``). This module turns that pipeline into ray geometry:
for every ommatidium, the mean viewing direction of the camera pixels that pool
into it, the angular extent of those pixels (its acceptance angle) and its type.
Nothing is stored: everything is derived at run time from the installed flygym
assets.

Frames and units
----------------
Directions are unit vectors in the eye-camera frame, MuJoCo's camera
convention: ``+x`` to the image right, ``+y`` to the image top, the camera looks
along ``-z``. A direction ``d`` points along ``cam_xmat @ d`` in the world, with
``cam_xmat`` the camera's rotation (``MjData.cam_xmat`` reshaped to 3 x 3). Both
eyes share the same camera-frame geometry; their cameras are mirror images of
each other in the head (see ``vision.yaml``). Angles are in radians.

Ommatidium order
----------------
flygym numbers the ommatidia column by column through the image (left to right),
and within a column from top to bottom. flyvis, and
:mod:`connectofly.circuits.hex_lattice`, order the same 721 hexagons by axial
coordinates ``(u, v)``: ``u`` in ``[-15, 15]``, ``v`` in
``[max(-15, -15 - u), min(15, 15 - u)]``, ``u`` then ``v`` ascending. The image
columns are the lattice's lines of constant ``v`` (``v = -15`` leftmost) and
inside a column the image row grows with ``u + v / 2`` (top to bottom), which is
``hex_lattice.to_cartesian`` drawn with ``+y`` up: the lattice laid over the
warped camera image, unmirrored, for both eyes. This is the mapping flygym 1.x
used between its retina and flyvis (``RetinaMapper``), derived here from the
ommatidium centroids. flygym's ommatidium ``k`` therefore sits at lattice index
``flygym_to_lattice_index()[k]``; for example flygym's first ommatidium (top of
the leftmost column) is ``(u, v) = (0, -15)``, lattice index 345. In lattice
order ``+v`` points to the image right: anterior for the left eye, posterior for
the right eye.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import yaml

from connectofly.circuits import hex_lattice

EXTENT = 15
N_OMMATIDIA = hex_lattice.n_columns(EXTENT)  # 721


@dataclass(frozen=True)
class FlygymRetina:
    """NeuroMechFly's eye as shipped in flygym's assets.

    Attributes:
        id_map: ``(height, width)`` ints, the ommatidium (from 1) of each pixel of
            the fisheye-warped image, 0 outside the eye.
        pale_mask: ``(721,)`` bool, True for pale ommatidia, flygym order.
        fovy: vertical field of view of the eye camera, radians.
        zoom: fisheye zoom.
        distortion: fisheye distortion coefficient.
    """

    id_map: np.ndarray
    pale_mask: np.ndarray
    fovy: float
    zoom: float
    distortion: float

    @property
    def height(self) -> int:
        return self.id_map.shape[0]

    @property
    def width(self) -> int:
        return self.id_map.shape[1]


def load_flygym_retina() -> FlygymRetina:
    """Read the eye's assets from the installed flygym package."""
    from flygym import assets_dir

    eye_dir = assets_dir / "model" / "neuromechfly"
    with open(eye_dir / "vision.yaml") as f:
        config = yaml.safe_load(f)
    id_map = np.load(eye_dir / "vision" / "ommatidia_id_map.npy").astype(np.int64)
    pale_mask = np.load(eye_dir / "vision" / "pale_mask.npy").astype(bool)
    expected = (config["raw_img_height_px"], config["raw_img_width_px"])
    if id_map.shape != expected:
        raise ValueError(f"ommatidia_id_map has shape {id_map.shape}, vision.yaml says {expected}")
    if id_map.max() != N_OMMATIDIA or pale_mask.shape != (N_OMMATIDIA,):
        raise ValueError(
            f"expected {N_OMMATIDIA} ommatidia, got id_map max {id_map.max()} and "
            f"pale_mask shape {pale_mask.shape}"
        )
    return FlygymRetina(
        id_map=id_map,
        pale_mask=pale_mask,
        fovy=float(np.radians(config["fovy_per_eye"])),
        zoom=float(config["fisheye_zoom"]),
        distortion=float(config["fisheye_distortion_coefficient"]),
    )


def fisheye_source_pixels(
    height: int, width: int, zoom: float, distortion: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pixel of the warped image, the camera pixel it is copied from.

    The warp is a radial remap in normalised image coordinates: a warped pixel at
    normalised position ``p`` (in ``[-1, 1]``, divided by ``zoom``) reads the raw
    pixel at ``p / (1 - distortion |p|^2)``, truncated to an integer index.

    Returns:
        ``(src_row, src_col, valid)``, each ``(height, width)``; ``valid`` is False
        where the source falls outside the camera image (flygym reads black there).
    """
    rows, cols = np.mgrid[0:height, 0:width]
    row_norm = (2.0 * rows - height) / height / zoom
    col_norm = (2.0 * cols - width) / width / zoom
    denom = 1.0 - distortion * (row_norm**2 + col_norm**2) + 1e-6
    src_row = np.trunc((row_norm / denom + 1.0) * height / 2.0).astype(np.int64)
    src_col = np.trunc((col_norm / denom + 1.0) * width / 2.0).astype(np.int64)
    valid = (src_row >= 0) & (src_row < height) & (src_col >= 0) & (src_col < width)
    return src_row, src_col, valid


def camera_pixel_directions(
    rows: np.ndarray, cols: np.ndarray, height: int, width: int, fovy: float
) -> np.ndarray:
    """Unit viewing directions of camera pixels, in the camera frame.

    A MuJoCo camera is a pinhole with vertical field of view ``fovy`` and square
    pixels; row 0 is the top of the image, column 0 its left.

    Returns:
        ``rows.shape + (3,)`` unit vectors.
    """
    half_height = np.tan(fovy / 2.0)
    x = ((np.asarray(cols) + 0.5) / width * 2.0 - 1.0) * half_height * width / height
    y = (1.0 - (np.asarray(rows) + 0.5) / height * 2.0) * half_height
    d = np.stack([x, y, -np.ones_like(x, dtype=float)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def ommatidium_centroids(id_map: np.ndarray) -> np.ndarray:
    """``(n, 2)`` mean (row, col) of the warped-image pixels of each ommatidium."""
    rows, cols = np.nonzero(id_map)
    ids = id_map[rows, cols] - 1
    counts = np.bincount(ids)
    return np.stack(
        [np.bincount(ids, weights=rows) / counts, np.bincount(ids, weights=cols) / counts],
        axis=1,
    )


def flygym_lattice_coordinates(id_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axial lattice coordinates ``(u, v)`` of flygym's ommatidia, flygym order.

    Image columns of ommatidia are lines of constant ``v``; along a column the row
    grows with ``u + v / 2`` (see the module docstring).

    Raises:
        ValueError: if the centroids do not sit on a hexagonal lattice of extent 15.
    """
    centroids = ommatidium_centroids(id_map)
    row, col = centroids[:, 0], centroids[:, 1]
    col_step = (col.max() - col.min()) / (2 * EXTENT)
    v_float = (col - col.mean()) / col_step
    v = np.rint(v_float).astype(np.int64)
    centre_column = v == 0
    row_step = (row[centre_column].max() - row[centre_column].min()) / (2 * EXTENT)
    u_float = (row - row.mean()) / row_step - v / 2.0
    u = np.rint(u_float).astype(np.int64)
    misfit = max(np.abs(v_float - v).max(), np.abs(u_float - u).max())
    if misfit > 0.25:
        raise ValueError(f"ommatidium centroids are {misfit:.2f} spacings off the hex lattice")
    return u, v


def lattice_index_of_flygym(id_map: np.ndarray) -> np.ndarray:
    """``(721,)``: the lattice index of each ommatidium of an id map (flygym order).

    Raises:
        ValueError: if the ommatidia do not fill the extent-15 lattice one to one.
    """
    u, v = flygym_lattice_coordinates(id_map)
    lattice_u, lattice_v = hex_lattice.columns(EXTENT)
    position = {(a, b): i for i, (a, b) in enumerate(zip(lattice_u, lattice_v))}
    index = np.array([position.get((a, b), -1) for a, b in zip(u, v)])
    if len(index) != N_OMMATIDIA or (index < 0).any() or len(np.unique(index)) != N_OMMATIDIA:
        raise ValueError("the ommatidia do not fill the extent-15 lattice one to one")
    return index


@functools.cache
def _default_flygym_to_lattice_index() -> np.ndarray:
    index = lattice_index_of_flygym(load_flygym_retina().id_map)
    index.setflags(write=False)
    return index


def flygym_to_lattice_index() -> np.ndarray:
    """``(721,)``: the lattice index of each of flygym's ommatidia (flygym order)."""
    return _default_flygym_to_lattice_index()


def lattice_to_flygym_index() -> np.ndarray:
    """``(721,)``: flygym's index of each lattice column (lattice order)."""
    return np.argsort(flygym_to_lattice_index())


def flygym_to_lattice(values: np.ndarray, axis: int = -2) -> np.ndarray:
    """Reorder flygym-ordered values (e.g. a ``(2, 721, 2)`` readout) to lattice order."""
    return np.take(values, lattice_to_flygym_index(), axis=axis)


def lattice_to_flygym(values: np.ndarray, axis: int = -2) -> np.ndarray:
    """Reorder lattice-ordered values to flygym's ommatidium order."""
    return np.take(values, flygym_to_lattice_index(), axis=axis)


@functools.cache
def _mirror_lattice_index() -> np.ndarray:
    u, v = hex_lattice.columns(EXTENT)
    index = {(a, b): i for i, (a, b) in enumerate(zip(u.tolist(), v.tolist()))}
    mirror = np.array([index[(a + b, -b)] for a, b in zip(u.tolist(), v.tolist())])
    mirror.setflags(write=False)
    return mirror


def mirror_lattice_index() -> np.ndarray:
    """``(721,)``: the lattice index of each column's left-right mirror image in the camera image.

    Image columns are lines of constant ``v`` and the row grows with ``u + v/2``,
    so flipping the image left-right maps ``(u, v)`` to ``(u + v, -v)``. The two
    eyes' cameras are mirror images of each other, so the right eye's ommatidium
    ``mirror[i]`` looks at the mirror image (across the fly's midline) of the
    direction the left eye's ommatidium ``i`` looks at (within 2.2° in the
    installed eye, ``tests/test_eye.py``). The map is its own inverse.
    """
    return _mirror_lattice_index()


class EyeGeometry(NamedTuple):
    """Per-ommatidium geometry of one eye, lattice order, camera frame.

    Attributes:
        directions: ``(721, 3)`` unit viewing directions.
        footprint: ``(721, 2, 3)`` the two principal semi-axes of the ommatidium's
            angular footprint, as tangent vectors at ``directions`` whose lengths
            are the semi-axes in radians (of the uniform ellipse with the same
            second moments as its pixels' directions).
        acceptance_angle: ``(721,)`` full angle, radians, of the cone with the same
            solid angle as the footprint.
        is_pale: ``(721,)`` True for pale ommatidia (blue channel), False for
            yellow ones (green channel).
        u, v: ``(721,)`` axial lattice coordinates.
    """

    directions: np.ndarray
    footprint: np.ndarray
    acceptance_angle: np.ndarray
    is_pale: np.ndarray
    u: np.ndarray
    v: np.ndarray


def _tangent_basis(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to each direction and to each other."""
    helper = np.zeros_like(directions)
    helper[np.arange(len(directions)), np.argmin(np.abs(directions), axis=1)] = 1.0
    e1 = np.cross(directions, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(directions, e1)


def compute_eye_geometry(retina: FlygymRetina | None = None) -> EyeGeometry:
    """Per-ommatidium directions, footprints and types from flygym's eye model.

    Each warped-image pixel of an ommatidium contributes the viewing direction of
    the camera pixel it is copied from; pixels whose source lies outside the
    camera image (under 1 % of two ommatidia) are left out.
    """
    retina = retina or load_flygym_retina()
    src_row, src_col, valid = fisheye_source_pixels(
        retina.height, retina.width, retina.zoom, retina.distortion
    )
    inside = (retina.id_map > 0) & valid
    ids = retina.id_map[inside] - 1
    rays = camera_pixel_directions(
        src_row[inside], src_col[inside], retina.height, retina.width, retina.fovy
    )
    counts = np.bincount(ids, minlength=N_OMMATIDIA)
    mean = np.stack([np.bincount(ids, weights=rays[:, i]) for i in range(3)], axis=1)
    directions = mean / np.linalg.norm(mean, axis=1, keepdims=True)

    # Second moments of the pixel directions in each ommatidium's tangent plane.
    e1, e2 = _tangent_basis(directions)
    a = np.einsum("pi,pi->p", rays, e1[ids])
    b = np.einsum("pi,pi->p", rays, e2[ids])
    moments = np.empty((N_OMMATIDIA, 2, 2))
    for (i, j), prod in {(0, 0): a * a, (0, 1): a * b, (1, 1): b * b}.items():
        moments[:, i, j] = np.bincount(ids, weights=prod) / counts
    moments[:, 1, 0] = moments[:, 0, 1]
    mean_ab = np.stack([np.bincount(ids, weights=a), np.bincount(ids, weights=b)], 1) / counts[:, None]
    covariance = moments - mean_ab[:, :, None] * mean_ab[:, None, :]
    variances, axes = np.linalg.eigh(covariance)  # ascending; columns are eigenvectors
    # A uniform ellipse with semi-axis s has variance s^2 / 4 along that axis.
    semi_axes = 2.0 * np.sqrt(np.clip(variances, 0.0, None))
    tangent = np.stack([e1, e2], axis=1)  # (n, 2, 3)
    footprint = np.einsum("nab,nac->nbc", axes, tangent) * semi_axes[:, :, None]
    acceptance_angle = 2.0 * np.sqrt(semi_axes[:, 0] * semi_axes[:, 1])

    order = np.argsort(lattice_index_of_flygym(retina.id_map))
    u, v = hex_lattice.columns(EXTENT)
    return EyeGeometry(
        directions=directions[order].astype(np.float32),
        footprint=footprint[order].astype(np.float32),
        acceptance_angle=acceptance_angle[order].astype(np.float32),
        is_pale=retina.pale_mask[order],
        u=u,
        v=v,
    )


@functools.cache
def default_eye_geometry() -> EyeGeometry:
    """:func:`compute_eye_geometry` of the installed flygym eye, computed once."""
    return compute_eye_geometry()

"""The compound eye as a ray caster in pure JAX.

Each ommatidium casts a small fan of rays spread over its acceptance angle
(:func:`make_eye_rays`) against a scene of primitive geoms (:class:`Scene`): a
ground plane and spheres, capsules, ellipsoids, cylinders and boxes. A ray that
hits a geom reads the geom's colour, or the ground texture (:class:`Texture`) at
the hit point, lit by a headlight fixed to the eye as in MuJoCo's renderer
(ambient + Lambert diffuse + Blinn-Phong specular, :class:`Lighting`); a ray
that hits nothing within ``max_distance`` reads the sky. The fan's weighted mean
is the ommatidium's reading. :func:`render_eyes` returns the two eyes' readouts
as a ``(2, 721, 2)`` array laid out like flygym's ``get_ommatidia_readouts``:
column 0 holds the yellow ommatidia's (green-channel) values, column 1 the pale
ommatidia's (blue-channel) values, and the other column of each ommatidium is 0.
Ommatidia are in lattice order (:mod:`connectofly.envs.eye_geometry`).

Colours have two channels, yellow and pale (the green and blue channels of an
RGB colour, as flygym reads them), in ``[0, 1]``. Lengths are in mm, angles in
radians. Geom type codes are MuJoCo's ``mjtGeom`` values, so the arrays of a
MuJoCo model or an MJX model can be used as they are
(:func:`scene_from_mujoco`).

Everything here is a pure function of arrays: it jits, and vmaps over flies
(:func:`render_batch`). Bad geometry never produces NaN: geoms with
non-positive or non-finite sizes, poses or colours are invisible, unknown type
codes are invisible (and rejected by :func:`make_scene`), a ray that starts
inside a solid geom reads that geom's colour, and a scene without geoms shows
only the sky.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.envs.eye_geometry import EyeGeometry, default_eye_geometry

logger = logging.getLogger(__name__)

# MuJoCo's mjtGeom codes of the primitives the renderer draws.
PLANE, SPHERE, CAPSULE, ELLIPSOID, CYLINDER, BOX = 0, 2, 3, 4, 5, 6
SUPPORTED_TYPES = {
    PLANE: "plane",
    SPHERE: "sphere",
    CAPSULE: "capsule",
    ELLIPSOID: "ellipsoid",
    CYLINDER: "cylinder",
    BOX: "box",
}
_MUJOCO_DEFAULT_RGBA = (0.5, 0.5, 0.5, 1.0)
_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))
_GAUSSIAN_REACH = 1.5  # Gaussian fans sample out to 1.5 x the half acceptance angle


# -- Eye rays -------------------------------------------------------------------


class EyeRays(NamedTuple):
    """The ray fans of one eye's ommatidia, in the eye-camera frame.

    Attributes:
        directions: ``(721, n_rays, 3)`` unit ray directions.
        weights: ``(721, n_rays)`` ray weights, summing to 1 per ommatidium.
        spacing: ``(721,)`` angular distance between neighbouring rays, radians
            (sets the level of detail of texture lookups).
        is_pale: ``(721,)`` True for pale ommatidia.
    """

    directions: jax.Array
    weights: jax.Array
    spacing: jax.Array
    is_pale: jax.Array


def disk_samples(n_rays: int) -> np.ndarray:
    """``(n_rays, 2)`` points spread evenly over the unit disk (a sunflower).

    Each point stands for an equal area; one ray is the disk's centre.
    """
    if n_rays < 1:
        raise ValueError(f"n_rays must be >= 1, got {n_rays}")
    if n_rays == 1:
        return np.zeros((1, 2))
    k = np.arange(n_rays)
    radius = np.sqrt((k + 0.5) / n_rays)
    angle = k * _GOLDEN_ANGLE
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def make_eye_rays(
    geometry: EyeGeometry | None = None, n_rays: int = 4, profile: str = "box"
) -> EyeRays:
    """Ray fans over each ommatidium's footprint.

    Args:
        geometry: the eye geometry; flygym's NeuroMechFly eye by default.
        n_rays: rays per ommatidium.
        profile: angular sensitivity. ``"box"``: equal weights over the
            footprint ellipse, the pooling of flygym's camera pixels.
            ``"gaussian"``: a Gaussian whose full width at half maximum is the
            footprint, sampled out to 1.5 times it.
    """
    geometry = geometry or default_eye_geometry()
    if profile not in ("box", "gaussian"):
        raise ValueError(f"profile must be 'box' or 'gaussian', got {profile!r}")
    disk = disk_samples(n_rays)
    reach = 1.0 if profile == "box" else _GAUSSIAN_REACH
    offsets = np.einsum("rk,nkc->nrc", reach * disk, geometry.footprint)
    directions = geometry.directions[:, None, :] + offsets
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    if profile == "box":
        weights = np.full(n_rays, 1.0 / n_rays)
    else:
        weights = 2.0 ** -((reach * np.linalg.norm(disk, axis=1)) ** 2)
        weights /= weights.sum()
    spacing = reach * geometry.acceptance_angle / np.sqrt(n_rays)
    return EyeRays(
        directions=jnp.asarray(directions, jnp.float32),
        weights=jnp.asarray(np.broadcast_to(weights, directions.shape[:2]), jnp.float32),
        spacing=jnp.asarray(spacing, jnp.float32),
        is_pale=jnp.asarray(geometry.is_pale),
    )


# -- Ground texture -------------------------------------------------------------


class Texture(NamedTuple):
    """A periodic image laid on textured geoms (the ground), with prefiltering.

    The image tiles the geom's local xy plane: image columns run along ``+x``,
    rows along ``-y`` (row 0 at the tile's ``+y`` edge, like an image seen from
    above), one tile is ``tile_size`` mm, and the point ``x = y = 0`` falls at
    ``offset`` tiles into the image. This is how MuJoCo maps a 2-D texture onto a
    plane.

    Attributes:
        levels: ``(n_levels, h, w, 2)``; level ``k`` is the image box-filtered
            (periodically) over ``2**k`` texels, the last level its mean; far and
            grazing hits read coarser levels (like mipmapping).
        tile_size: ``(2,)`` mm covered by one image along x and along y.
        offset: ``(2,)`` image position of the geom's origin, in tiles.
    """

    levels: jax.Array
    tile_size: jax.Array
    offset: jax.Array


def _periodic_box_filter(image: np.ndarray, width: int) -> np.ndarray:
    """Mean of ``image`` over a ``width`` x ``width`` texel window, wrapping around."""
    result = image
    for axis in (0, 1):
        n = image.shape[axis]
        w = min(width, n)
        kernel = np.zeros(n)
        kernel[np.arange(-(w // 2), w - w // 2) % n] = 1.0 / w
        spectrum = np.fft.fft(kernel)
        shape = [1, 1, 1]
        shape[axis] = n
        result = np.real(np.fft.ifft(np.fft.fft(result, axis=axis) * spectrum.reshape(shape), axis=axis))
    return result


def image_texture(
    image: np.ndarray, tile_size: tuple[float, float], offset: tuple[float, float] = (0.0, 0.0)
) -> Texture:
    """A :class:`Texture` from an image.

    Args:
        image: ``(h, w)`` grey levels, ``(h, w, 2)`` yellow/pale values, or
            ``(h, w, 3|4)`` RGB(A) (green and blue are kept), values in ``[0, 1]``.
        tile_size: mm covered by the whole image along x and y, both > 0.
        offset: image position (in tiles) of the geom's origin.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 2, axis=2)
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, 1:3]
    if image.ndim != 3 or image.shape[2] != 2 or min(image.shape[:2]) < 1:
        raise ValueError(
            f"texture image must be (h, w), (h, w, 2), (h, w, 3) or (h, w, 4) with h, w >= 1; "
            f"got shape {np.shape(image)}"
        )
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError("texture values must be finite and in [0, 1]")
    tile = np.asarray(tile_size, dtype=np.float64)
    if tile.shape != (2,) or not np.isfinite(tile).all() or (tile <= 0).any():
        raise ValueError(f"tile_size must be two positive lengths in mm, got {tile_size}")
    n_levels = int(np.ceil(np.log2(max(image.shape[:2])))) + 1
    levels = [_periodic_box_filter(image, 2**k) for k in range(n_levels - 1)]
    levels.append(np.broadcast_to(image.mean(axis=(0, 1)), image.shape))
    return Texture(
        levels=jnp.asarray(np.stack(levels), jnp.float32),
        tile_size=jnp.asarray(tile, jnp.float32),
        offset=jnp.asarray(np.asarray(offset, dtype=np.float64) % 1.0, jnp.float32),
    )


def uniform_texture() -> Texture:
    """A white texture (textured geoms show their own colour)."""
    return image_texture(np.ones((1, 1)), (1.0, 1.0))


def checker_texture(
    square_size: float, dark: float = 0.3, light: float = 0.4, offset=(0.0, 0.0)
) -> Texture:
    """A grey checkerboard of ``square_size`` mm squares (flygym's floor: 4 mm, 0.3/0.4)."""
    image = np.array([[dark, light], [light, dark]])
    return image_texture(image, (2.0 * square_size, 2.0 * square_size), offset)


def grating_texture(
    period: float,
    axis: int = 0,
    low: float = 0.0,
    high: float = 1.0,
    waveform: str = "square",
    samples: int = 32,
) -> Texture:
    """Stripes varying along ``x`` (``axis=0``) or ``y`` (``axis=1``), ``period`` mm.

    ``waveform`` is ``"square"`` (half the period ``low``, half ``high``) or
    ``"sine"`` (``samples`` texels per period).
    """
    if waveform == "square":
        profile = np.array([low, high])
    elif waveform == "sine":
        phase = 2 * np.pi * (np.arange(samples) + 0.5) / samples
        profile = low + (high - low) * 0.5 * (1.0 + np.sin(phase))
    else:
        raise ValueError(f"waveform must be 'square' or 'sine', got {waveform!r}")
    if axis == 0:
        return image_texture(profile[None, :], (period, period))
    if axis == 1:
        return image_texture(profile[:, None], (period, period))
    raise ValueError(f"axis must be 0 (x) or 1 (y), got {axis}")


def noise_texture(
    seed: int, texel_size: float, shape: tuple[int, int] = (64, 64), low: float = 0.0, high: float = 1.0
) -> Texture:
    """Uniform random grey texels of ``texel_size`` mm, from a seeded generator."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(low, high, size=shape)
    return image_texture(image, (texel_size * shape[1], texel_size * shape[0]))


def _sample_texture(texture: Texture, xy: jax.Array, footprint: jax.Array) -> jax.Array:
    """Texture values ``(..., 2)`` at local points ``xy`` seen with a ``footprint`` (mm)."""
    n_levels, height, width, _ = texture.levels.shape
    s = xy[..., 0] / texture.tile_size[0] + texture.offset[0]
    t = -xy[..., 1] / texture.tile_size[1] + texture.offset[1]
    col = jnp.clip(jnp.floor((s - jnp.floor(s)) * width), 0, width - 1).astype(jnp.int32)
    row = jnp.clip(jnp.floor((t - jnp.floor(t)) * height), 0, height - 1).astype(jnp.int32)
    texel = jnp.sqrt(texture.tile_size[0] / width * texture.tile_size[1] / height)
    level = jnp.clip(jnp.log2(jnp.maximum(footprint / texel, 1e-6)), 0.0, n_levels - 1.0)
    low = jnp.floor(level).astype(jnp.int32)
    high = jnp.minimum(low + 1, n_levels - 1)
    frac = (level - low)[..., None]
    texels = texture.levels.reshape(-1, 2)
    within_level = row * width + col
    coarse = jnp.take(texels, high * (height * width) + within_level, axis=0, mode="clip")
    fine = jnp.take(texels, low * (height * width) + within_level, axis=0, mode="clip")
    return (1.0 - frac) * fine + frac * coarse


# -- Scene ---------------------------------------------------------------------


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "geom_size", "geom_pos", "geom_rot", "geom_color",
        "geom_textured", "geom_specular", "geom_shininess",
    ],
    meta_fields=["geom_type"],
)
@dataclasses.dataclass(frozen=True)
class Scene:
    """Primitive geoms in the world frame (a PyTree).

    The type codes are static (part of the tree structure, not arrays), so the
    renderer only tests each geom against its own primitive; a jitted renderer is
    compiled once per list of types. Batching (vmap) applies to the arrays.

    Attributes:
        geom_type: ``n`` MuJoCo ``mjtGeom`` codes (see ``SUPPORTED_TYPES``);
            geoms of other codes are not drawn.
        geom_size: ``(n, 3)`` MuJoCo geom sizes, mm: plane half-extents (0 =
            infinite), sphere radius, capsule / cylinder radius and half-length,
            ellipsoid and box half-sizes.
        geom_pos: ``(n, 3)`` centres, mm.
        geom_rot: ``(n, 3, 3)`` rotations, local to world.
        geom_color: ``(n, 2)`` yellow / pale reflectance in ``[0, 1]``.
        geom_textured: ``(n,)`` True where the ground texture modulates the colour.
        geom_specular: ``(n,)`` specular reflectance of the material.
        geom_shininess: ``(n,)`` material shininess in ``[0, 1]`` (exponent x128).
    """

    geom_type: tuple[int, ...]
    geom_size: jax.Array
    geom_pos: jax.Array
    geom_rot: jax.Array
    geom_color: jax.Array
    geom_textured: jax.Array
    geom_specular: jax.Array
    geom_shininess: jax.Array


def make_scene(
    geom_type,
    geom_size,
    geom_pos,
    geom_rot=None,
    geom_color=None,
    geom_textured=None,
    geom_specular=None,
    geom_shininess=None,
) -> Scene:
    """A checked :class:`Scene` from concrete arrays (not for use under jit).

    ``geom_color`` is ``(n, 2)`` yellow/pale or ``(n, 3|4)`` RGB(A); defaults:
    identity rotations, grey 0.5, planes textured, specular and shininess 0.5
    (MuJoCo's default material).

    Raises:
        ValueError: on unknown type codes or arrays of the wrong shape.
    """
    geom_type = np.asarray(geom_type, dtype=np.int64).reshape(-1)
    n = len(geom_type)
    unknown = sorted(set(geom_type.tolist()) - set(SUPPORTED_TYPES))
    if unknown:
        raise ValueError(f"unsupported geom type codes {unknown}; supported: {SUPPORTED_TYPES}")

    def checked(name, value, shape, default):
        value = np.broadcast_to(default, shape) if value is None else np.asarray(value, np.float64)
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
        return jnp.asarray(value, jnp.float32)

    color = None if geom_color is None else np.asarray(geom_color, np.float64)
    if color is not None and color.ndim == 2 and color.shape[1] in (3, 4):
        color = color[:, 1:3]
    textured = geom_type == PLANE if geom_textured is None else np.asarray(geom_textured, bool)
    if textured.shape != (n,):
        raise ValueError(f"geom_textured must have shape {(n,)}, got {textured.shape}")
    return Scene(
        geom_type=tuple(int(code) for code in geom_type),
        geom_size=checked("geom_size", geom_size, (n, 3), 0.0),
        geom_pos=checked("geom_pos", geom_pos, (n, 3), 0.0),
        geom_rot=checked("geom_rot", geom_rot, (n, 3, 3), np.eye(3)),
        geom_color=checked("geom_color", color, (n, 2), 0.5),
        geom_textured=jnp.asarray(textured),
        geom_specular=checked("geom_specular", geom_specular, (n,), 0.5),
        geom_shininess=checked("geom_shininess", geom_shininess, (n,), 0.5),
    )


def empty_scene() -> Scene:
    """A scene without geoms (every ray reads the sky)."""
    return make_scene(np.zeros(0, np.int32), np.zeros((0, 3)), np.zeros((0, 3)))


def concatenate_scenes(*scenes: Scene) -> Scene:
    """One scene holding the geoms of all ``scenes`` (e.g. arena + another fly)."""
    arrays = {
        field.name: jnp.concatenate([getattr(scene, field.name) for scene in scenes])
        for field in dataclasses.fields(Scene)
        if field.name != "geom_type"
    }
    return Scene(geom_type=sum((scene.geom_type for scene in scenes), ()), **arrays)


# -- Ray / primitive intersection (geom frame) ---------------------------------
# Each ``_distance_*`` function takes the ray origin ``o`` (3,) and directions
# ``d`` (n, 3) in the geom's frame and returns the distance to the first hit:
# ``inf`` on a miss, 0 when the origin is inside the solid. Normals are computed
# afterwards, once per ray, at the nearest hit only (``_local_normal``).

_INF = jnp.inf
_Z = jnp.array([0.0, 0.0, 1.0])


def _safe_div(a, b):
    return a / jnp.where(jnp.abs(b) < 1e-12, jnp.where(b < 0, -1e-12, 1e-12), b)


def _rotate(rot, v):
    """``rot @ v`` for stacks of 3x3 matrices and vectors (elementwise, fuses well on CPU)."""
    return jnp.sum(rot * v[..., None, :], axis=-1)


def _rotate_back(rot, v):
    """``rot.T @ v`` for stacks of 3x3 matrices and vectors."""
    return jnp.sum(rot * v[..., :, None], axis=-2)


def _safe_sqrt(x):
    """sqrt(x) for x > 0, else 0; finite gradients everywhere (the inner where keeps
    sqrt's infinite slope at 0 out of reverse mode, where it would turn into NaN)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _normalize(v):
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _distance_ellipsoid(o, d, radii):
    """The ellipsoid ``sum((p / radii)^2) <= 1``."""
    os, ds = o / radii, d / radii
    a = jnp.sum(ds * ds, -1)
    b = jnp.sum(ds * os, -1)
    c = jnp.sum(os * os) - 1.0
    disc = b * b - a * c
    t = _safe_div(-b - _safe_sqrt(disc), a)
    t = jnp.where((disc >= 0) & (t > 0), t, _INF)
    return jnp.where(c < 0, 0.0, t)


def _distance_tube(o, d, radius, half_length):
    """The side of the z-axis cylinder ``x^2 + y^2 = r^2, |z| <= h`` (from outside)."""
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[0] * d[:, 0] + o[1] * d[:, 1]
    c = o[0] ** 2 + o[1] ** 2 - radius**2
    disc = b * b - a * c
    t = _safe_div(-b - _safe_sqrt(disc), a)
    z = o[2] + t * d[:, 2]
    return jnp.where((disc >= 0) & (t > 0) & (jnp.abs(z) <= half_length) & (a > 1e-12), t, _INF)


def _distance_disk(o, d, radius, height):
    """The disk ``z = height, x^2 + y^2 <= r^2``, from the side facing away from the origin."""
    t = _safe_div(height - o[2], d[:, 2])
    x, y = o[0] + t * d[:, 0], o[1] + t * d[:, 1]
    return jnp.where((t > 0) & (x * x + y * y <= radius**2), t, _INF)


def _distance_capsule(o, d, radius, half_length):
    radii = jnp.full(3, radius)
    t = jnp.minimum(
        _distance_tube(o, d, radius, half_length),
        jnp.minimum(
            _distance_ellipsoid(o - _Z * half_length, d, radii),
            _distance_ellipsoid(o + _Z * half_length, d, radii),
        ),
    )
    axial = jnp.clip(o[2], -half_length, half_length)
    inside = o[0] ** 2 + o[1] ** 2 + (o[2] - axial) ** 2 < radius**2
    return jnp.where(inside, 0.0, t)


def _distance_cylinder(o, d, radius, half_length):
    t = jnp.minimum(
        _distance_tube(o, d, radius, half_length),
        jnp.minimum(
            _distance_disk(o, d, radius, half_length), _distance_disk(o, d, radius, -half_length)
        ),
    )
    inside = (o[0] ** 2 + o[1] ** 2 < radius**2) & (jnp.abs(o[2]) < half_length)
    return jnp.where(inside, 0.0, t)


def _distance_box(o, d, size):
    """Slab test against the box ``|p_i| <= size_i``."""
    t1 = _safe_div(-size - o, d)
    t2 = _safe_div(size - o, d)
    t_enter = jnp.max(jnp.minimum(t1, t2), -1)
    t_exit = jnp.min(jnp.maximum(t1, t2), -1)
    t = jnp.where((t_exit >= t_enter) & (t_enter > 0), t_enter, _INF)
    return jnp.where(jnp.all(jnp.abs(o) < size), 0.0, t)


def _distance_plane(o, d, size):
    """The plane ``z = 0`` seen from ``z > 0``, ``|x| <= size_0, |y| <= size_1`` (0 = unbounded).

    An origin below the plane, within its extent, is inside the ground.
    """
    t = _safe_div(-o[2], d[:, 2])
    x, y = o[0] + t * d[:, 0], o[1] + t * d[:, 1]
    within = ((size[0] <= 0) | (jnp.abs(x) <= size[0])) & ((size[1] <= 0) | (jnp.abs(y) <= size[1]))
    t = jnp.where((o[2] > 0) & (d[:, 2] < 0) & within, t, _INF)
    inside = (
        (o[2] <= 0)
        & ((size[0] <= 0) | (jnp.abs(o[0]) <= size[0]))
        & ((size[1] <= 0) | (jnp.abs(o[1]) <= size[1]))
    )
    return jnp.where(inside, 0.0, t)


def _primitive_distance(code: int, o, d, size):
    """Distance along each ray to the primitive of type ``code``."""
    if code == PLANE:
        return _distance_plane(o, d, size)
    if code == SPHERE:
        return _distance_ellipsoid(o, d, jnp.full(3, size[0]))
    if code == CAPSULE:
        return _distance_capsule(o, d, size[0], size[1])
    if code == ELLIPSOID:
        return _distance_ellipsoid(o, d, size)
    if code == CYLINDER:
        return _distance_cylinder(o, d, size[0], size[1])
    return _distance_box(o, d, size)


def _size_is_valid(code: int, size: jax.Array) -> jax.Array:
    """Whether a geom of type ``code`` with ``size`` has a body to draw."""
    positive = size > 0
    needed = {
        PLANE: jnp.array(True),
        SPHERE: positive[0],
        CAPSULE: positive[0] & (size[1] >= 0),
        ELLIPSOID: jnp.all(positive),
        CYLINDER: positive[0] & positive[1],
        BOX: jnp.all(positive),
    }
    return needed[code] & jnp.all(jnp.isfinite(size))


def _geom_distance(code: int, origin, directions, size, pos, rot, color):
    """Distance ``(n_rays,)`` from ``origin`` along world ``directions`` to one geom.

    Geoms with invalid sizes or non-finite pose or colour are never hit; their
    arrays are replaced by harmless values first so that nothing turns into NaN.
    """
    valid = (
        _size_is_valid(code, size) & jnp.all(jnp.isfinite(pos))
        & jnp.all(jnp.isfinite(rot)) & jnp.all(jnp.isfinite(color))
    )
    safe_rot = jnp.where(valid, rot, jnp.eye(3))
    o = _rotate_back(safe_rot, origin - jnp.where(valid, pos, 0.0))
    d = _rotate_back(safe_rot, directions)
    t = _primitive_distance(code, o, d, jnp.where(valid, jnp.maximum(size, 0.0), 1.0))
    return jnp.where(valid, t, _INF)


def _local_normal(code, p, size):
    """Outward normal at the surface point ``p`` (geom frame) of a geom of type ``code``.

    ``code``, ``p`` and ``size`` are per ray; every formula is evaluated and the
    one of the ray's type kept.
    """
    radius, half_length = size[:, 0:1], size[:, 1:2]
    safe_size = jnp.where(size > 0, size, 1.0)
    ellipsoid = p / safe_size**2
    sphere = p
    axis_point = jnp.clip(p[:, 2:3], -half_length, half_length)
    capsule = p - axis_point * _Z
    on_cap = jnp.abs(jnp.abs(p[:, 2:3]) - half_length) < jnp.abs(
        jnp.linalg.norm(p[:, :2], axis=1, keepdims=True) - radius
    )
    cylinder = jnp.where(on_cap, jnp.sign(p) * _Z, p * jnp.array([1.0, 1.0, 0.0]))
    face = jnp.argmax(jnp.abs(p) / safe_size, axis=1)
    box = jnp.sign(p) * jax.nn.one_hot(face, 3, dtype=p.dtype)
    plane = jnp.broadcast_to(_Z, p.shape)
    normal = plane
    for type_code, formula in (
        (SPHERE, sphere), (CAPSULE, capsule), (ELLIPSOID, ellipsoid), (CYLINDER, cylinder), (BOX, box)
    ):
        normal = jnp.where((code == type_code)[:, None], formula, normal)
    return _normalize(normal)


class _Hits(NamedTuple):
    """The nearest hit of each ray and the properties of the geom it hit."""

    distance: jax.Array  # (n_rays,) inf where nothing is hit
    normal: jax.Array  # (n_rays, 3) world frame
    local_point: jax.Array  # (n_rays, 3) hit point in the hit geom's frame
    color: jax.Array  # (n_rays, 2)
    textured: jax.Array  # (n_rays,) bool
    specular: jax.Array  # (n_rays,)
    shininess: jax.Array  # (n_rays,)


def _geom_table(scene: Scene) -> jax.Array:
    """``(n, 21)`` per-geom properties, non-finite entries zeroed: rotation (9),
    position (3), size (3), colour (2), textured, specular, shininess, type code."""
    columns = [
        scene.geom_rot.reshape(-1, 9),
        scene.geom_pos,
        scene.geom_size,
        scene.geom_color,
        scene.geom_textured[:, None].astype(jnp.float32),
        scene.geom_specular[:, None],
        scene.geom_shininess[:, None],
        jnp.asarray(scene.geom_type, jnp.float32)[:, None],
    ]
    table = jnp.concatenate(columns, axis=1)
    return jnp.where(jnp.isfinite(table), table, 0.0)


def _intersect_scene(scene: Scene, origin, directions) -> _Hits:
    """The nearest hit of every ray.

    Each geom is tested against its own primitive only (the type codes are
    static), one reduction per type (a per-geom running minimum made the graph
    grow with the scene: 51 s a frame for the 837 boxes of the ``blocks``
    terrain); ties go to the first geom, as in scene order. The hit geom's
    properties are then read with a one-hot product (gathers are slow on CPU)
    and the normal is worked out at that hit alone.
    """
    n_rays = directions.shape[0]
    best_t = jnp.full(n_rays, _INF)
    best_geom = jnp.zeros(n_rays, jnp.int32)
    for code in sorted(set(scene.geom_type) & set(SUPPORTED_TYPES)):
        idx = np.array([i for i, c in enumerate(scene.geom_type) if c == code])
        distance = jax.vmap(functools.partial(_geom_distance, code), in_axes=(None, None, 0, 0, 0, 0))
        t = distance(origin, directions, scene.geom_size[idx], scene.geom_pos[idx], scene.geom_rot[idx],
                     scene.geom_color[idx])
        nearest = jnp.argmin(t, axis=0)
        t_nearest = jnp.min(t, axis=0)
        closer = t_nearest < best_t  # strict: a tie keeps the earlier type's geom
        best_t = jnp.where(closer, t_nearest, best_t)
        best_geom = jnp.where(closer, jnp.asarray(idx, jnp.int32)[nearest], best_geom)

    one_hot = jax.nn.one_hot(best_geom, len(scene.geom_type), dtype=jnp.float32)
    props = jnp.dot(one_hot, _geom_table(scene), precision=jax.lax.Precision.HIGHEST)
    rot, pos, size = props[:, 0:9].reshape(-1, 3, 3), props[:, 9:12], props[:, 12:15]
    code = jnp.rint(props[:, 20]).astype(jnp.int32)

    t_finite = jnp.where(jnp.isfinite(best_t), best_t, 0.0)
    local_point = _rotate_back(rot, origin + t_finite[:, None] * directions - pos)
    normal = _local_normal(code, local_point, size)
    # Rays that start inside a geom see it facing them.
    normal = jnp.where((best_t == 0)[:, None], -_rotate_back(rot, directions), normal)
    return _Hits(
        distance=best_t,
        normal=_rotate(rot, normal),
        local_point=local_point,
        color=props[:, 15:17],
        textured=props[:, 17] > 0.5,
        specular=props[:, 18],
        shininess=props[:, 19],
    )


# -- Shading -------------------------------------------------------------------


class Lighting(NamedTuple):
    """Headlight and sky, MuJoCo's conventions; defaults are flygym's.

    The headlight is a directional light along each eye's optical axis (the
    camera's ``-z``), as MuJoCo's headlight is for each eye camera.

    Attributes:
        ambient, diffuse, specular: headlight intensities.
        sky: ``(2,)`` yellow/pale value of rays that hit nothing (flygym's white
            skybox: 1).
        max_distance: hits farther than this (mm) read the sky, like MuJoCo's
            far clipping plane (flygym: 250 mm).
        attenuation_length: mm; hits fade to the sky colour as
            ``exp(-distance / attenuation_length)``; ``inf`` (default) for none.
    """

    ambient: float = 0.5
    diffuse: float = 0.6
    specular: float = 0.3
    sky: tuple[float, float] = (1.0, 1.0)
    max_distance: float = 250.0
    attenuation_length: float = float("inf")


def _shade_hits(
    rays: EyeRays, scene: Scene, texture: Texture, position, rotation, directions, lighting: Lighting
) -> jax.Array:
    """Value ``(n_rays_total, 2)`` seen along each world ray from ``position``."""
    sky = jnp.asarray(lighting.sky, jnp.float32)
    hits = _intersect_scene(scene, position, directions)
    hit = jnp.isfinite(hits.distance) & (hits.distance <= lighting.max_distance)
    t_hit = jnp.where(hit, hits.distance, 0.0)

    # Base colour: geom colour, times the texture where the geom is textured.
    cos_incidence = jnp.abs(jnp.sum(hits.normal * directions, -1))
    spread = jnp.repeat(rays.spacing, rays.directions.shape[1])
    footprint = t_hit * spread / jnp.maximum(cos_incidence, 0.05)
    texel = _sample_texture(texture, hits.local_point[:, :2], footprint)
    color = jnp.clip(hits.color, 0.0, 1.0)
    color = jnp.where(hits.textured[:, None], color * texel, color)

    # Headlight along the optical axis: Lambert + Blinn-Phong.
    to_light = rotation[:, 2]
    lambert = jnp.maximum(jnp.sum(hits.normal * to_light, -1), 0.0)
    half = _normalize(to_light - directions)
    exponent = 128.0 * jnp.clip(hits.shininess, 0.0, 1.0)
    # A base kept above 0: the gradient of 0 ** exponent is NaN (exponent 0, or with respect to the exponent).
    gloss = jnp.where(lambert > 0, jnp.maximum(jnp.sum(hits.normal * half, -1), 1e-12) ** exponent, 0.0)
    lit = color * (lighting.ambient + lighting.diffuse * lambert[:, None])
    lit = jnp.clip(lit + (lighting.specular * hits.specular * gloss)[:, None], 0.0, 1.0)

    fade = jnp.exp(-t_hit / lighting.attenuation_length)[:, None]
    return jnp.where(hit[:, None], sky + (lit - sky) * fade, sky)


def _shade_eye(
    rays: EyeRays, scene: Scene, texture: Texture, position: jax.Array, rotation: jax.Array, lighting: Lighting
) -> jax.Array:
    """Readout ``(721, 2)`` of one eye at ``position`` with camera ``rotation``."""
    n_omm, n_rays, _ = rays.directions.shape
    directions = _rotate(rotation, rays.directions.reshape(-1, 3))
    if scene.geom_type:
        values = _shade_hits(rays, scene, texture, position, rotation, directions, lighting)
    else:
        values = jnp.broadcast_to(jnp.asarray(lighting.sky, jnp.float32), (n_omm * n_rays, 2))
    pooled = jnp.sum(values.reshape(n_omm, n_rays, 2) * rays.weights[:, :, None], axis=1)
    yellow = jnp.where(rays.is_pale, 0.0, pooled[:, 0])
    pale = jnp.where(rays.is_pale, pooled[:, 1], 0.0)
    return jnp.stack([yellow, pale], axis=-1)


def render_eyes(
    rays: EyeRays,
    scene: Scene,
    texture: Texture,
    eye_positions: jax.Array,
    eye_rotations: jax.Array,
    lighting: Lighting = Lighting(),
) -> jax.Array:
    """Both eyes' readouts, ``(2, 721, 2)``, like flygym's ``get_ommatidia_readouts``.

    Args:
        rays: the ommatidia's ray fans (:func:`make_eye_rays`).
        scene: the geoms (the fly's own body left out unless wanted).
        texture: the texture of the scene's textured geoms.
        eye_positions: ``(2, 3)`` left and right eye-camera positions, mm.
        eye_rotations: ``(2, 3, 3)`` eye-camera rotations, camera to world
            (``MjData.cam_xmat`` rows reshaped to 3 x 3).
        lighting: headlight and sky.
    """
    shade = jax.vmap(_shade_eye, in_axes=(None, None, None, 0, 0, None))
    return shade(rays, scene, texture, eye_positions, eye_rotations, lighting)


# Jitted render_eyes; compiles once per list of geom types and ray count.
render_eyes_jit = jax.jit(render_eyes)


@functools.partial(jax.jit, static_argnames="chunk")
def _render_batch(rays, scenes, texture, eye_positions, eye_rotations, lighting, chunk):
    if chunk is None:
        render = jax.vmap(render_eyes, in_axes=(None, 0, None, 0, 0, None))
        return render(rays, scenes, texture, eye_positions, eye_rotations, lighting)

    def render_one(fly):
        scene, positions, rotations = fly
        return render_eyes(rays, scene, texture, positions, rotations, lighting)

    return jax.lax.map(render_one, (scenes, eye_positions, eye_rotations), batch_size=chunk)


def render_batch(
    rays: EyeRays,
    scenes: Scene,
    texture: Texture,
    eye_positions: jax.Array,
    eye_rotations: jax.Array,
    lighting: Lighting = Lighting(),
    chunk: int | None = -1,
) -> jax.Array:
    """Jitted :func:`render_eyes` over a batch of flies, ``(batch, 2, 721, 2)``.

    ``scenes`` arrays and the eye poses carry a leading batch axis; rays,
    texture and lighting are shared.

    Args:
        chunk: flies rendered at once (``jax.lax.map`` over chunks); ``None``
            vmaps the whole batch. The default, -1, picks ``None`` on
            accelerators and 1 on CPU, where one fly's rays fit in cache and
            larger chunks run slower per fly.
    """
    if chunk == -1:
        chunk = 1 if jax.default_backend() == "cpu" else None
    return _render_batch(rays, scenes, texture, eye_positions, eye_rotations, lighting, chunk)


# -- From MuJoCo / MJX -----------------------------------------------------------


class SceneSelection(NamedTuple):
    """Which geoms of a MuJoCo model the eye sees, and their fixed properties.

    Build once per model with :func:`select_scene_geoms`; :func:`scene_from_data`
    then reads the geoms' poses from any ``MjData`` or ``mjx.Data``.
    """

    geom_ids: np.ndarray
    scene: Scene  # geom poses are zeros until scene_from_data
    texture: Texture


def _geom_colors(model) -> np.ndarray:
    """RGBA of each geom as MuJoCo draws it: the material's unless the geom sets one."""
    rgba = np.asarray(model.geom_rgba, dtype=np.float64).copy()
    matid = np.asarray(model.geom_matid)
    uses_material = (matid >= 0) & np.all(np.isclose(rgba, _MUJOCO_DEFAULT_RGBA), axis=1)
    rgba[uses_material] = np.asarray(model.mat_rgba)[matid[uses_material]]
    return rgba


def _material_texture_id(model, matid: int) -> int:
    """The RGB texture id of a material, -1 if none."""
    return int(np.asarray(model.mat_texid)[matid, 1])  # mjTEXROLE_RGB


def _collapse_blocks(image: np.ndarray) -> np.ndarray:
    """The smallest image whose texels, repeated in square blocks, give ``image``.

    MuJoCo's builtin textures are blocky (a 300 x 300 checker is 2 x 2 blocks);
    the collapsed image renders the same and is far smaller.
    """
    height, width = image.shape[:2]
    for block in range(np.gcd(height, width), 1, -1):
        if height % block or width % block:
            continue
        small = image[::block, ::block]
        if np.array_equal(np.repeat(np.repeat(small, block, axis=0), block, axis=1), image):
            return small
    return image


def texture_from_mujoco(model, geom_id: int) -> Texture:
    """The 2-D texture of a plane geom's material, mapped as MuJoCo draws it.

    MuJoCo repeats the texture ``texrepeat`` times over the plane's full extent
    (``texuniform`` false) or per mm (``texuniform`` true, or an infinite plane),
    with texture columns along ``+x`` and rows along ``-y``.

    Raises:
        ValueError: if the geom has no material with a 2-D RGB texture.
    """
    matid = int(model.geom_matid[geom_id])
    texid = _material_texture_id(model, matid) if matid >= 0 else -1
    if texid < 0 or int(model.tex_type[texid]) != 0:  # mjTEXTURE_2D
        raise ValueError(f"geom {geom_id} has no 2-D texture")
    height, width = int(model.tex_height[texid]), int(model.tex_width[texid])
    channels = int(model.tex_nchannel[texid])
    start = int(model.tex_adr[texid])
    data = np.asarray(model.tex_data[start : start + height * width * channels])
    image = data.reshape(height, width, channels).astype(np.float64) / 255.0
    image = _collapse_blocks(image[:, :, 0] if channels == 1 else image)
    repeat = np.asarray(model.mat_texrepeat[matid], dtype=np.float64)
    half = np.asarray(model.geom_size[geom_id, :2], dtype=np.float64)
    if bool(model.mat_texuniform[matid]) or (half <= 0).any():
        return image_texture(image, tuple(1.0 / repeat))
    return image_texture(image, tuple(2.0 * half / repeat), tuple(repeat / 2.0))


def _excluded_body_tree(model, body_name: str) -> np.ndarray:
    """Boolean per body: in the same kinematic tree (below the world) as ``body_name``."""
    import mujoco

    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body_name)
    if body < 0:
        raise ValueError(f"model has no body named {body_name!r}")
    roots = np.asarray(model.body_rootid)
    return roots == roots[body]


def select_scene_geoms(
    model,
    own_body: str | None = "nmf/c_thorax",
    geom_groups: tuple[int, ...] = (0,),
) -> SceneSelection:
    """The geoms an eye sees in a MuJoCo (or MJX) model.

    Args:
        model: ``mujoco.MjModel`` (an ``mjx.Model`` works for all fields but
            textures; pass the C model).
        own_body: a body of the seeing fly; every geom of its kinematic tree is
            left out (the fly does not see itself). ``None`` keeps them.
        geom_groups: geom groups drawn. flygym's eye cameras draw group 0 only,
            which hides the fly's head, thorax, antennae and front coxae.

    Mesh and height-field geoms are left out, with a logged warning: scenes the
    eye sees are built from primitives (another fly included). The ground texture
    is the texture of the first selected textured plane (white if none).
    """
    geom_type = np.asarray(model.geom_type)
    keep = np.isin(np.asarray(model.geom_group), geom_groups)
    keep &= _geom_colors(model)[:, 3] > 0
    if own_body is not None:
        keep &= ~_excluded_body_tree(model, own_body)[np.asarray(model.geom_bodyid)]
    size = np.asarray(model.geom_size, dtype=np.float64)
    supported = np.isin(geom_type, list(SUPPORTED_TYPES))
    dropped = keep & ~supported
    if dropped.any():
        logger.warning(
            "the eye does not draw %d geoms of types %s (only %s)",
            dropped.sum(), sorted(set(geom_type[dropped].tolist())), sorted(SUPPORTED_TYPES.values()),
        )
    ids = np.nonzero(keep & supported)[0]

    rgba = _geom_colors(model)[ids]
    matid = np.asarray(model.geom_matid)[ids]
    specular, shininess = np.full(len(ids), 0.5), np.full(len(ids), 0.5)  # MuJoCo's defaults
    has_material = matid >= 0
    specular[has_material] = np.asarray(model.mat_specular)[matid[has_material]]
    shininess[has_material] = np.asarray(model.mat_shininess)[matid[has_material]]
    textured = np.array(
        [m >= 0 and _material_texture_id(model, m) >= 0 and t == PLANE for m, t in zip(matid, geom_type[ids])],
        dtype=bool,
    )
    texture = texture_from_mujoco(model, int(ids[textured][0])) if textured.any() else uniform_texture()
    scene = make_scene(
        geom_type[ids], size[ids], np.zeros((len(ids), 3)), None, rgba, textured, specular, shininess
    )
    return SceneSelection(geom_ids=ids, scene=scene, texture=texture)


def _take_rows(array, ids: np.ndarray) -> jax.Array:
    """``array[ids]`` as float32 JAX; NumPy arrays (``MjData``) are indexed before conversion."""
    if isinstance(array, np.ndarray):
        return jnp.asarray(array[ids], jnp.float32)
    return jnp.asarray(array)[ids].astype(jnp.float32)


def scene_from_data(selection: SceneSelection, data) -> Scene:
    """The selected geoms at their poses in ``data`` (``MjData`` or ``mjx.Data``).

    Works under jit with an ``mjx.Data``.
    """
    ids = selection.geom_ids
    rot = _take_rows(data.geom_xmat, ids).reshape(-1, 3, 3)
    pos = _take_rows(data.geom_xpos, ids)
    return dataclasses.replace(selection.scene, geom_pos=pos, geom_rot=rot)


def scene_from_mujoco(model, data, **selection_options) -> tuple[Scene, Texture]:
    """:func:`select_scene_geoms` then :func:`scene_from_data`, in one call.

    Returns the scene and the ground texture. In a loop, select once and call
    :func:`scene_from_data` per frame instead.
    """
    selection = select_scene_geoms(model, **selection_options)
    return scene_from_data(selection, data), selection.texture


EYE_CAMERAS = ("nmf/l_eye_cam_camera", "nmf/r_eye_cam_camera")


def eye_camera_ids(model, cameras: tuple[str, str] = EYE_CAMERAS) -> np.ndarray:
    """Ids of the left and right eye cameras (flygym's ``add_vision`` names by default)."""
    import mujoco

    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name) for name in cameras]
    missing = [name for name, i in zip(cameras, ids) if i < 0]
    if missing:
        raise ValueError(f"model has no camera named {missing}; did the fly get add_vision()?")
    return np.array(ids)


def eye_poses(data, camera_ids: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """``(2, 3)`` positions and ``(2, 3, 3)`` rotations (camera to world) of the eye cameras.

    Works with ``MjData`` and, under jit, ``mjx.Data``.
    """
    positions = _take_rows(data.cam_xpos, camera_ids)
    rotations = _take_rows(data.cam_xmat, camera_ids).reshape(-1, 3, 3)
    return positions, rotations


@jax.jit
def _render_from_arrays(rays, scene, texture, geom_ids, camera_ids, geom_xpos, geom_xmat, cam_xpos, cam_xmat, lighting):
    scene = dataclasses.replace(
        scene,
        geom_pos=jnp.asarray(geom_xpos, jnp.float32)[geom_ids],
        geom_rot=jnp.asarray(geom_xmat, jnp.float32)[geom_ids].reshape(-1, 3, 3),
    )
    positions = jnp.asarray(cam_xpos, jnp.float32)[camera_ids]
    rotations = jnp.asarray(cam_xmat, jnp.float32)[camera_ids].reshape(-1, 3, 3)
    return render_eyes(rays, scene, texture, positions, rotations, lighting)


def render_from_data(
    rays: EyeRays, selection: SceneSelection, camera_ids: np.ndarray, data, lighting: Lighting = Lighting()
) -> jax.Array:
    """Both eyes' readouts for the state in ``data`` (``MjData`` or ``mjx.Data``), in one jitted call.

    The same as :func:`scene_from_data` + :func:`eye_poses` + :func:`render_eyes`,
    with the pose arrays handed to the compiled function whole (one dispatch).
    """
    return _render_from_arrays(
        rays, selection.scene, selection.texture, selection.geom_ids, camera_ids,
        data.geom_xpos, data.geom_xmat, data.cam_xpos, data.cam_xmat, lighting,
    )


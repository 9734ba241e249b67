"""Compound eye: geometry from flygym's assets, lattice permutation, ray caster, eye image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from connectofly.circuits import hex_lattice
from connectofly.envs import eye_geometry as eg
from connectofly.envs import eye_image, raycast

FLAT = raycast.Lighting(ambient=1.0, diffuse=0.0, specular=0.0, max_distance=float("inf"))


@pytest.fixture(scope="module")
def geometry():
    return eg.default_eye_geometry()


@pytest.fixture(scope="module")
def retina():
    return eg.load_flygym_retina()


def look_along(forward, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world rotation of a MuJoCo camera looking along ``forward``."""
    z = -np.asarray(forward, float) / np.linalg.norm(forward)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def both_eyes(position, rotation):
    return jnp.asarray([position, position], jnp.float32), jnp.asarray([rotation, rotation], jnp.float32)


def own_channel(readout) -> np.ndarray:
    return np.asarray(readout).sum(-1)


# -- geometry -------------------------------------------------------------------


def test_shipped_assets_agree(retina):
    from flygym import assets_dir

    with np.load(assets_dir / "model/neuromechfly/compound_eye.npz") as packed:
        np.testing.assert_array_equal(packed["ommatidia_id_map"], retina.id_map)
        np.testing.assert_array_equal(packed["pale_mask"].astype(bool), retina.pale_mask)
    assert retina.id_map.shape == (512, 450)
    assert retina.pale_mask.sum() == 216


def test_permutation_hand_derived_anchors():
    index = eg.flygym_to_lattice_index()
    assert sorted(index.tolist()) == list(range(721))
    # flygym's first column (v = -15) holds u = 0..15 top to bottom; the second
    # column (v = -14) starts at u = -1; the centre is (0, 0) in both orders; the
    # last ommatidium is the bottom of v = 15, i.e. u = 0.
    u, v = hex_lattice.columns(15)
    for flygym_id, (expected_u, expected_v) in {
        0: (0, -15), 15: (15, -15), 16: (-1, -14), 360: (0, 0), 720: (0, 15)
    }.items():
        assert (u[index[flygym_id]], v[index[flygym_id]]) == (expected_u, expected_v)
    # Lattice index by hand: 345 columns have u < 0 ... (0, -15) is 345.
    assert index[0] == 345 and index[15] == 705 and index[16] == 315 and index[720] == 375


def test_permutation_round_trip_and_flygym_order():
    values = np.random.default_rng(0).uniform(size=(2, 721, 2))
    np.testing.assert_array_equal(eg.lattice_to_flygym(eg.flygym_to_lattice(values)), values)
    # flygym's order is v-major, u ascending within a column.
    u, v = hex_lattice.columns(15)
    index = eg.flygym_to_lattice_index()
    flygym_uv = list(zip(v[index], u[index]))
    assert flygym_uv == sorted(flygym_uv)


def test_lattice_neighbours_are_image_neighbours(retina):
    centroids = eg.ommatidium_centroids(retina.id_map)[eg.lattice_to_flygym_index()]
    u, v = hex_lattice.columns(15)
    position = {(a, b): i for i, (a, b) in enumerate(zip(u, v))}
    down = np.array([centroids[position[(a + 1, b)]] - centroids[i]
                     for i, (a, b) in enumerate(zip(u, v)) if (a + 1, b) in position])
    right = np.array([centroids[position[(a, b + 1)]] - centroids[i]
                      for i, (a, b) in enumerate(zip(u, v)) if (a, b + 1) in position])
    # +u: one step down the same image column (~16.5 px); +v: next column to the
    # right (~14.3 px), half a step down. Spacing ratio of a regular hex: 2/sqrt(3).
    assert np.all(np.abs(down[:, 1]) < 1.5) and np.all(np.abs(down[:, 0] - 16.5) < 1.5)
    assert np.all(np.abs(right[:, 1] - 14.3) < 1.5) and np.all(np.abs(right[:, 0] - 8.25) < 1.5)


def test_directions_cover_the_camera_field(geometry):
    d = geometry.directions
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    centre = int(np.nonzero((geometry.u == 0) & (geometry.v == 0))[0][0])
    assert np.degrees(np.arccos(-d[centre, 2])) < 1.0
    u, v = geometry.u, geometry.v
    assert d[(u == 0) & (v == 15), 0] > 0.7 and d[(u == 0) & (v == -15), 0] < -0.7  # +v: image right
    assert d[(u == -15) & (v == 0), 1] > 0.7 and d[(u == 15) & (v == 0), 1] < -0.7  # -u: image top
    assert np.all(d[:, 2] < 0)  # all in front of the camera
    cosines = d @ d.T
    np.fill_diagonal(cosines, -1)
    spacing = np.degrees(np.arccos(cosines.max(1)))
    assert 3.0 < spacing.min() and spacing.max() < 7.0
    acceptance = np.degrees(geometry.acceptance_angle)
    assert 3.0 < acceptance.min() and acceptance.max() < 8.0
    # Footprint axes are tangent to the direction.
    assert np.abs(np.einsum("ni,nki->nk", d, geometry.footprint)).max() < 1e-5


def test_pale_types_follow_the_permutation(geometry, retina):
    np.testing.assert_array_equal(geometry.is_pale, retina.pale_mask[eg.lattice_to_flygym_index()])


def test_fisheye_mapping_matches_flygym_retina(retina):
    """A single lit camera pixel reaches exactly the ommatidia our remap says."""
    from flygym.vision.retina import Retina

    flygym_retina = Retina()
    src_row, src_col, valid = eg.fisheye_source_pixels(512, 450, retina.zoom, retina.distortion)
    rng = np.random.default_rng(1)
    for row, col in rng.integers([150, 130], [360, 320], size=(5, 2)):
        image = np.zeros((512, 450, 3), np.uint8)
        image[row, col] = 255
        lit = set(np.nonzero(flygym_retina.fisheye_image_to_hex_pxls(image).sum(1))[0])
        ours = set(retina.id_map[(src_row == row) & (src_col == col) & valid & (retina.id_map > 0)] - 1)
        assert lit == ours


def test_camera_model_matches_mujoco_render():
    """A small sphere renders at the pixel whose ray we say points at it."""
    spec = mujoco.MjSpec()
    spec.visual.global_.offwidth, spec.visual.global_.offheight = 450, 512
    target = np.array([0.5, 0.3, -1.0]) / np.linalg.norm([0.5, 0.3, -1.0])
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.3, 0, 0], pos=10 * target, rgba=[1, 0, 0, 1])
    spec.worldbody.add_camera(name="eye", pos=[0, 0, 0], fovy=157.0)
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    with mujoco.Renderer(model, 512, 450) as renderer:
        renderer.update_scene(data, "eye")
        image = renderer.render().astype(int)
    rows, cols = np.nonzero((image[:, :, 0] > 100) & (image[:, :, 1] < 50))
    assert len(rows) > 0
    seen = eg.camera_pixel_directions(rows, cols, 512, 450, np.radians(157.0))
    off_target = np.degrees(np.arccos(np.clip(seen @ target, -1, 1)))
    sphere_radius = np.degrees(np.arcsin(0.3 / 10))  # 1.72 degrees
    assert off_target.max() < sphere_radius + 0.6  # + the size of a pixel


# -- renderer ---------------------------------------------------------------------


def test_empty_scene_reads_the_sky_in_each_ommatidium_channel(geometry):
    rays = raycast.make_eye_rays(geometry)
    lighting = FLAT._replace(sky=(0.2, 0.7))
    out = np.asarray(raycast.render_eyes(rays, raycast.empty_scene(), raycast.uniform_texture(),
                                         *both_eyes([0, 0, 1], np.eye(3)), lighting))
    assert out.shape == (2, 721, 2)
    pale = geometry.is_pale
    np.testing.assert_allclose(out[:, ~pale, 0], 0.2, atol=1e-6)
    np.testing.assert_allclose(out[:, pale, 1], 0.7, atol=1e-6)
    assert np.all(out[:, ~pale, 1] == 0) and np.all(out[:, pale, 0] == 0)


def test_ground_plane_fills_the_lower_hemisphere(geometry):
    rays = raycast.make_eye_rays(geometry, n_rays=1)
    rotation = look_along([1.0, 0.0, 0.0])
    scene = raycast.make_scene([raycast.PLANE], [[0, 0, 1]], [[0, 0, 0]], geom_color=[[0.4, 0.4]])
    out = own_channel(raycast.render_eyes(rays, scene, raycast.uniform_texture(),
                                          *both_eyes([0, 0, 1.0], rotation), FLAT))[0]
    world_z = (geometry.directions @ rotation.T)[:, 2]
    assert (world_z < -0.01).sum() > 200 and (world_z > 0.01).sum() > 200
    np.testing.assert_allclose(out[world_z < -0.01], 0.4, atol=1e-6)
    np.testing.assert_allclose(out[world_z > 0.01], 1.0, atol=1e-6)


def test_sphere_straight_ahead_darkens_the_ommatidia_pointing_at_it(geometry):
    rays = raycast.make_eye_rays(geometry, n_rays=1)
    rotation = look_along([0.0, 1.0, 0.0])
    distance, radius = 10.0, 2.0
    scene = raycast.make_scene([raycast.SPHERE], [[radius, 0, 0]], [[0, distance, 5]], geom_color=[[0, 0]])
    out = own_channel(raycast.render_eyes(rays, scene, raycast.uniform_texture(),
                                          *both_eyes([0, 0, 5.0], rotation), FLAT))[0]
    angle = np.degrees(np.arccos(geometry.directions @ np.array([0.0, 0.0, -1.0])))
    half_angle = np.degrees(np.arcsin(radius / distance))  # 11.5 degrees
    assert (angle < half_angle - 0.2).sum() >= 5
    np.testing.assert_allclose(out[angle < half_angle - 0.2], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[angle > half_angle + 0.2], 1.0, atol=1e-6)


def mujoco_scene():
    """One geom of each type at a random pose, as a MuJoCo model."""
    rng = np.random.default_rng(3)
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[20, 20, 1], pos=[0, 0, -2])
    types = [mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_ELLIPSOID,
             mujoco.mjtGeom.mjGEOM_CYLINDER, mujoco.mjtGeom.mjGEOM_BOX]
    for i, geom_type in enumerate(types):
        bearing = 2 * np.pi * i / len(types)
        spec.worldbody.add_geom(
            type=geom_type, size=rng.uniform(0.5, 1.5, 3), euler=rng.uniform(-np.pi, np.pi, 3),
            pos=[5 * np.cos(bearing), 5 * np.sin(bearing), rng.uniform(-1, 1)],
        )
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def test_hit_distances_match_mujoco_mj_ray():
    model, data = mujoco_scene()
    scene, _ = raycast.scene_from_mujoco(model, data, own_body=None)
    rng = np.random.default_rng(4)
    directions = rng.normal(size=(3000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origin = np.array([0.0, 0.0, 0.5])
    ours = np.asarray(raycast._intersect_scene(scene, jnp.asarray(origin, jnp.float32),
                                               jnp.asarray(directions, jnp.float32)).distance)
    geom_id = np.zeros(1, np.int32)
    reference = np.array([mujoco.mj_ray(model, data, origin, d, None, 1, -1, geom_id) for d in directions])
    reference = np.where(reference < 0, np.inf, reference)
    hit = np.isfinite(reference)
    assert hit.sum() > 1000 and (~hit).sum() > 300
    np.testing.assert_array_equal(np.isfinite(ours), hit)
    np.testing.assert_allclose(ours[hit], reference[hit], rtol=1e-4, atol=1e-4)


def test_hit_distances_over_the_blocks_terrain_match_mujoco_mj_ray():
    """Hundreds of boxes of one type: the nearest of them is the one hit."""
    from connectofly.envs.fly_env import build_arena_model

    model = build_arena_model("blocks")
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    selection = raycast.select_scene_geoms(model, own_body=None)
    assert len(selection.geom_ids) > 500
    scene = raycast.scene_from_data(selection, data)
    rng = np.random.default_rng(5)
    directions = rng.normal(size=(2000, 3)) * [1.0, 1.0, 0.3] - [0.0, 0.0, 0.5]  # mostly down and sideways
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origin = np.array([6.0, -4.0, 1.5])  # clear of the fly, above the blocks
    ours = np.asarray(raycast._intersect_scene(scene, jnp.asarray(origin, jnp.float32),
                                               jnp.asarray(directions, jnp.float32)).distance)
    visible = np.zeros(6, np.uint8)
    visible[0] = 1  # the geom group the eye draws
    geom_id = np.zeros(1, np.int32)
    reference, hit_geom = [], []
    for d in directions:
        reference.append(mujoco.mj_ray(model, data, origin, d, visible, 1, -1, geom_id))
        hit_geom.append(int(geom_id[0]))
    reference = np.where(np.array(reference) < 0, np.inf, reference)
    # the fly's meshes, which the eye does not draw, hide what lies behind them from mj_ray
    seen = ~np.isin(hit_geom, np.flatnonzero(model.geom_type == mujoco.mjtGeom.mjGEOM_MESH))
    hit = np.isfinite(reference)
    assert (hit & seen).sum() > 1500 and len(set(np.array(hit_geom)[hit & seen])) > 50
    np.testing.assert_array_equal(np.isfinite(ours)[seen], hit[seen])
    np.testing.assert_allclose(ours[hit & seen], reference[hit & seen], rtol=1e-4, atol=1e-4)


def test_of_coincident_geoms_the_first_is_seen():
    scene = raycast.make_scene([raycast.SPHERE] * 3, [[1, 0, 0]] * 3, [[5, 0, 0]] * 3,
                               geom_color=[[0.2, 0.2], [0.7, 0.7], [0.9, 0.9]])
    hits = raycast._intersect_scene(scene, jnp.zeros(3), jnp.asarray([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(np.asarray(hits.color), [[0.2, 0.2]])


def test_normals_of_sphere_and_box():
    scene = raycast.make_scene([raycast.SPHERE, raycast.BOX], [[1, 0, 0], [0.5, 0.5, 0.5]],
                               [[5, 0, 0], [0, 5, 0]])
    directions = jnp.asarray([[1.0, 0.02, 0.03], [0.01, 1.0, -0.02]])
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    hits = raycast._intersect_scene(scene, jnp.zeros(3), directions)
    point = np.asarray(hits.distance)[0] * np.asarray(directions[0])
    np.testing.assert_allclose(np.asarray(hits.normal[0]), point - [5, 0, 0], atol=1e-4)
    np.testing.assert_allclose(np.asarray(hits.normal[1]), [0, -1, 0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(hits.distance[1]), 4.5 / float(directions[1, 1]), rtol=1e-5)


def test_checker_floor_seen_from_above(geometry):
    rays = raycast.make_eye_rays(geometry, n_rays=1)
    square, dark, light = 1.0, 0.2, 0.8
    texture = raycast.checker_texture(square, dark, light)
    scene = raycast.make_scene([raycast.PLANE], [[0, 0, 1]], [[0, 0, 0]], geom_color=[[1, 1]])
    eye = np.array([0.3, 0.4, 2.0])
    out = own_channel(raycast.render_eyes(rays, scene, texture, *both_eyes(eye, np.eye(3)), FLAT))[0]
    d = geometry.directions  # camera frame == world frame here: looking down
    ground = d[:, 2] < -0.5
    x = eye[0] + eye[2] * d[:, 0] / -d[:, 2]
    y = eye[1] + eye[2] * d[:, 1] / -d[:, 2]
    away_from_edges = (np.abs(x - np.rint(x)) > 0.1) & (np.abs(y - np.rint(y)) > 0.1)
    expected = np.where((np.floor(x / square) + np.floor(y / square)) % 2 == 0, light, dark)
    check = ground & away_from_edges
    assert check.sum() > 50
    np.testing.assert_allclose(out[check], expected[check], atol=1e-5)


def test_far_checker_blurs_to_its_mean():
    rays = raycast.make_eye_rays(n_rays=1)
    texture = raycast.checker_texture(0.05, 0.2, 0.8)
    scene = raycast.make_scene([raycast.PLANE], [[0, 0, 1]], [[0, 0, 0]], geom_color=[[1, 1]])
    out = own_channel(raycast.render_eyes(rays, scene, texture, *both_eyes([0, 0, 20.0], np.eye(3)), FLAT))[0]
    np.testing.assert_allclose(out, 0.5, atol=1e-4)


def test_texture_from_mujoco_maps_flygym_floor():
    from flygym.compose import FlatGroundWorld

    model = FlatGroundWorld().mjcf_root.compile()
    texture = raycast.texture_from_mujoco(model, 0)
    # 250 repeats over the 2000 mm plane: 8 mm tiles, an even repeat: no offset.
    np.testing.assert_allclose(np.asarray(texture.tile_size), [8.0, 8.0])
    np.testing.assert_allclose(np.asarray(texture.offset), [0.0, 0.0])
    np.testing.assert_allclose(np.unique(np.asarray(texture.levels[0])), [0.298, 0.4], atol=2e-3)
    # The builtin 300 x 300 checker is 2 x 2 blocks of 150 texels: stored as 2 x 2.
    assert texture.levels.shape[1:3] == (2, 2)
    np.testing.assert_allclose(np.asarray(texture.levels[0, :, :, 0]), [[0.298, 0.4], [0.4, 0.298]], atol=2e-3)


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("geom_type, size", [
    (raycast.SPHERE, [1, 0, 0]), (raycast.CAPSULE, [1, 1, 0]), (raycast.ELLIPSOID, [1, 2, 1.5]),
    (raycast.CYLINDER, [1, 1, 0]), (raycast.BOX, [1, 1, 1]), (raycast.PLANE, [0, 0, 1]),
])
def test_eye_inside_a_geom_sees_its_colour(geometry, geom_type, size):
    rays = raycast.make_eye_rays(geometry)
    scene = raycast.make_scene([geom_type], [size], [[0, 0, 0.2 if geom_type != raycast.PLANE else 1]],
                               geom_color=[[0.3, 0.3]])
    out = own_channel(raycast.render_eyes(rays, scene, raycast.uniform_texture(),
                                          *both_eyes([0, 0, 0.1], np.eye(3)), FLAT))
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_degenerate_and_nonfinite_geoms_are_invisible(geometry):
    rays = raycast.make_eye_rays(geometry)
    ahead = [[0, 0, -5]]
    bad = [
        ([raycast.SPHERE], [[0, 0, 0]], ahead),
        ([raycast.BOX], [[1, 0, 1]], ahead),
        ([raycast.CYLINDER], [[1, 0, 0]], ahead),
        ([raycast.ELLIPSOID], [[1, 1, -1]], ahead),
        ([raycast.SPHERE], [[np.nan, 0, 0]], ahead),
        ([raycast.SPHERE], [[1, 0, 0]], [[np.nan, 0, -5]]),
        ([raycast.CAPSULE], [[np.inf, 1, 0]], ahead),
    ]
    for types, size, pos in bad:
        scene = raycast.make_scene(types, size, pos, geom_color=[[0, 0]])
        out = np.asarray(raycast.render_eyes(rays, scene, raycast.uniform_texture(),
                                             *both_eyes([0, 0, 0], np.eye(3)), FLAT))
        assert np.isfinite(out).all()
        np.testing.assert_allclose(own_channel(out), 1.0, atol=1e-6)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="texture image"):
        raycast.image_texture(np.zeros((4, 4, 5)), (1.0, 1.0))
    with pytest.raises(ValueError, match="texture image"):
        raycast.image_texture(np.zeros((0, 4)), (1.0, 1.0))
    with pytest.raises(ValueError, match="tile_size"):
        raycast.image_texture(np.zeros((4, 4)), (1.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        raycast.image_texture(np.full((4, 4), np.nan), (1.0, 1.0))
    with pytest.raises(ValueError, match="unsupported geom type"):
        raycast.make_scene([7], [[1, 1, 1]], [[0, 0, 0]])
    with pytest.raises(ValueError, match="geom_size"):
        raycast.make_scene([raycast.SPHERE], [[1, 1]], [[0, 0, 0]])
    with pytest.raises(ValueError, match="n_rays"):
        raycast.make_eye_rays(n_rays=0)
    with pytest.raises(ValueError, match="readout"):
        eye_image.eye_image(np.zeros((721, 2)))


# -- jit / vmap / MuJoCo ---------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 1])
def test_batch_matches_single_flies(chunk):
    rays = raycast.make_eye_rays()
    texture = raycast.checker_texture(2.0)
    scenes, positions, rotations = [], [], []
    for i in range(3):
        scenes.append(raycast.make_scene([raycast.PLANE, raycast.BOX], [[0, 0, 1], [1, 1, 1]],
                                         [[0, 0, 0], [4 + i, 0, 1]]))
        positions.append([[0, 0.3 * i, 1], [0, -0.3, 1]])
        rotations.append([look_along([1, 0.2 * i, 0]), look_along([1, -0.5, 0])])
    batch = raycast.render_batch(rays, jax.tree.map(lambda *x: jnp.stack(x), *scenes), texture,
                                 jnp.asarray(positions, jnp.float32), jnp.asarray(rotations, jnp.float32),
                                 chunk=chunk)
    for i in range(3):
        single = raycast.render_eyes_jit(rays, scenes[i], texture, jnp.asarray(positions[i], jnp.float32),
                                         jnp.asarray(rotations[i], jnp.float32))
        np.testing.assert_allclose(np.asarray(batch[i]), np.asarray(single), atol=1e-5)


def test_scene_from_mujoco_leaves_out_the_own_body():
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[5, 5, 1])
    fly = spec.worldbody.add_body(name="nmf/c_thorax", pos=[0, 0, 1])
    fly.add_freejoint()
    fly.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.3, 0, 0])
    fly.add_body(name="nmf/leg").add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[0.1, 0.5, 0])
    fly.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.1, 0, 0], group=2)
    other = spec.worldbody.add_body(name="other", pos=[3, 0, 1])
    other.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[1, 1, 1], rgba=[0.1, 0.2, 0.3, 1])
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    scene, texture = raycast.scene_from_mujoco(model, data)
    assert scene.geom_type == (raycast.PLANE, raycast.BOX)
    np.testing.assert_allclose(np.asarray(scene.geom_pos[1]), [3, 0, 1])
    np.testing.assert_allclose(np.asarray(scene.geom_color[1]), [0.2, 0.3], atol=1e-6)
    with_fly, _ = raycast.scene_from_mujoco(model, data, own_body=None)
    assert with_fly.geom_type == (raycast.PLANE, raycast.SPHERE, raycast.CAPSULE, raycast.BOX)
    # The same arrays from JAX (as in an mjx.Data) give the same scene.
    selection = raycast.select_scene_geoms(model)
    as_jax = type("JaxData", (), {"geom_xpos": jnp.asarray(data.geom_xpos), "geom_xmat": jnp.asarray(data.geom_xmat)})
    np.testing.assert_allclose(np.asarray(raycast.scene_from_data(selection, as_jax).geom_rot),
                               np.asarray(scene.geom_rot))
    with pytest.raises(ValueError, match="camera"):
        raycast.eye_camera_ids(model)


# -- eye image -------------------------------------------------------------------


def test_eye_image_draws_each_ommatidium_in_place(geometry):
    readout = np.zeros((2, 721, 2))
    centre = int(np.nonzero((geometry.u == 0) & (geometry.v == 0))[0][0])
    right_edge = int(np.nonzero((geometry.u == 0) & (geometry.v == 15))[0][0])
    readout[0, centre, 0] = 1.0
    readout[1, right_edge, 1] = 0.5
    image = eye_image.eye_image(readout, pixels_per_unit=4.0, gap=6)
    index = eye_image.hexagon_index_map(4.0)
    height, width = index.shape
    assert image.shape == (height, 2 * width + 6, 3) and image.dtype == np.uint8
    assert tuple(image[height // 2, width // 2]) == (255, 255, 255)
    lit = np.nonzero(image[:, width + 6:, 0] == 128)
    assert lit[1].min() > 0.9 * width  # right edge of the right panel
    assert (image > 0).sum() == 3 * ((index == centre).sum() + (index == right_edge).sum())
    assert len(np.unique(index)) == 722  # every ommatidium drawn, plus background


def test_render_from_data_matches_the_step_by_step_path():
    spec_cameras = ("left", "right")
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[20, 20, 1], pos=[0, 0, -2])
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[0.5, 1, 0], pos=[4, 1, 0], rgba=[1, 1, 0, 1])
    for name, y in zip(spec_cameras, (0.3, -0.3)):
        spec.worldbody.add_camera(name=name, pos=[0, y, 0.5], xyaxes=[0, -1, 0, 0, 0, 1])
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    rays = raycast.make_eye_rays()
    selection = raycast.select_scene_geoms(model, own_body=None)
    cameras = raycast.eye_camera_ids(model, spec_cameras)
    direct = raycast.render_from_data(rays, selection, cameras, data)
    step_by_step = raycast.render_eyes_jit(rays, raycast.scene_from_data(selection, data), selection.texture,
                                           *raycast.eye_poses(data, cameras))
    np.testing.assert_allclose(np.asarray(direct), np.asarray(step_by_step), atol=1e-6)
    # The capsule (yellow: green 1, blue 0) is dark to pale ommatidia, bright to yellow ones.
    assert np.asarray(direct).min() < 0.1 and np.isfinite(np.asarray(direct)).all()


def test_lattice_mirror_pairs_each_ommatidium_with_its_mirror_image_in_the_other_eye():
    """Right-eye ommatidium mirror[i] looks across the midline from left-eye ommatidium i."""
    from connectofly.agents.visual_taxis import env_ommatidium_directions
    from connectofly.envs.fly_env import FlyEnv

    mirror = eg.mirror_lattice_index()
    np.testing.assert_array_equal(mirror[mirror], np.arange(eg.N_OMMATIDIA))  # its own inverse
    env = FlyEnv(task="visual_taxis")
    env.reset(seed=0)
    directions = env_ommatidium_directions(env)
    left, right_mirrored = directions[0], directions[1] * np.array([1.0, -1.0, 1.0])
    angle = np.degrees(np.arccos(np.clip((left * right_mirrored[mirror]).sum(-1), -1, 1)))
    assert angle.max() < 2.5
    # as delivered (no mirror) the two eyes' same-index ommatidia look far apart
    assert np.median(np.degrees(np.arccos(np.clip((left * right_mirrored).sum(-1), -1, 1)))) > 30


def test_gradients_through_a_shaded_scene_are_finite(geometry):
    """Reverse mode through every primitive and the specular term (BPTT through the eye needs it):
    rays that miss a geom, or hit a matte one, must not turn the gradient into NaN."""
    rays = raycast.make_eye_rays(geometry)
    types = [raycast.PLANE, raycast.SPHERE, raycast.CAPSULE, raycast.ELLIPSOID, raycast.CYLINDER, raycast.BOX]
    sizes = [[0, 0, 1], [1, 0, 0], [0.5, 1, 0], [1, 0.5, 0.7], [0.5, 1, 0], [0.6, 0.6, 0.6]]
    positions = [[0, 0, 0], [0, 8, 2], [3, 8, 2], [-3, 8, 2], [0, 12, 4], [4, 12, 1]]
    scene = raycast.make_scene(types, sizes, positions, geom_color=[[0.5, 0.6]] * 6,
                               geom_specular=[0.0, 0.5, 0.5, 0.0, 1.0, 0.5], geom_shininess=[0.0, 0.5, 0.0, 1.0, 0.2, 0.5])
    rotation = jnp.asarray(look_along([0.0, 1.0, -0.2]), jnp.float32)

    def seen(position):
        return raycast.render_eyes(rays, scene, raycast.uniform_texture(), jnp.stack([position, position]),
                                   jnp.stack([rotation, rotation])).sum()

    gradient = np.asarray(jax.grad(seen)(jnp.array([0.0, 0.0, 2.0])))
    assert np.isfinite(gradient).all()
    assert np.abs(gradient).max() > 0

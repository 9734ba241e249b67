"""Compound eye: connectofly's JAX ray caster vs flygym 2.1.1's eye, same scenes.

For each scene, flygym's NeuroMechFly (legs-only skeleton, ``add_vision``) stands
in its neutral pose in a ``FlatGroundWorld`` with a floor texture (flygym's
checkerboard, stripes along x or y, random noise) and a few coloured primitives
(spheres, boxes, capsules, cylinders, ellipsoids) at random poses, and the fly
itself at a random position and heading. flygym renders both eye cameras and
pools them (``Simulation.get_ommatidia_readouts``); connectofly reads the same
compiled model and data (:func:`connectofly.envs.raycast.scene_from_mujoco`,
:func:`~connectofly.envs.raycast.eye_poses`) and ray-casts
(:func:`~connectofly.envs.raycast.render_eyes`). flygym's readout is put in
lattice order (:func:`connectofly.envs.eye_geometry.flygym_to_lattice`).

Printed:

* per scene and eye, Pearson r between the two readouts over the 721 ommatidia
  (each ommatidium's own channel), and the same over all scenes pooled;
* r of the scene-to-scene deviations (each ommatidium's value minus its mean
  over scenes): a stricter test, since the shared sky/ground split drops out;
* per-frame time, flygym vs ours (render only, and reading the state from
  ``MjData`` + render: :func:`~connectofly.envs.raycast.render_from_data`),
  measured interleaved in this run, and the ratio;
* frames/s (one frame = both eyes of one fly) at batch 1, 64, 256.

Run:  MUJOCO_GL=egl python benchmarks/eye_vs_flygym.py [--scenes 24] [--rays 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from connectofly.envs import eye_geometry, raycast

FLY = "nmf"
TEXTURES = ("checker", "stripes_x", "stripes_y", "noise")
SHAPES = (
    mujoco.mjtGeom.mjGEOM_SPHERE,
    mujoco.mjtGeom.mjGEOM_BOX,
    mujoco.mjtGeom.mjGEOM_CAPSULE,
    mujoco.mjtGeom.mjGEOM_CYLINDER,
    mujoco.mjtGeom.mjGEOM_ELLIPSOID,
)


def make_fly():
    """flygym's NeuroMechFly, legs-only joints in the neutral pose, with eyes."""
    from flygym.anatomy import AxisOrder, JointPreset, Skeleton
    from flygym.compose import KinematicPosePreset, NeuroMechFly

    axis_order = AxisOrder.YAW_PITCH_ROLL
    fly = NeuroMechFly(name=FLY)
    fly.add_joints(
        Skeleton(axis_order=axis_order, joint_preset=JointPreset.LEGS_ONLY),
        neutral_pose=KinematicPosePreset.NEUTRAL.get_pose_by_axis_order(axis_order),
    )
    fly.colorize()
    fly.add_vision()
    return fly


def floor_image(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
    """An RGB uint8 floor texture and its tile size in mm; None keeps flygym's checker."""
    if kind == "checker":
        return None
    if kind in ("stripes_x", "stripes_y"):
        period = rng.uniform(1.5, 6.0)
        stripes = np.where(np.arange(64) < 32, 60, 200).astype(np.uint8)
        image = np.tile(stripes[None, :], (64, 1)) if kind == "stripes_x" else np.tile(stripes[:, None], (1, 64))
        return np.repeat(image[:, :, None], 3, axis=2), period
    noise = rng.integers(40, 220, size=(32, 32), dtype=np.uint8)
    return np.repeat(noise[:, :, None], 3, axis=2), 32 * rng.uniform(0.3, 1.0)


def add_floor_texture(world, image: np.ndarray, tile: float) -> None:
    """Replace the ground's material by one with ``image`` repeated every ``tile`` mm."""
    spec = world.mjcf_root
    height, width, _ = image.shape
    texture = spec.add_texture(
        name="bench_floor", type=mujoco.mjtTexture.mjTEXTURE_2D, width=width, height=height, nchannel=3
    )
    texture.data = image.tobytes()
    material = spec.add_material(name="bench_floor", reflectance=0.2)
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "bench_floor"
    half = world.ground_geom.size[0]
    material.texrepeat = [2 * half / tile, 2 * half / tile]
    world.ground_geom.material = "bench_floor"


def add_objects(world, rng: np.random.Generator, n: int) -> None:
    """``n`` coloured primitives around the origin, 2-15 mm away, random poses."""
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        distance, bearing = rng.uniform(2.5, 15.0), rng.uniform(-np.pi, np.pi)
        size = rng.uniform(0.4, 1.5, size=3)
        pos = [distance * np.cos(bearing), distance * np.sin(bearing), rng.uniform(0.5, 4.0)]
        world.mjcf_root.worldbody.add_geom(
            name=f"object_{i}", type=shape, size=size, pos=pos,
            euler=rng.uniform(-np.pi, np.pi, size=3), rgba=[*rng.uniform(0, 1, size=3), 1.0],
            contype=0, conaffinity=0,
        )


def build_simulation(texture_kind: str, seed: int):
    from flygym.compose import FlatGroundWorld
    from flygym.simulation import Simulation
    from flygym.utils.math import Rotation3D

    rng = np.random.default_rng(seed)
    world = FlatGroundWorld()
    heading = rng.uniform(-np.pi, np.pi)
    position = (*rng.uniform(-3.0, 3.0, size=2), 0.7)
    world.add_fly(make_fly(), position, Rotation3D("quat", (np.cos(heading / 2), 0, 0, np.sin(heading / 2))))
    floor = floor_image(texture_kind, rng)
    if floor is not None:
        add_floor_texture(world, *floor)
    add_objects(world, rng, n=int(rng.integers(3, 7)))
    simulation = Simulation(world)
    simulation.reset()
    simulation.forward()
    return simulation


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def time_call(fn, repeats: int) -> float:
    """Median seconds per call."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def batch_frames_per_second(rays, scene, texture, positions, rotations, batch: int, repeats: int) -> float:
    """Frames/s of ``render_batch`` for ``batch`` flies at jittered copies of one pose."""
    rng = np.random.default_rng(batch)
    offsets = rng.uniform(-2.0, 2.0, size=(batch, 1, 3)) * np.array([1.0, 1.0, 0.0])
    yaws = rng.uniform(-np.pi, np.pi, size=batch)
    yaw = np.zeros((batch, 3, 3))
    yaw[:, 0, 0] = yaw[:, 1, 1] = np.cos(yaws)
    yaw[:, 0, 1], yaw[:, 1, 0] = -np.sin(yaws), np.sin(yaws)
    yaw[:, 2, 2] = 1.0
    batch_positions = jnp.asarray(np.einsum("bij,ej->bei", yaw, np.asarray(positions)) + offsets, jnp.float32)
    batch_rotations = jnp.asarray(np.einsum("bij,ejk->beik", yaw, np.asarray(rotations)), jnp.float32)
    scenes = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch, *x.shape)), scene)
    render = lambda: raycast.render_batch(rays, scenes, texture, batch_positions, batch_rotations).block_until_ready()  # noqa: E731
    render()  # compile
    return batch / time_call(render, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--rays", type=int, default=4, help="rays per ommatidium")
    parser.add_argument("--repeats", type=int, default=10, help="timed frames per scene and method")
    args = parser.parse_args()

    rays = raycast.make_eye_rays(n_rays=args.rays)
    references, ours = [], []
    flygym_times, render_times, full_times = [], [], []
    print(f"{'scene':>5} {'floor':>10} {'geoms':>5} {'r left':>7} {'r right':>7}")
    for index in range(args.scenes):
        kind = TEXTURES[index % len(TEXTURES)]
        simulation = build_simulation(kind, seed=index)
        model, data = simulation.mj_model, simulation.mj_data
        reference = eye_geometry.flygym_to_lattice(simulation.get_ommatidia_readouts(FLY))

        selection = raycast.select_scene_geoms(model)
        scene = raycast.scene_from_data(selection, data)
        cameras = raycast.eye_camera_ids(model)
        positions, rotations = raycast.eye_poses(data, cameras)
        readout = np.asarray(raycast.render_from_data(rays, selection, cameras, data))
        references.append(reference.sum(-1))
        ours.append(readout.sum(-1))
        print(
            f"{index:5d} {kind:>10} {len(scene.geom_type):5d} "
            f"{pearson(reference[0].sum(-1), readout[0].sum(-1)):7.3f} "
            f"{pearson(reference[1].sum(-1), readout[1].sum(-1)):7.3f}"
        )

        def ours_render():
            raycast.render_eyes_jit(rays, scene, selection.texture, positions, rotations).block_until_ready()

        def ours_full():
            raycast.render_from_data(rays, selection, cameras, data).block_until_ready()

        flygym_times.append(time_call(lambda: simulation.get_ommatidia_readouts(FLY), args.repeats))
        render_times.append(time_call(ours_render, args.repeats))
        full_times.append(time_call(ours_full, args.repeats))
        last = (rays, scene, selection.texture, positions, rotations)
        simulation.close()

    references, ours = np.array(references), np.array(ours)  # (scenes, 2, 721)
    print("\nPearson r, ours vs flygym (each ommatidium's own channel):")
    for eye, name in enumerate(("left", "right")):
        per_scene = [pearson(references[s, eye], ours[s, eye]) for s in range(len(references))]
        deviations = pearson(
            references[:, eye] - references[:, eye].mean(0), ours[:, eye] - ours[:, eye].mean(0)
        )
        print(
            f"  {name:5s} eye: per scene mean {np.mean(per_scene):.3f}, min {np.min(per_scene):.3f}; "
            f"pooled {pearson(references[:, eye], ours[:, eye]):.3f}; "
            f"scene-to-scene deviations {deviations:.3f}"
        )
    print(f"  mean |ours - flygym| {np.abs(ours - references).mean():.3f} (values in [0, 1])")

    flygym_frame, render_frame, full_frame = (statistics.median(t) for t in (flygym_times, render_times, full_times))
    print("\nPer frame (both eyes, one fly), median over scenes:")
    print(f"  flygym get_ommatidia_readouts  {flygym_frame * 1e3:8.2f} ms")
    print(f"  ours, render                   {render_frame * 1e3:8.2f} ms   ({flygym_frame / render_frame:6.1f}x faster)")
    print(f"  ours, read scene + render      {full_frame * 1e3:8.2f} ms   ({flygym_frame / full_frame:6.1f}x faster)")

    print(f"\nBatched (render_batch, {args.rays} rays per ommatidium, last scene):")
    for batch in (1, 64, 256):
        fps = batch_frames_per_second(*last, batch=batch, repeats=max(3, args.repeats // 2))
        print(f"  batch {batch:4d}: {fps:10.1f} frames/s  ({fps * flygym_frame:7.1f}x flygym's frame rate)")
    print(f"\njax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")


if __name__ == "__main__":
    main()

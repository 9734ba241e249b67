"""The NeuroMechFly body and its arenas, composed from flygym 2.1.1's assets.

The body is flygym's NeuroMechFly with the legs-only skeleton: 7 actuated DoFs
per leg (42 position actuators), passive tarsal joints 2-5 (springs), one
adhesion actuator per leg (6), ground contact pairs for legs, thorax, abdomen
and head, a tracking camera, and one contact sensor per leg segment.
Physics runs at ``PHYSICS_DT`` = 1e-4 s, NeuroMechFly's default.

:func:`build_model` compiles the body in one of the terrains of NeuroMechFly v2
(Wang-Chen et al., Nature Methods 2024): ``flat``, ``gapped``, ``blocks``,
``mixed``. :class:`BodyIndex` holds the model addresses that the physics
backends read, so that every backend returns the same observation layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

PHYSICS_DT = 1e-4
FLY_NAME = "nmf"
TERRAINS = ("flat", "gapped", "blocks", "mixed")
LEGS = ("lf", "lm", "lh", "rf", "rm", "rh")
LEG_SEGMENTS = (
    "coxa",
    "trochanterfemur",
    "tibia",
    "tarsus1",
    "tarsus2",
    "tarsus3",
    "tarsus4",
    "tarsus5",
)
# The seven actuated DoFs of each leg, in the model's actuator order.
LEG_DOFS = (
    ("c_thorax", "coxa", "yaw"),
    ("c_thorax", "coxa", "pitch"),
    ("c_thorax", "coxa", "roll"),
    ("coxa", "trochanterfemur", "pitch"),
    ("coxa", "trochanterfemur", "roll"),
    ("trochanterfemur", "tibia", "pitch"),
    ("tibia", "tarsus1", "pitch"),
)
N_JOINTS = len(LEGS) * len(LEG_DOFS)  # 42
N_ADHESION = len(LEGS)  # 6
N_ACTIONS = N_JOINTS + N_ADHESION  # 48

# Spawn height of the thorax attachment point above the terrain's walking surface.
SPAWN_CLEARANCE = 0.7
# Highest walking surface of each terrain (flygym 2.1.1 defaults), mm.
_TERRAIN_TOP = {"flat": 0.0, "gapped": 0.0, "blocks": 0.45, "mixed": 0.0}

# Locomotion fly parameters of NeuroMechFly v2's walking examples.
JOINT_STIFFNESS = 0.05
JOINT_DAMPING = 0.06
PASSIVE_TARSUS_STIFFNESS = 7.5
PASSIVE_TARSUS_DAMPING = 1e-2
ACTUATOR_GAIN = 45.0
ACTUATOR_FORCE_LIMIT = 65.0
ADHESION_GAIN = 40.0


def joint_name(leg: str, dof: tuple[str, str, str]) -> str:
    """Model name of a leg DoF, e.g. ``nmf/c_thorax-lf_coxa-yaw``."""
    parent, child, axis = dof
    parent_name = parent if parent == "c_thorax" else f"{leg}_{parent}"
    return f"{FLY_NAME}/{parent_name}-{leg}_{child}-{axis}"


def actuated_joint_names() -> list[str]:
    """The 42 actuated joints in action order (leg-major, LEG_DOFS within a leg)."""
    return [joint_name(leg, dof) for leg in LEGS for dof in LEG_DOFS]


def _check_terrain(terrain: str) -> None:
    if terrain not in TERRAINS:
        raise ValueError(f"unknown terrain {terrain!r}; valid terrains: {TERRAINS}")


def _make_world(terrain: str):
    from flygym.compose import FlatGroundWorld
    from flygym.compose.world import (
        BlocksTerrainWorld,
        GappedTerrainWorld,
        MixedTerrainWorld,
    )

    worlds = {
        "flat": FlatGroundWorld,
        "gapped": GappedTerrainWorld,
        "blocks": BlocksTerrainWorld,
        "mixed": MixedTerrainWorld,
    }
    return worlds[terrain]()


def _make_fly(primitive: bool = False):
    """NeuroMechFly for locomotion; ``primitive`` fits capsules to the meshes."""
    from flygym.anatomy import (
        PASSIVE_TARSAL_LINKS,
        ActuatedDOFPreset,
        AxisOrder,
        JointPreset,
        Skeleton,
    )
    from flygym.compose import ActuatorType, KinematicPosePreset, NeuroMechFly
    from flygym.compose.fly.base_fly import GeomFittingOption

    axis_order = AxisOrder.YAW_PITCH_ROLL
    neutral_pose = KinematicPosePreset.NEUTRAL.get_pose_by_axis_order(axis_order)
    skeleton = Skeleton(axis_order=axis_order, joint_preset=JointPreset.LEGS_ONLY)
    fitting = GeomFittingOption.ALL_TO_CAPSULES if primitive else GeomFittingOption.UNMODIFIED
    fly = NeuroMechFly(name=FLY_NAME, geom_fitting_option=fitting)
    joints = fly.add_joints(
        skeleton,
        neutral_pose=neutral_pose,
        stiffness=JOINT_STIFFNESS,
        damping=JOINT_DAMPING,
    )
    for jointdof, joint in joints.items():
        if jointdof.child.link in PASSIVE_TARSAL_LINKS:
            # MjsJoint stiffness/damping are polynomial coefficients; [0] is linear.
            joint.stiffness[0] = PASSIVE_TARSUS_STIFFNESS
            joint.damping[0] = PASSIVE_TARSUS_DAMPING
    fly.add_actuators(
        skeleton.get_actuated_dofs_from_preset(ActuatedDOFPreset.LEGS_ACTIVE_ONLY),
        ActuatorType.POSITION,
        neutral_input=neutral_pose,
        kp=ACTUATOR_GAIN,
        forcerange=(-ACTUATOR_FORCE_LIMIT, ACTUATOR_FORCE_LIMIT),
    )
    if primitive:
        # Adhesion becomes an external force (MJX has no adhesion actuator);
        # the claws become spheres.
        for leg in LEGS:
            for geom in fly.bodyseg_to_mjcfgeom[_segment(f"{leg}_tarsus5")]:
                geom.type = mujoco.mjtGeom.mjGEOM_SPHERE
    else:
        fly.add_leg_adhesion(gain=ADHESION_GAIN)
        fly.colorize()
    fly.add_vision()  # the two eye cameras: where the compound eye looks from
    fly.add_tracking_camera()
    return fly


def _segment(name: str):
    from flygym.anatomy import BodySegment

    return BodySegment(name)


def _add_segment_contact_sensors(spec: mujoco.MjSpec) -> None:
    """One contact sensor per leg segment: net force of all its contacts.

    ``reduce=netforce`` sums every contact of the segment into one synthetic
    contact whose force is expressed in the world frame.
    """
    found_and_force = 1 | 2  # data bitmask: found, force
    netforce = 3
    for leg in LEGS:
        for segment in LEG_SEGMENTS:
            spec.add_sensor(
                name=f"contact_{leg}_{segment}",
                type=mujoco.mjtSensor.mjSENS_CONTACT,
                objtype=mujoco.mjtObj.mjOBJ_BODY,
                objname=f"{FLY_NAME}/{leg}_{segment}",
                intprm=[found_and_force, netforce, 1],
            )


def build_spec(terrain: str = "flat") -> mujoco.MjSpec:
    """The MjSpec of NeuroMechFly standing in ``terrain`` (not yet compiled)."""
    from flygym.utils.math import Rotation3D

    _check_terrain(terrain)
    world = _make_world(terrain)
    spawn = (0.0, 0.0, _TERRAIN_TOP[terrain] + SPAWN_CLEARANCE)
    world.add_fly(
        _make_fly(),
        spawn,
        Rotation3D("quat", (1, 0, 0, 0)),
        add_ground_contact_sensors=False,
    )
    spec = world.mjcf_root
    _add_segment_contact_sensors(spec)
    spec.option.timestep = PHYSICS_DT
    return spec


def build_model(terrain: str = "flat") -> mujoco.MjModel:
    """Compile NeuroMechFly in ``terrain``; its keyframe 0 is the neutral pose."""
    return build_spec(terrain).compile()


# Body segments of the primitive variant that collide with the ground.
PRIMITIVE_CONTACT_SEGMENTS = tuple(
    [f"{leg}_tarsus5" for leg in LEGS] + [f"{leg}_tibia" for leg in LEGS]
    + ["c_thorax", "c_head", "c_abdomen12"]
)


def _freeze_fitted_primitives(spec: mujoco.MjSpec) -> None:
    """Replace mesh-fitted capsules/spheres by explicit ones and drop the meshes.

    MuJoCo fits a primitive to a mesh at compile time; writing the fitted size
    and pose back makes the model mesh-free, which MJX needs to stay fast.
    """
    compiled = spec.compile()
    for geom in spec.geoms:
        if geom.meshname:
            gid = mujoco.mj_name2id(compiled, mujoco.mjtObj.mjOBJ_GEOM, geom.name)
            geom.meshname = ""
            geom.size = compiled.geom_size[gid]
            geom.pos = compiled.geom_pos[gid]
            geom.quat = compiled.geom_quat[gid]
            geom.rgba = (0.65, 0.45, 0.2, 1.0)
    for mesh in list(spec.meshes):
        spec.delete(mesh)


def build_primitive_model(objects: tuple = ()) -> mujoco.MjModel:
    """The MJX-compatible NeuroMechFly on flat ground, with optional arena ``objects``.

    Same kinematic tree, masses, joints and position actuators as
    :func:`build_model`; capsules fitted to the leg and body meshes, spheres at
    the claws; ground contacts only for claws, tibiae, thorax, head and the
    first abdominal segment, without margin; no contact sensors, no adhesion
    actuators (the backends apply adhesion as a force), no noslip pass.
    Inertias follow the capsules, so they differ slightly from the mesh model.
    ``objects`` (:class:`~connectofly.envs.arena.ArenaObject`) become mocap
    bodies as in the exact model.
    """
    from connectofly.envs.arena import add_objects

    from flygym.compose import FlatGroundWorld
    from flygym.compose.physics import ContactParams
    from flygym.utils.math import Rotation3D

    world = FlatGroundWorld()
    world.add_fly(
        _make_fly(primitive=True),
        (0.0, 0.0, SPAWN_CLEARANCE),
        Rotation3D("quat", (1, 0, 0, 0)),
        bodysegs_with_ground_contact=[_segment(s) for s in PRIMITIVE_CONTACT_SEGMENTS],
        ground_contact_params=ContactParams(margin=0.0),
        add_ground_contact_sensors=False,
    )
    spec = world.mjcf_root
    _freeze_fitted_primitives(spec)
    add_objects(spec, objects)
    spec.option.timestep = PHYSICS_DT
    spec.option.noslip_iterations = 0
    spec.option.enableflags &= ~int(mujoco.mjtEnableBit.mjENBL_ENERGY)
    return spec.compile()


@dataclass(frozen=True)
class BodyIndex:
    """Addresses of the quantities every observation reads, for one model."""

    joint_qpos: np.ndarray  # (42,) qpos addresses of the actuated joints
    joint_dof: np.ndarray  # (42,) qvel addresses of the actuated joints
    joint_actuators: np.ndarray  # (42,) actuator ids, action order
    adhesion_actuators: np.ndarray  # (6,) actuator ids, LEGS order; empty in the primitive variant
    thorax_body: int
    free_qpos: int  # qpos address of the free joint (x, y, z, qw, qx, qy, qz)
    free_dof: int  # qvel address of the free joint (vx, vy, vz, wx, wy, wz)
    claw_bodies: np.ndarray  # (6,) tarsus5 body ids, LEGS order
    contact_sensor_adr: np.ndarray | None  # (6, 8) sensordata address per segment; None without sensors
    camera: int  # tracking camera id

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> "BodyIndex":
        def obj_id(kind: mujoco.mjtObj, name: str) -> int:
            idx = mujoco.mj_name2id(model, kind, name)
            if idx < 0:
                raise ValueError(f"model has no {kind.name} named {name!r}")
            return idx

        joints = [obj_id(mujoco.mjtObj.mjOBJ_JOINT, n) for n in actuated_joint_names()]
        actuators = [
            obj_id(mujoco.mjtObj.mjOBJ_ACTUATOR, f"{n}-position")
            for n in actuated_joint_names()
        ]
        def optional_ids(kind: mujoco.mjtObj, names: list[str]) -> np.ndarray | None:
            ids = [mujoco.mj_name2id(model, kind, n) for n in names]
            return None if min(ids) < 0 else np.array(ids)

        adhesion = optional_ids(
            mujoco.mjtObj.mjOBJ_ACTUATOR, [f"{FLY_NAME}/{leg}_tarsus5-adhesion" for leg in LEGS]
        )
        free_joint = obj_id(mujoco.mjtObj.mjOBJ_JOINT, FLY_NAME)
        sensors = optional_ids(
            mujoco.mjtObj.mjOBJ_SENSOR, [f"contact_{leg}_{seg}" for leg in LEGS for seg in LEG_SEGMENTS]
        )
        return cls(
            joint_qpos=model.jnt_qposadr[joints].copy(),
            joint_dof=model.jnt_dofadr[joints].copy(),
            joint_actuators=np.array(actuators),
            adhesion_actuators=np.array([], int) if adhesion is None else adhesion,
            thorax_body=obj_id(mujoco.mjtObj.mjOBJ_BODY, f"{FLY_NAME}/c_thorax"),
            free_qpos=int(model.jnt_qposadr[free_joint]),
            free_dof=int(model.jnt_dofadr[free_joint]),
            claw_bodies=np.array(
                [obj_id(mujoco.mjtObj.mjOBJ_BODY, f"{FLY_NAME}/{leg}_tarsus5") for leg in LEGS]
            ),
            contact_sensor_adr=None if sensors is None else model.sensor_adr[sensors].reshape(len(LEGS), len(LEG_SEGMENTS)),
            camera=obj_id(mujoco.mjtObj.mjOBJ_CAMERA, f"{FLY_NAME}/trackcam"),
        )

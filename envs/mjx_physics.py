"""MJX backend: the primitive NeuroMechFly stepped in JAX (jit, vmap, grad).

Pure functions over ``mujoco.mjx.Data``: :func:`reset` builds a state,
:func:`step` applies a 48-value action for ``n_substeps`` physics steps (in a
``lax.scan``), :func:`read` returns the same :class:`BodyState` fields as the
MuJoCo C backend, as JAX arrays. Everything vmaps over a batch of flies.

The model is :func:`connectofly.envs.body.build_primitive_model`. MJX has no
adhesion actuator, so adhesion is an external force: each claw in contact
with the ground (its sphere within ``ADHESION_RANGE`` of the plane) is pulled
toward it with ``ADHESION_GAIN × adhesion`` µN, as MuJoCo's adhesion
actuator does through its contacts.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx
from mujoco.mjx._src.support import contact_force

from connectofly.envs.body import ADHESION_GAIN, LEG_SEGMENTS, LEGS, N_JOINTS, BodyIndex
from connectofly.envs.physics import BodyState

ADHESION_RANGE = 1e-3  # mm between claw sphere and ground within which adhesion acts


@dataclass(frozen=True)
class MjxBody:
    """An MJX model and the addresses :func:`read` and :func:`step` use."""

    model: mjx.Model
    index: BodyIndex
    claw_geoms: np.ndarray  # (6,) sphere geom ids
    claw_radius: np.ndarray  # (6,) mm
    segment_bodies: np.ndarray  # (6, 8) body id of each leg segment


def load(model: mujoco.MjModel) -> MjxBody:
    """Put a primitive-variant model on the JAX device."""
    if model.nmesh:
        raise ValueError("the MJX backend needs the mesh-free primitive model (body.build_primitive_model)")
    index = BodyIndex.from_model(model)
    claw_geoms = np.array([model.body_geomadr[b] for b in index.claw_bodies])
    segment_bodies = np.array(
        [[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"nmf/{leg}_{seg}") for seg in LEG_SEGMENTS] for leg in LEGS]
    )
    return MjxBody(
        model=mjx.put_model(model),
        index=index,
        claw_geoms=claw_geoms,
        claw_radius=model.geom_size[claw_geoms, 0].copy(),
        segment_bodies=segment_bodies,
    )


def reset(body: MjxBody, model: mujoco.MjModel, qpos: jax.Array) -> mjx.Data:
    """A state at ``qpos`` at rest, with the keyframe's actuator targets."""
    data = mjx.make_data(model)
    data = data.replace(qpos=jnp.asarray(qpos, data.qpos.dtype), ctrl=jnp.asarray(model.key_ctrl[0], data.ctrl.dtype))
    # Committed to the device like every jit output, so that jitted steps see
    # the same argument placement on the first and later calls (else XLA
    # compiles the step twice).
    data = jax.device_put(data, jax.devices()[0])
    return jax.jit(mjx.forward)(body.model, data)


def adhesion_forces(body: MjxBody, data: mjx.Data, adhesion: jax.Array) -> jax.Array:
    """(nbody, 6) external wrenches pulling claws in ground contact toward the ground."""
    claw_bottom = data.geom_xpos[body.claw_geoms, 2] - body.claw_radius
    touching = claw_bottom < ADHESION_RANGE
    pull = jnp.where(touching, -ADHESION_GAIN * adhesion, 0.0)
    wrench = jnp.zeros((body.model.nbody, 6), data.qpos.dtype)
    return wrench.at[body.index.claw_bodies, 2].set(pull)


def step(body: MjxBody, data: mjx.Data, action: jax.Array, n_substeps: int) -> mjx.Data:
    """Hold ``action`` (42 joint targets, 6 adhesion) for ``n_substeps`` physics steps."""
    ctrl = data.ctrl.at[body.index.joint_actuators].set(action[:N_JOINTS])
    adhesion = action[N_JOINTS:]

    def substep(d: mjx.Data, _) -> tuple[mjx.Data, None]:
        d = d.replace(xfrc_applied=adhesion_forces(body, d, adhesion))
        return mjx.step(body.model, d), None

    data, _ = jax.lax.scan(substep, data.replace(ctrl=ctrl), None, length=n_substeps)
    return data


def _segment_contact_forces(body: MjxBody, data: mjx.Data) -> jax.Array:
    """(6, 8, 3) world-frame ground reaction on each leg segment."""
    contact = data._impl.contact
    n_contacts = contact.geom.shape[0]
    if n_contacts == 0:
        return jnp.zeros((len(LEGS), len(LEG_SEGMENTS), 3))
    # contact_force takes a static contact id; there are a few dozen contacts.
    forces = jnp.stack([contact_force(body.model, data, i, True)[:3] for i in range(n_contacts)])
    # Geom 1 pushes geom 2 along the contact normal (+f on geom 2, -f on geom 1).
    geom_body = jnp.asarray(body.model.geom_bodyid)
    bodies = jnp.concatenate([geom_body[contact.geom[:, 1]], geom_body[contact.geom[:, 0]]])
    per_body = jax.ops.segment_sum(jnp.concatenate([forces, -forces]), bodies, num_segments=body.model.nbody)
    return per_body[body.segment_bodies]


def read(body: MjxBody, data: mjx.Data) -> BodyState:
    """The body's sensor readout, as JAX arrays (see :class:`BodyState`)."""
    idx = body.index
    rot = data.xmat[idx.thorax_body]
    return BodyState(
        time=data.time,
        joint_angles=data.qpos[idx.joint_qpos],
        joint_velocities=data.qvel[idx.joint_dof],
        actuator_forces=data.actuator_force[idx.joint_actuators],
        thorax_position=data.xpos[idx.thorax_body],
        thorax_orientation=data.qpos[idx.free_qpos + 3 : idx.free_qpos + 7],
        thorax_velocity=data.qvel[idx.free_dof : idx.free_dof + 3],
        thorax_angular_velocity=rot @ data.qvel[idx.free_dof + 3 : idx.free_dof + 6],
        contact_forces=_segment_contact_forces(body, data),
        claw_positions=data.xpos[idx.claw_bodies],
        thorax_rotation=rot,
    )

"""Physics backends behind one interface.

Task code talks only to :class:`Physics`: write a control vector, advance
``n_substeps`` physics steps, read a :class:`BodyState`. This module holds the
MuJoCo C implementation (:class:`MujocoPhysics`, the exact flygym model with
meshes and noslip). An MJX implementation returns the same ``BodyState``
fields from its JAX state, so tasks run unchanged on either.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import jax
import mujoco
import numpy as np

from connectofly.envs.body import BodyIndex

# MuJoCo warnings that mean the integration broke down. MuJoCo checks qpos,
# qvel and qacc for NaN/inf and huge values every step and resets the state
# silently when it finds one, so the warning counters are the trace to read.
_DIVERGENCE_WARNINGS = {
    mujoco.mjtWarning.mjWARN_BADQACC: "bad acceleration (MuJoCo reset the state)",
    mujoco.mjtWarning.mjWARN_BADQVEL: "bad velocity",
    mujoco.mjtWarning.mjWARN_BADQPOS: "bad position",
}


@dataclass(frozen=True)
class BodyState:
    """What the body's sensors report after a control step. Units: mm, s, rad, µN.

    Attributes:
        time: simulated time, s.
        joint_angles: (42,) actuated joint angles, rad (action order).
        joint_velocities: (42,) rad/s.
        actuator_forces: (42,) position-actuator torques, µN·mm.
        thorax_position: (3,) world frame, mm.
        thorax_orientation: (4,) quaternion (w, x, y, z), thorax to world.
        thorax_velocity: (3,) linear velocity, world frame, mm/s.
        thorax_angular_velocity: (3,) world frame, rad/s (z is the yaw rate).
        contact_forces: (6, 8, 3) ground-reaction force on each leg segment
            (legs lf lm lh rf rm rh; segments coxa ... tarsus5), world frame, µN.
        claw_positions: (6, 3) tarsus5 positions, world frame, mm.
        thorax_rotation: (3, 3) rotation matrix, thorax frame to world frame.
    """

    time: float
    joint_angles: np.ndarray
    joint_velocities: np.ndarray
    actuator_forces: np.ndarray
    thorax_position: np.ndarray
    thorax_orientation: np.ndarray
    thorax_velocity: np.ndarray
    thorax_angular_velocity: np.ndarray
    contact_forces: np.ndarray
    claw_positions: np.ndarray
    thorax_rotation: np.ndarray


# A PyTree, so the MJX backend can return it from jitted and vmapped functions.
jax.tree_util.register_dataclass(
    BodyState, data_fields=[f.name for f in fields(BodyState)], meta_fields=[]
)


class Physics(Protocol):
    """The backend interface the tasks use."""

    model: mujoco.MjModel
    index: BodyIndex

    def reset(self, qpos: np.ndarray, qvel: np.ndarray) -> BodyState: ...

    def step(self, ctrl: np.ndarray, n_substeps: int) -> BodyState: ...

    def divergence(self) -> str | None:
        """Why the physics broke down since the last reset, or None."""
        ...

    def qpos(self) -> np.ndarray: ...


class MujocoPhysics:
    """MuJoCo C backend: one fly, exact NeuroMechFly model, CPU."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.index = BodyIndex.from_model(model)
        self.data = mujoco.MjData(model)
        self._sensor_rows = self.index.contact_sensor_adr[..., None] + np.arange(1, 4)

    def reset(self, qpos: np.ndarray, qvel: np.ndarray) -> BodyState:
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        self.data.ctrl[:] = self.model.key_ctrl[0]
        mujoco.mj_forward(self.model, self.data)
        return self.read()

    def step(self, ctrl: np.ndarray, n_substeps: int) -> BodyState:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_substeps)
        return self.read()

    def divergence(self) -> str | None:
        for warning, reason in _DIVERGENCE_WARNINGS.items():
            if self.data.warning[warning].number > 0:
                return reason
        return None

    def qpos(self) -> np.ndarray:
        return self.data.qpos.copy()

    def read(self) -> BodyState:
        d, idx = self.data, self.index
        quat = d.qpos[idx.free_qpos + 3 : idx.free_qpos + 7].copy()
        rot = d.xmat[idx.thorax_body].reshape(3, 3).copy()
        angvel_local = d.qvel[idx.free_dof + 3 : idx.free_dof + 6]
        return BodyState(
            time=float(d.time),
            joint_angles=d.qpos[idx.joint_qpos].copy(),
            joint_velocities=d.qvel[idx.joint_dof].copy(),
            actuator_forces=d.actuator_force[idx.joint_actuators].copy(),
            thorax_position=d.xpos[idx.thorax_body].copy(),
            thorax_orientation=quat,
            thorax_velocity=d.qvel[idx.free_dof : idx.free_dof + 3].copy(),
            thorax_angular_velocity=rot @ angvel_local,
            # The sensor reports the force the segment exerts; negate for the
            # reaction the segment receives.
            contact_forces=-d.sensordata[self._sensor_rows],
            claw_positions=d.xpos[idx.claw_bodies].copy(),
            thorax_rotation=rot,
        )

"""Walking rollouts on the MJX backend, as one jitted ``lax.scan``.

The CPG (:mod:`connectofly.agents.cpg`) and the MJX physics are both pure JAX
functions, so a whole episode is a scan over control steps that jit compiles
once and vmap batches over flies (different phases, parameters or seeds).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco

from connectofly.agents.cpg import CPGParams, CPGState, cpg_step, leg_joint_targets, locomotion_action
from connectofly.envs import mjx_physics
from connectofly.envs.fly_env import substeps_per_control
from connectofly.envs.kinematics import load_step_kinematics


def cpg_action(params: CPGParams, cpg: CPGState, kinematics, control_dt: float) -> tuple[CPGState, jax.Array]:
    """One control step of the CPG: its new state and the (48,) action (adhesion in stance)."""
    cpg = cpg_step(params, cpg, control_dt)
    targets = leg_joint_targets(kinematics, cpg.phases, cpg.amplitudes)
    return cpg, locomotion_action(targets, ~kinematics.in_swing(cpg.phases))


def cpg_walk(
    body: mjx_physics.MjxBody,
    model: mujoco.MjModel,
    params: CPGParams,
    initial_phases: jax.Array,
    n_control_steps: int,
    control_dt: float = 1e-3,
) -> tuple[jax.Array, jax.Array]:
    """Walk the open-loop CPG from the neutral pose.

    Returns:
        thorax positions (n_control_steps + 1, 3), mm, and the thorax
        up-vector z after the last step (< 0: flipped).
    """
    kinematics = load_step_kinematics()
    n_substeps = substeps_per_control(control_dt)
    data = mjx_physics.reset(body, model, model.key_qpos[0])
    dtype = data.qpos.dtype  # float32, or float64 with jax_enable_x64
    cpg = CPGState(jnp.asarray(initial_phases, dtype), jnp.zeros(6, dtype))
    thorax = body.index.thorax_body

    def control_step(carry, _):
        data, cpg = carry
        cpg, action = cpg_action(params, cpg, kinematics, control_dt)
        data = mjx_physics.step(body, data, action, n_substeps)
        return (data, cpg), data.xpos[thorax]

    start = data.xpos[thorax]
    # Checkpointed: reverse-mode differentiation stores one state per control
    # step and recomputes the substeps, so memory grows gently with horizon.
    (data, _), positions = jax.lax.scan(jax.checkpoint(control_step), (data, cpg), None, length=n_control_steps)
    return jnp.concatenate([start[None], positions]), data.xmat[thorax][2, 2]

"""The VNC network as a walking controller: descending drive in, joint targets out.

Each control step: the body's proprioceptive sensors (joint angles and
velocities, leg load) are encoded by :func:`connectofly.circuits.vnc.proprioceptive_rates`,
the six-leg VNC advances one step under a tonic descending input, and the
motor-neuron rates pass through the muscle stage
(:func:`connectofly.circuits.motor_map.muscle_step`) to joint targets about the
rest pose and the claws' adhesion. Runs in :class:`~connectofly.envs.fly_env.FlyEnv`
like the baseline agents (``default_params / init / act``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from connectofly.circuits import motor_map, vnc
from connectofly.envs.body import N_JOINTS
from connectofly.envs.fly_env import action_bounds
from connectofly.envs.kinematics import array_module


class VNCCarry(NamedTuple):
    network: vnc.VNCState
    activation: jax.Array  # (6, n_channels, 2) muscle activations
    mn_rate: jax.Array  # (6, M) motor-neuron rates of the last step (for recordings)


def leg_load(contact_forces: jax.Array) -> jax.Array:
    """(6,) magnitude of each leg's summed ground-reaction force, µN (numpy in, numpy out)."""
    xp = array_module(contact_forces)
    return xp.linalg.norm(contact_forces.sum(axis=1), axis=-1)


@dataclass
class VNCAgent:
    """Closed-loop VNC walking under a tonic descending drive.

    Args:
        control_dt: the env's control step, s (one network step per control step).
        params: six-leg VNC parameters.
        mmap: the muscle stage for the network's MNs.
        sensory_names: the proprioceptive units of the network (``LegSpec.sensory_names``).
        rest_action: (48,) action with all muscles relaxed.
        descending: (4,) drive (forward, left steer, right steer, backward).
        proprioception: feed the body's sensors to the network; off (zeros) by default, as the
            shipped weights were trained (in the air) and tuned on the body (docs/vnc.md).
        init_noise: spread of the initial premotor voltages (standard normal × this).
    """

    control_dt: float
    params: vnc.VNCParams
    mmap: motor_map.MotorMap
    sensory_names: tuple[str, ...]
    rest_action: np.ndarray
    descending: np.ndarray
    proprioception: bool = False
    init_noise: float = 0.3

    def __post_init__(self) -> None:
        self.descending = np.asarray(self.descending, dtype=np.float32)
        if self.descending.shape != (vnc.N_DESCENDING,) or not np.isfinite(self.descending).all():
            raise ValueError(f"descending must be {vnc.N_DESCENDING} finite numbers "
                             f"{vnc.DESCENDING_CHANNELS}, got {self.descending!r}")
        self._step = jax.jit(self.step)

    def default_params(self) -> vnc.VNCParams:
        return self.params

    def init(self, rng: np.random.Generator) -> VNCCarry:
        state = vnc.init_state(self.params)
        noise = self.init_noise * rng.standard_normal(state.premotor.shape)
        return VNCCarry(state._replace(premotor=jnp.asarray(noise, state.premotor.dtype)),
                        motor_map.initial_activation(), jnp.zeros(state.motor.shape))

    def act(self, params: vnc.VNCParams, carry: VNCCarry, obs: dict, rng: np.random.Generator):
        return self.act_with_descending(params, carry, obs, self.descending)

    def act_with_descending(self, params: vnc.VNCParams, carry: VNCCarry, obs: dict, descending: np.ndarray):
        """One control step under ``descending`` (4,) instead of the tonic drive (for a brain upstream)."""
        carry, action = self._step(params, carry, obs["joint_angles"], obs["joint_velocities"],
                                   obs["contact_forces"], descending)
        return carry, np.asarray(action, dtype=np.float64)

    def step(self, params: vnc.VNCParams, carry: VNCCarry, joint_angles, joint_velocities, contact_forces,
             descending):
        """One network and muscle step, pure JAX: the new carry and the (48,) action within the
        action bounds (the sensor arguments are read only with ``proprioception``)."""
        low, high = action_bounds()
        return _control_step(params, self.mmap, self.sensory_names, jnp.asarray(self.rest_action), low, high,
                             self.control_dt, self.proprioception, carry, joint_angles, joint_velocities,
                             contact_forces, descending)


def _control_step(params, mmap, sensory_names, rest_action, low, high, dt, proprioception,
                  carry: VNCCarry, joint_angles, joint_velocities, contact_forces, descending):
    if proprioception:
        proprio = vnc.proprioceptive_rates(sensory_names, joint_angles, joint_velocities,
                                           leg_load(contact_forces), rest_action[:N_JOINTS])
    else:
        proprio = jnp.zeros((carry.network.premotor.shape[0], len(sensory_names)))
    network, out = vnc.step(params, carry.network, vnc.VNCInput(descending, proprio), dt)
    activation, action = motor_map.muscle_step(mmap, carry.activation, out.mn_rate, rest_action, dt)
    return VNCCarry(network, activation, out.mn_rate), jnp.clip(action, low, high)

"""The one leaky-rate network type every circuit is an instance of.

    tau_i dv_i/dt = -v_i + b_i + sum_j w_ij f(v_j) + input_i

with f = ReLU and sparse weights ``w`` given per edge (``src``, ``dst``,
``weight``). Integration is forward Euler with ``tau_eff = max(tau, dt)``, the
convention flyvis uses, so a time constant shorter than the step cannot make the
update overshoot. Everything is a pure JAX function: jit, vmap and grad apply.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def relu(v: jax.Array) -> jax.Array:
    return jnp.maximum(v, 0.0)


def synaptic_input(
    rate: jax.Array, src: jax.Array, dst: jax.Array, weight: jax.Array, n_nodes: int
) -> jax.Array:
    """sum_j w_ij rate_j for sparse edges, as a segment sum over postsynaptic ids."""
    return jax.ops.segment_sum(weight * rate[src], dst, num_segments=n_nodes)


def euler_step(
    v: jax.Array,
    tau: jax.Array,
    bias: jax.Array,
    recurrent: jax.Array,
    external: jax.Array,
    dt: float,
) -> jax.Array:
    """One Euler step of the leaky-rate equation given the summed inputs."""
    tau_eff = jnp.maximum(tau, dt)
    return v + dt * (-v + bias + recurrent + external) / tau_eff

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


# -- Chunked adjacency: the same sum as dense gathers, for speed -------------
#
# XLA's scatter-add (behind segment_sum over all edges) runs serially on CPU.
# Cutting each neuron's edge list into chunks of a fixed width (the last one
# zero-padded) turns the sum into one dense gather, a row sum, and a segment
# sum over the much shorter list of chunks: several times faster, batched or
# not. The backward pass uses the transposed layout (edges chunked by
# presynaptic neuron), so gradients are gathers too.


class ChunkedAdjacency(NamedTuple):
    """Edges grouped by row neuron, in chunks of equal width.

    Attributes:
        cols: (n_chunks, width) neuron at the other end of each edge (uint16
            when there are at most 65,536 neurons: half the bytes to stream,
            and the gather is memory-bound).
        edges: (n_chunks, width) index of the edge in the flat edge list;
            ``n_edges`` marks padding (weight zero).
        chunk_row: (n_chunks,) row neuron of each chunk, ascending.
    """

    cols: jax.Array
    edges: jax.Array
    chunk_row: jax.Array


def chunked_adjacency(
    row: np.ndarray, col: np.ndarray, n_nodes: int, width: int = 16
) -> ChunkedAdjacency:
    """Build the chunked layout of edges ``col -> row`` (numpy, once).

    Args:
        row: (e,) neuron each edge is summed into.
        col: (e,) neuron at the other end of each edge.
        n_nodes: number of neurons.
        width: edges per chunk; 16 suits CPU gathers (see benchmarks).
    """
    e = len(row)
    by_row = np.argsort(row, kind="stable")
    degree = np.bincount(row, minlength=n_nodes)
    chunks_per_row = -(-degree // width)
    first_chunk = np.cumsum(chunks_per_row) - chunks_per_row
    slot = np.arange(e) - (np.cumsum(degree) - degree)[row[by_row]]
    chunk = first_chunk[row[by_row]] + slot // width
    n_chunks = int(chunks_per_row.sum())
    cols = np.zeros((n_chunks, width), dtype=np.uint16 if n_nodes <= 1 << 16 else np.int32)
    edges = np.full((n_chunks, width), e, dtype=np.int32)
    cols[chunk, slot % width] = col[by_row]
    edges[chunk, slot % width] = by_row
    return ChunkedAdjacency(
        cols=jnp.asarray(cols),
        edges=jnp.asarray(edges),
        chunk_row=jnp.asarray(np.repeat(np.arange(n_nodes), chunks_per_row), dtype=jnp.int32),
    )


def chunked_weights(adjacency: ChunkedAdjacency, weight: jax.Array) -> jax.Array:
    """Flat (e,) edge weights laid out as the chunks of ``adjacency`` (zero padding)."""
    extended = jnp.concatenate([weight, jnp.zeros((1,), weight.dtype)])
    return extended[adjacency.edges]


def _chunked_sum(x: jax.Array, weights: jax.Array, adjacency: ChunkedAdjacency) -> jax.Array:
    partial = jnp.sum(weights * x[adjacency.cols], axis=1)
    return jax.ops.segment_sum(
        partial, adjacency.chunk_row, num_segments=x.shape[0], indices_are_sorted=True
    )


@jax.custom_vjp
def chunked_synaptic_input(
    rate: jax.Array,
    weights_in: jax.Array,
    weights_out: jax.Array,
    incoming: ChunkedAdjacency,
    outgoing: ChunkedAdjacency,
) -> jax.Array:
    """``sum_j w_ij rate_j`` like :func:`synaptic_input`, with chunked layouts.

    ``incoming`` chunks edges by postsynaptic neuron (rows = dst, cols = src),
    ``outgoing`` by presynaptic neuron (rows = src, cols = dst); ``weights_in``
    and ``weights_out`` hold the same edge weights in each layout
    (:func:`chunked_weights`). Gradients flow to ``rate`` and ``weights_in``
    (``weights_out`` only serves the backward pass and gets none).
    """
    return _chunked_sum(rate, weights_in, incoming)


def _chunked_fwd(rate, weights_in, weights_out, incoming, outgoing):
    out = _chunked_sum(rate, weights_in, incoming)
    return out, (rate, weights_in, weights_out, incoming, outgoing)


def _chunked_bwd(residuals, grad):
    rate, weights_in, weights_out, incoming, outgoing = residuals
    grad_rate = _chunked_sum(grad, weights_out, outgoing)
    grad_weights_in = grad[incoming.chunk_row][:, None] * rate[incoming.cols]
    return grad_rate, grad_weights_in, jnp.zeros_like(weights_out), None, None


chunked_synaptic_input.defvjp(_chunked_fwd, _chunked_bwd)

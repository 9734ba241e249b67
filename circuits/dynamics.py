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


# -- Padded adjacency: the same sum as gathers, for speed ----------------------
#
# XLA's scatter-add (behind segment_sum) runs serially on CPU. Grouping the
# neurons into blocks and padding each neuron's edge list to the longest in its
# block turns the sum into gathers and dense row sums, several times faster
# when the blocks have even degrees (as the cell types of a convolutional
# connectome do). The backward pass uses the transposed layout (edges grouped
# by presynaptic neuron), so gradients are gathers too.


class PaddedAdjacency(NamedTuple):
    """Edges grouped by row neuron, one padded block per group.

    For block ``b``: ``rows[b]`` (n_b,) are the row neurons (postsynaptic for the
    forward layout); ``cols[b]`` (n_b, d_b) the neuron at the other end of each
    edge; ``edges[b]`` (n_b, d_b) the index of the edge in the flat edge list,
    ``n_edges`` for padding (whose weight is zero). ``order`` maps the
    concatenated block rows back to neuron order (None: already in order).
    """

    rows: tuple[jax.Array, ...]
    cols: tuple[jax.Array, ...]
    edges: tuple[jax.Array, ...]
    order: jax.Array | None


def padded_adjacency(
    row: np.ndarray, col: np.ndarray, group: np.ndarray
) -> PaddedAdjacency:
    """Build the padded layout of edges ``col -> row``.

    Args:
        row: (e,) neuron each edge is summed into.
        col: (e,) neuron at the other end of each edge.
        group: (n,) block label of every neuron (e.g. its cell type); neurons
            with the same label share one block, padded to its largest degree.
    """
    n, e = len(group), len(row)
    _, block = np.unique(group, return_inverse=True)
    n_blocks = int(block.max()) + 1
    block_size = np.bincount(block, minlength=n_blocks)
    block_start = np.cumsum(block_size) - block_size
    node_order = np.argsort(block, kind="stable")  # by block, then neuron id
    local = np.empty(n, dtype=np.int64)  # position of each neuron in its block
    local[node_order] = np.arange(n) - np.repeat(block_start, block_size)
    degree = np.bincount(row, minlength=n)
    by_row = np.argsort(row, kind="stable")
    slot = np.empty(e, dtype=np.int64)  # position of each edge in its row
    slot[by_row] = np.arange(e) - (np.cumsum(degree) - degree)[row[by_row]]
    width = np.zeros(n_blocks, dtype=np.int64)
    np.maximum.at(width, block, degree)
    edge_block = block[row]
    by_block = np.argsort(edge_block, kind="stable")
    edge_bounds = np.concatenate([[0], np.cumsum(np.bincount(edge_block, minlength=n_blocks))])
    rows, cols, edges = [], [], []
    for b in range(n_blocks):
        ids = by_block[edge_bounds[b]:edge_bounds[b + 1]]
        block_cols = np.zeros((block_size[b], width[b]), dtype=np.int32)
        block_edges = np.full((block_size[b], width[b]), e, dtype=np.int32)
        block_cols[local[row[ids]], slot[ids]] = col[ids]
        block_edges[local[row[ids]], slot[ids]] = ids
        rows.append(node_order[block_start[b]:block_start[b] + block_size[b]])
        cols.append(block_cols)
        edges.append(block_edges)
    concatenated = np.concatenate(rows)
    order = None if (concatenated == np.arange(n)).all() else np.argsort(concatenated)
    return PaddedAdjacency(
        rows=tuple(jnp.asarray(r, dtype=jnp.int32) for r in rows),
        cols=tuple(jnp.asarray(c) for c in cols),
        edges=tuple(jnp.asarray(x) for x in edges),
        order=None if order is None else jnp.asarray(order, dtype=jnp.int32),
    )


def padded_weights(adjacency: PaddedAdjacency, weight: jax.Array) -> tuple[jax.Array, ...]:
    """Flat (e,) edge weights laid out as the blocks of ``adjacency`` (zero padding)."""
    extended = jnp.concatenate([weight, jnp.zeros((1,), weight.dtype)])
    return tuple(extended[ids] for ids in adjacency.edges)


def _padded_sum(
    x: jax.Array, weights: tuple[jax.Array, ...], adjacency: PaddedAdjacency
) -> jax.Array:
    blocks = [jnp.sum(w * x[c], axis=1) for w, c in zip(weights, adjacency.cols)]
    out = jnp.concatenate(blocks)
    return out if adjacency.order is None else out[adjacency.order]


@jax.custom_vjp
def padded_synaptic_input(
    rate: jax.Array,
    weights_in: tuple[jax.Array, ...],
    weights_out: tuple[jax.Array, ...],
    incoming: PaddedAdjacency,
    outgoing: PaddedAdjacency,
) -> jax.Array:
    """``sum_j w_ij rate_j`` like :func:`synaptic_input`, with padded layouts.

    ``incoming`` groups edges by postsynaptic neuron (rows = dst, cols = src),
    ``outgoing`` by presynaptic neuron (rows = src, cols = dst); ``weights_in``
    and ``weights_out`` are the same edge weights in each layout
    (:func:`padded_weights`). Gradients flow to ``rate`` and ``weights_in``.
    """
    return _padded_sum(rate, weights_in, incoming)


def _padded_fwd(rate, weights_in, weights_out, incoming, outgoing):
    out = _padded_sum(rate, weights_in, incoming)
    return out, (rate, weights_in, weights_out, incoming, outgoing)


def _padded_bwd(residuals, grad):
    rate, weights_in, weights_out, incoming, outgoing = residuals
    grad_rate = _padded_sum(grad, weights_out, outgoing)
    grad_weights_in = tuple(
        grad[r][:, None] * rate[c] for r, c in zip(incoming.rows, incoming.cols)
    )
    grad_weights_out = tuple(jnp.zeros_like(w) for w in weights_out)
    return grad_rate, grad_weights_in, grad_weights_out, None, None


padded_synaptic_input.defvjp(_padded_fwd, _padded_bwd)

"""The connectome-constrained optic lobe (flyvis's network, in JAX).

A re-implementation of the network of Lappalainen et al., "Connectome-constrained
networks predict neural activity across the fly visual system", Nature 634
(2024), as released in ``flyvis`` 1.2.0, on the leaky-rate core of
:mod:`connectofly.circuits.dynamics`:

* **Connectome.** ``fib25-fib19_v2.2.json`` lists 65 cell types, each tiling a
  hexagonal column lattice (:mod:`connectofly.circuits.hex_lattice`), and 605
  edge types (source type, target type, sign, and synapse counts per column
  offset ``(du, dv) = target - source``). Offsets are filled inside their convex
  hull with ``n_syn_fill`` synapses (:func:`fill_convex_hull`), and every edge
  type is repeated over the lattice like a convolution.
* **Parameters** are per cell type (resting potential ``bias``, time constant
  ``time_const``) and per edge type (``syn_strength``); synapse counts and signs
  are fixed. None of them depends on the lattice extent, so a network trained
  at a small extent runs unchanged at extent 15.
* **Dynamics** (forward Euler, ``tau_eff = max(tau, dt)``)::

      V <- V + dt * (-V + bias + sum_j w_ij ReLU(V_j) + x) / tau_eff
      w = sign * n_syn * syn_strength

  with the luminance of each column added to the photoreceptors R1-R8 of that
  column.
* **Implementation.** Because every edge type is a convolution, the recurrent
  sum runs on per-type grids over the lattice (:class:`GridLayout`): each
  (edge type, offset), a *term*, adds a weighted, shifted copy of its source
  type's grid to its target type's. The copies are contiguous windows of
  memory, gathered at once and summed into their target types: on CPU several
  times faster than a gather over the 1.5 M edges of the extent-15 network.
  :func:`simulate` and :func:`hold` keep the voltages on the grids between
  steps; :func:`step` converts from and to the per-neuron order. On small
  lattices (extent below :data:`GRID_MIN_EXTENT`, e.g. the extent-4 training
  default) the grids are mostly padding, and the sum gathers the edges
  instead (:func:`build_graph`'s ``method``); both give the same voltages.

Everything is a pure JAX function over PyTrees: :func:`init` builds
:class:`OpticLobeParams`, :func:`step` advances one time step, :func:`simulate`
scans a stimulus, :func:`steady_state` relaxes the network under uniform grey.
Batch with ``jax.vmap``; differentiate with respect to ``params.trainable``.
"""

from __future__ import annotations

import json
from functools import cache, partial
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from connectofly.circuits import dynamics, hex_lattice
from connectofly.circuits.connectome import Connectome
from connectofly.circuits.data import connectome_path

CONNECTOME_FILE = "fib25-fib19_v2.2.json"
SPEC_KEYS = ("nodes", "edges", "input_units", "output_units")
NODE_KEYS = ("name", "pattern")
EDGE_KEYS = ("src", "tar", "alpha", "offsets")


# -- The connectome specification (the JSON file) ------------------------------


@dataclass(frozen=True)
class EdgeType:
    """One edge type: all synapses from one cell type onto another.

    Attributes:
        source: presynaptic cell type.
        target: postsynaptic cell type.
        sign: +1 (excitatory) or -1 (inhibitory).
        offsets: (k, 2) column offsets ``(du, dv)`` = target - source, the
            reported ones first, then those filled in their convex hull.
        n_syn: (k,) synapse count at each offset.
    """

    source: str
    target: str
    sign: float
    offsets: np.ndarray
    n_syn: np.ndarray


@dataclass(frozen=True)
class OpticLobeSpec:
    """The parsed connectome file, independent of the lattice extent.

    Attributes:
        cell_types: cell types in file order (the neuron order of the network).
        strides: ``(u_stride, v_stride)`` of each cell type's tiling.
        edge_types: all edge types, in file order.
        input_types: photoreceptor types receiving the luminance (R1-R8).
        output_types: cell types flyvis decodes from.
    """

    cell_types: tuple[str, ...]
    strides: tuple[tuple[int, int], ...]
    edge_types: tuple[EdgeType, ...]
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]


def read_spec(path: str | Path | None = None, n_syn_fill: float = 1.0) -> OpticLobeSpec:
    """Read and validate a flyvis connectome JSON file.

    Args:
        path: the file; by default ``fib25-fib19_v2.2.json`` located (and its
            SHA-256 checked) by :func:`connectofly.circuits.data.connectome_path`.
        n_syn_fill: synapses assumed at offsets inside the convex hull of the
            reported ones (flyvis's default 1; 0 disables the filling).
    """
    path = connectome_path(CONNECTOME_FILE) if path is None else Path(path)
    with open(path) as f:
        raw = json.load(f)
    return parse_spec(raw, n_syn_fill)


def parse_spec(raw: Any, n_syn_fill: float = 1.0) -> OpticLobeSpec:
    """Validate the decoded JSON of a connectome file and build its spec.

    Raises:
        ValueError: a missing key, an unknown cell type, a bad sign or pattern.
    """
    _require_keys(raw, SPEC_KEYS, "connectome file")
    cell_types, strides = [], []
    for i, node in enumerate(raw["nodes"]):
        _require_keys(node, NODE_KEYS, f"nodes[{i}]")
        if node["name"] in cell_types:
            raise ValueError(f"nodes[{i}].name: duplicate cell type {node['name']!r}")
        cell_types.append(node["name"])
        strides.append(_parse_pattern(node["pattern"], f"nodes[{i}].pattern"))
    known = set(cell_types)
    edge_types = tuple(
        _parse_edge(edge, f"edges[{i}]", known, n_syn_fill)
        for i, edge in enumerate(raw["edges"])
    )
    for key in ("input_units", "output_units"):
        for name in raw[key]:
            _require_cell_type(name, known, key)
    for name in raw["input_units"]:
        if strides[cell_types.index(name)] != (1, 1):
            raise ValueError(f"input_units: {name!r} must tile every column (stride [1, 1])")
    return OpticLobeSpec(
        cell_types=tuple(cell_types),
        strides=tuple(strides),
        edge_types=edge_types,
        input_types=tuple(raw["input_units"]),
        output_types=tuple(raw["output_units"]),
    )


def _require_keys(obj: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in keys:
        if key not in obj:
            raise ValueError(f"{where}: missing key {key!r} (required: {list(keys)})")


def _require_cell_type(name: Any, known: set[str], where: str) -> None:
    if name not in known:
        raise ValueError(
            f"{where}: unknown cell type {name!r}; the file's nodes define {sorted(known)}"
        )


def _parse_pattern(pattern: Any, where: str) -> tuple[int, int]:
    """``["stride", [su, sv]]`` or ``["tile", n]`` -> ``(u_stride, v_stride)``."""
    if isinstance(pattern, list) and len(pattern) == 2:
        kind, args = pattern
        if kind == "stride" and isinstance(args, list) and len(args) == 2:
            strides = (int(args[0]), int(args[1]))
        elif kind == "tile" and isinstance(args, int):
            strides = (args, args)
        else:
            strides = (0, 0)
        if min(strides) >= 1:
            return strides
    raise ValueError(
        f"{where}: got {pattern!r}; allowed: ['stride', [u_stride, v_stride]] or "
        "['tile', n] with positive integers"
    )


def _parse_edge(edge: Any, where: str, known: set[str], n_syn_fill: float) -> EdgeType:
    _require_keys(edge, EDGE_KEYS, where)
    _require_cell_type(edge["src"], known, f"{where}.src")
    _require_cell_type(edge["tar"], known, f"{where}.tar")
    if edge["alpha"] not in (1, -1):
        raise ValueError(f"{where}.alpha: got {edge['alpha']!r}; allowed: +1 or -1")
    try:
        offsets = np.array([o[0] for o in edge["offsets"]], dtype=np.int64).reshape(-1, 2)
        n_syn = np.array([o[1] for o in edge["offsets"]], dtype=np.float64)
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(
            f"{where}.offsets: expected a list of [[du, dv], n_syn], got {edge['offsets']!r:.80}"
        ) from err
    if len(offsets) == 0 or (n_syn < 0).any():
        raise ValueError(f"{where}.offsets: need at least one offset and n_syn >= 0")
    if n_syn_fill > 0 and len(offsets) >= 3:
        offsets, n_syn = fill_convex_hull(offsets, n_syn, n_syn_fill)
    return EdgeType(edge["src"], edge["tar"], float(edge["alpha"]), offsets, n_syn)


# -- Convex-hull filling of the offsets ----------------------------------------


def fill_convex_hull(
    offsets: np.ndarray, n_syn: np.ndarray, n_syn_fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Add the lattice offsets inside the convex hull of the reported ones.

    The EM reconstruction misses some synapses; flyvis assumes ``n_syn_fill``
    synapses at every unreported offset inside the convex hull of the reported
    offsets. Which boundary points count follows the even-odd ray test flyvis
    applies (see :func:`_inside_polygon`). Collinear offsets span no area and
    get no filling. The filled offsets are appended, ``u``-major, after the
    reported ones.
    """
    hull = convex_hull(offsets)
    if len(hull) < 3:
        return offsets, n_syn
    reported = set(map(tuple, offsets.tolist()))
    (u_min, v_min), (u_max, v_max) = offsets.min(axis=0), offsets.max(axis=0)
    filled = [
        (u, v)
        for u in range(u_min, u_max + 1)
        for v in range(v_min, v_max + 1)
        if (u, v) not in reported and _inside_polygon(hull, (u, v))
    ]
    if not filled:
        return offsets, n_syn
    return (
        np.concatenate([offsets, np.array(filled, dtype=np.int64)]),
        np.concatenate([n_syn, np.full(len(filled), float(n_syn_fill))]),
    )


def _cross(o: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> int:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull(points: np.ndarray) -> list[tuple[int, int]]:
    """Vertices of the convex hull of integer points, counterclockwise in (u, v).

    Andrew's monotone chain in exact integer arithmetic; collinear points on the
    hull's edges are not vertices. Fewer than three vertices means no area.
    """
    pts = sorted(set(map(tuple, np.asarray(points).tolist())))
    if len(pts) < 3:
        return pts

    def half(seq: list[tuple[int, int]]) -> list[tuple[int, int]]:
        chain: list[tuple[int, int]] = []
        for p in seq:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return half(pts) + half(pts[::-1])


def _inside_polygon(polygon: list[tuple[int, int]], point: tuple[int, int]) -> bool:
    """Even-odd ray test with flyvis's boundary convention, in exact integers.

    A ray leaves ``point`` towards +u. An edge ``a -> b`` is considered when it
    straddles the ray's ``v`` half-openly (exactly one endpoint has
    ``v >= point.v``); its crossing counts when the crossing lies at
    ``u >= point.u`` for an edge running towards larger ``v`` and at
    ``u > point.u`` for one running towards smaller ``v``. With a
    counterclockwise polygon this keeps points on the left and upper boundary
    and drops those on the lower boundary, as flyvis's filling does.
    """
    pu, pv = point
    inside = False
    for i, a in enumerate(polygon):
        b = polygon[(i + 1) % len(polygon)]
        a_up, b_up = a[1] >= pv, b[1] >= pv
        if a_up != b_up:
            # sign of (crossing_u - pu) * (b_v - a_v), exact
            lhs = (b[1] - pv) * (a[0] - b[0])
            rhs = (b[0] - pu) * (a[1] - b[1])
            if (lhs >= rhs) == b_up:
                inside = not inside
    return inside


# -- The network graph on a lattice of given extent ----------------------------


def _type_columns(spec: OpticLobeSpec, extent: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [hex_lattice.columns(extent, stride) for stride in spec.strides]


def _index_grids(
    type_columns: list[tuple[np.ndarray, np.ndarray]], extent: int
) -> tuple[list[np.ndarray], list[int]]:
    """Per cell type, a (2e+1, 2e+1) grid of node ids over (u, v) (-1: none)."""
    size = 2 * extent + 1
    grids, starts, start = [], [], 0
    for u, v in type_columns:
        grid = np.full((size, size), -1, dtype=np.int64)
        grid[u + extent, v + extent] = start + np.arange(len(u))
        grids.append(grid)
        starts.append(start)
        start += len(u)
    return grids, starts


def _targets(
    grid: np.ndarray, u: np.ndarray, v: np.ndarray, du: int, dv: int, extent: int
) -> np.ndarray:
    """Node ids at ``(u + du, v + dv)`` in a type's grid, -1 where there is none."""
    tu, tv = u + du + extent, v + dv + extent
    size = grid.shape[0]
    ok = (tu >= 0) & (tu < size) & (tv >= 0) & (tv < size)
    out = np.full(len(u), -1, dtype=np.int64)
    out[ok] = grid[tu[ok], tv[ok]]
    return out


def load_connectome(
    extent: int = 15, spec: OpticLobeSpec | None = None, n_syn_fill: float = 1.0
) -> Connectome:
    """The optic-lobe connectome on a hexagonal lattice of the given extent.

    Neurons are ordered by cell type (file order), then ``u``, then ``v``;
    edges by edge type (file order), then offset, then source neuron — flyvis's
    order. ``node_attrs``: ``type_id``, ``u``, ``v``; ``edge_attrs``:
    ``edge_type`` (index into ``spec.edge_types``), ``du``, ``dv``;
    ``meta``: ``spec``, ``extent``.

    Args:
        extent: lattice radius in columns (15 is the full flyvis network).
        spec: a parsed connectome file; by default :func:`read_spec`.
        n_syn_fill: passed to :func:`read_spec` when ``spec`` is not given.
    """
    spec = read_spec(n_syn_fill=n_syn_fill) if spec is None else spec
    type_columns = _type_columns(spec, extent)
    grids, _ = _index_grids(type_columns, extent)
    type_ids = {name: i for i, name in enumerate(spec.cell_types)}
    src, dst, count, sign, etype, du_all, dv_all = [], [], [], [], [], [], []
    for k, edge in enumerate(spec.edge_types):
        s, t = type_ids[edge.source], type_ids[edge.target]
        su, sv = type_columns[s]
        for (du, dv), n in zip(edge.offsets.tolist(), edge.n_syn.tolist()):
            tgt = _targets(grids[t], su, sv, du, dv, extent)
            ok = tgt >= 0
            src.append(grids[s][su[ok] + extent, sv[ok] + extent])
            dst.append(tgt[ok])
            m = int(ok.sum())
            count.append(np.full(m, n))
            sign.append(np.full(m, edge.sign))
            etype.append(np.full(m, k))
            du_all.append(np.full(m, du))
            dv_all.append(np.full(m, dv))
    node_type_id = np.concatenate(
        [np.full(len(u), i) for i, (u, _) in enumerate(type_columns)]
    )
    return Connectome(
        node_type=np.array(spec.cell_types)[node_type_id],
        edge_src=np.concatenate(src),
        edge_dst=np.concatenate(dst),
        edge_count=np.concatenate(count),
        edge_sign=np.concatenate(sign).astype(np.int64),
        node_attrs={
            "type_id": node_type_id,
            "u": np.concatenate([u for u, _ in type_columns]),
            "v": np.concatenate([v for _, v in type_columns]),
        },
        edge_attrs={
            "edge_type": np.concatenate(etype),
            "du": np.concatenate(du_all),
            "dv": np.concatenate(dv_all),
        },
        meta={"spec": spec, "extent": extent},
    )


def mean_synapse_counts(spec: OpticLobeSpec, extent: int) -> np.ndarray:
    """Per edge type, the mean synapse count over its edges at a lattice extent.

    Offsets whose target falls outside the lattice (or between the columns of
    a sparsely tiling type) have fewer edges, so the mean is weighted by how
    many edges each offset realizes. An edge type with no edge at all falls back
    to the plain mean over its offsets.
    """
    type_columns = _type_columns(spec, extent)
    grids, _ = _index_grids(type_columns, extent)
    type_ids = {name: i for i, name in enumerate(spec.cell_types)}
    means = np.empty(len(spec.edge_types))
    for k, edge in enumerate(spec.edge_types):
        su, sv = type_columns[type_ids[edge.source]]
        grid = grids[type_ids[edge.target]]
        n_edges = np.array(
            [(_targets(grid, su, sv, du, dv, extent) >= 0).sum() for du, dv in edge.offsets]
        )
        weights = n_edges if n_edges.sum() > 0 else np.ones(len(n_edges))
        means[k] = np.sum(weights * edge.n_syn) / np.sum(weights)
    return means


def spec_of(connectome: Connectome) -> OpticLobeSpec:
    """The :class:`OpticLobeSpec` a connectome was built from.

    Raises:
        ValueError: the connectome does not come from :func:`load_connectome`.
    """
    spec = connectome.meta.get("spec")
    if not isinstance(spec, OpticLobeSpec):
        raise ValueError(
            "connectome.meta['spec']: missing; build optic-lobe connectomes with load_connectome"
        )
    return spec


def central_neurons(connectome: Connectome) -> np.ndarray:
    """Index of each cell type's neuron in the central column ``(0, 0)``."""
    attrs = connectome.node_attrs
    at_centre = (attrs["u"] == 0) & (attrs["v"] == 0)
    n_types = len(spec_of(connectome).cell_types)
    index = np.full(n_types, -1)
    index[attrs["type_id"][at_centre]] = np.flatnonzero(at_centre)
    return index


def neurons_of_type(connectome: Connectome, cell_type: str) -> np.ndarray:
    """Indices of all neurons of one cell type, in lattice order."""
    spec = spec_of(connectome)
    _require_cell_type(cell_type, set(spec.cell_types), "cell_type")
    return np.flatnonzero(connectome.node_type == cell_type)


# -- Parameters ----------------------------------------------------------------


@dataclass(frozen=True)
class OpticLobeConfig:
    """How :func:`init` draws the parameters (flyvis's defaults).

    Attributes:
        bias_mean, bias_std: resting potentials ~ Normal(mean, std) per type.
        time_const: initial time constant of every type (s).
        strength_scale: ``syn_strength = strength_scale / mean n_syn`` per edge type.
        strength_extent: lattice extent over which that mean is taken; fixed
            (flyvis's 15) so the parameters do not depend on the extent run.
    """

    bias_mean: float = 0.5
    bias_std: float = 0.05
    time_const: float = 0.05
    strength_scale: float = 0.01
    strength_extent: int = 15


class Trainable(NamedTuple):
    """The learnable parameters: per cell type and per edge type."""

    bias: Float[Array, " n_types"]
    time_const: Float[Array, " n_types"]
    syn_strength: Float[Array, " n_edge_types"]


TERMS_PER_CHUNK = 8  # terms summed together before the segment sum (see _window_sum)


@jax.tree_util.register_static
@dataclass(frozen=True)
class GridLayout:
    """The static sizes of the per-type grids the recurrent sum runs on.

    Each cell type's neurons sit on a grid of ``2e + 1`` rows (``u``) of
    ``row_stride`` cells (``v``: the ``2e + 1`` lattice columns, then zero
    cells), flattened row by row into ``size`` cells, with ``margin`` zero
    cells before and after: ``padded`` cells per type, ``n_types * padded`` in
    all (the network's *cells*). Cells without a neuron (the margins, the
    corners of the hexagon, between a sparse type's columns) hold voltage and
    rate 0. A *term* is one offset ``(du, dv)`` of one edge type: it adds
    ``weight * rate`` of its source type shifted by ``du * row_stride + dv``
    cells to its target type, a contiguous window of ``size`` cells of the
    source's padded grid. The zero cells at each row's end are at least
    ``max |dv|`` wide and the margins at least the largest shift, so a shift
    past a row's or the grid's end reads zeros, not another row or type.
    """

    n_types: int
    size: int  # cells per type without the margins, (2e + 1) * row_stride
    margin: int

    @property
    def padded(self) -> int:
        """Cells per type with the margins."""
        return self.size + 2 * self.margin


class TermChunks(NamedTuple):
    """Terms grouped by the type they add to, :data:`TERMS_PER_CHUNK` slots a
    chunk (each type's last chunk partly empty)."""

    term: jax.Array  # (n_slots,) int32 term in each slot; n_terms: empty (weight 0)
    window: jax.Array  # (n_slots,) int32 first cell of the slot's window
    chunk_type: jax.Array  # (n_chunks,) int32 type each chunk adds to, ascending


class Graph(NamedTuple):
    """The fixed structure of the network on one lattice.

    On lattices of extent :data:`GRID_MIN_EXTENT` or more the recurrent sum runs
    on the cells of :class:`GridLayout`, one term per (edge type, offset) with
    an edge on the lattice: ``by_target`` sums the terms' source windows into
    their targets; ``by_source``, for the gradient, the targets' windows back
    into their sources (shifts reversed). On smaller ones the windows are mostly
    padding, and the sum gathers the edges instead (``incoming``, ``outgoing``;
    :func:`connectofly.circuits.dynamics.chunked_synaptic_input`), with one cell
    per neuron and the term fields ``None``. The flat edge list (``edge_type``,
    ``syn_count``) serves :func:`edge_weights` and reference computations.
    """

    edge_type: jax.Array  # (n_edges,) int32 index into the edge types
    syn_count: jax.Array  # (n_edges,) float32 synapse count
    sign: jax.Array  # (n_edge_types,) float32 +1 / -1
    node_type: jax.Array  # (n_nodes,) int32 cell-type index
    input_index: jax.Array  # (n_input_types, n_columns) int32 photoreceptor neurons
    term_edge_type: jax.Array  # (n_terms,) int32 edge type of each term
    term_syn_count: jax.Array  # (n_terms,) float32 synapse count of each term
    by_target: TermChunks
    by_source: TermChunks
    slot_of_term: jax.Array  # (n_terms,) int32 slot of each term in by_target
    neuron_of_cell: jax.Array  # (n_cells,) int32 neuron in each cell; n_nodes: none
    cell_of_neuron: jax.Array  # (n_nodes,) int32 cell of each neuron
    cell_type: jax.Array  # (n_cells,) int32 cell type of each cell
    cell_is_neuron: jax.Array  # (n_cells,) bool
    cell_in_interior: jax.Array  # (n_cells,) float32 1 outside the margins
    column_of_cell: jax.Array  # (n_cells,) int32 lattice column of each cell; n_columns: none
    input_gain: jax.Array  # (n_cells,) float32 1 in the photoreceptors' cells, else 0
    layout: GridLayout | None  # None: the sum runs over the edges (the cells are the neurons)
    incoming: dynamics.ChunkedAdjacency | None  # the edges by postsynaptic neuron, when layout is None
    outgoing: dynamics.ChunkedAdjacency | None  # and by presynaptic neuron (for the gradient)


class OpticLobeParams(NamedTuple):
    """Everything :func:`step` needs: learnable values and the fixed graph."""

    trainable: Trainable
    graph: Graph


class OpticLobeState(NamedTuple):
    """The network state: one membrane voltage per neuron."""

    voltage: Float[Array, " n_nodes"]


def init(
    key: jax.Array, connectome: Connectome, config: OpticLobeConfig = OpticLobeConfig()
) -> OpticLobeParams:
    """Initial parameters as flyvis draws them (:func:`init_trainable`), for a
    connectome from :func:`load_connectome`."""
    return OpticLobeParams(trainable=init_trainable(key, spec_of(connectome), config), graph=build_graph(connectome))


def init_trainable(key: jax.Array, spec: OpticLobeSpec, config: OpticLobeConfig = OpticLobeConfig()) -> Trainable:
    """Initial values as flyvis draws them.

    Resting potentials are sampled from ``key`` (flyvis samples them from torch's
    RNG, which JAX does not reproduce); time constants are constant; synaptic
    strengths are ``strength_scale`` over the mean synapse count of each edge
    type at ``strength_extent``.
    """
    n_types = len(spec.cell_types)
    bias = config.bias_mean + config.bias_std * jax.random.normal(key, (n_types,))
    strength = config.strength_scale / mean_synapse_counts(spec, config.strength_extent)
    return Trainable(
        bias=bias.astype(jnp.float32),
        time_const=jnp.full(n_types, config.time_const, dtype=jnp.float32),
        syn_strength=jnp.asarray(strength, dtype=jnp.float32),
    )


# Below this extent the grid windows are mostly padding and the edge gather is
# faster; measured (BPTT, batch 4, one step): extent 4 18.6 ms edges against 52 ms
# grid, extent 6 16.5 against 32.8, extent 8 50.7 against 45.2, extent 15 276 against 254.
GRID_MIN_EXTENT = 8
SUM_METHODS = ("grid", "edges")


def build_graph(connectome: Connectome, method: str | None = None) -> Graph:
    """The fixed arrays of :class:`Graph` from an optic-lobe connectome.

    Args:
        method: how the recurrent sum runs, ``"grid"`` or ``"edges"`` (see
            :class:`Graph`); by default the grid from extent :data:`GRID_MIN_EXTENT`.
            Both give the same voltages and gradients.

    Raises:
        ValueError: an unknown ``method``, or the connectome's edges are not its
            edge types repeated over the lattice, as :func:`load_connectome` builds them.
    """
    if method not in (None, *SUM_METHODS):
        raise ValueError(f"method: got {method!r}; allowed: {SUM_METHODS} or None")
    spec = spec_of(connectome)
    extent = int(connectome.meta["extent"])
    if (method or ("grid" if extent >= GRID_MIN_EXTENT else "edges")) == "edges":
        return _edge_graph(connectome, spec, extent)
    type_id = connectome.node_attrs["type_id"]
    u, v = connectome.node_attrs["u"] + extent, connectome.node_attrs["v"] + extent
    n_types, side = len(spec.cell_types), 2 * extent + 1
    occupied = np.zeros((n_types, side, side), dtype=bool)
    occupied[type_id, u, v] = True
    terms = _lattice_terms(spec, occupied)
    if sum(n for *_, n in terms) != connectome.n_edges:
        raise ValueError(
            f"connectome: {connectome.n_edges} edges, but its edge types repeated over the lattice "
            f"make {sum(n for *_, n in terms)}; build it with load_connectome"
        )
    row_stride = side + max((abs(dv) for _, _, _, dv, _ in terms), default=0)
    shifts = np.array([du * row_stride + dv for _, _, du, dv, _ in terms], dtype=np.int64)
    layout = GridLayout(n_types, side * row_stride, int(np.abs(shifts).max(initial=0)))
    edge_types = [spec.edge_types[k] for k, *_ in terms]
    target = np.array([spec.cell_types.index(e.target) for e in edge_types], dtype=np.int64)
    source = np.array([spec.cell_types.index(e.source) for e in edge_types], dtype=np.int64)
    # target cell i reads source cell i - shift, so source cell j sends to target cell j + shift
    term_window = source * layout.padded + layout.margin - shifts
    by_target = _term_chunks(target, term_window, n_types)
    slot_of_term = np.empty(len(terms), dtype=np.int64)
    filled = np.asarray(by_target.term) < len(terms)
    slot_of_term[np.asarray(by_target.term)[filled]] = np.flatnonzero(filled)
    in_grid = layout.margin + u * row_stride + v
    neuron_of_cell = np.full((n_types, layout.padded), connectome.n_nodes, dtype=np.int64)
    neuron_of_cell[type_id, in_grid] = np.arange(connectome.n_nodes)
    column_u, column_v = hex_lattice.columns(extent)
    column_of_cell = np.full(layout.padded, len(column_u), dtype=np.int64)
    column_of_cell[layout.margin + (column_u + extent) * row_stride + column_v + extent] = np.arange(len(column_u))
    input_ids = [spec.cell_types.index(t) for t in spec.input_types]
    in_interior = np.zeros(layout.padded, dtype=np.float32)
    in_interior[layout.margin : layout.margin + layout.size] = 1.0
    return Graph(
        **_per_edge_and_neuron(connectome, spec),
        term_edge_type=jnp.asarray([k for k, *_ in terms], dtype=jnp.int32),
        term_syn_count=jnp.asarray([spec.edge_types[k].n_syn[j] for k, j, *_ in terms], dtype=jnp.float32),
        by_target=by_target,
        by_source=_term_chunks(source, target * layout.padded + layout.margin + shifts, n_types),
        slot_of_term=jnp.asarray(slot_of_term, dtype=jnp.int32),
        neuron_of_cell=jnp.asarray(neuron_of_cell.reshape(-1), dtype=jnp.int32),
        cell_of_neuron=jnp.asarray(type_id * layout.padded + in_grid, dtype=jnp.int32),
        cell_type=jnp.asarray(np.repeat(np.arange(n_types), layout.padded), dtype=jnp.int32),
        cell_is_neuron=jnp.asarray(neuron_of_cell.reshape(-1) < connectome.n_nodes),
        cell_in_interior=jnp.asarray(np.tile(in_interior, n_types)),
        column_of_cell=jnp.asarray(np.tile(column_of_cell, n_types), dtype=jnp.int32),
        input_gain=jnp.asarray(np.repeat(np.isin(np.arange(n_types), input_ids), layout.padded), dtype=jnp.float32),
        layout=layout,
        incoming=None,
        outgoing=None,
    )


def _per_edge_and_neuron(connectome: Connectome, spec: OpticLobeSpec) -> dict[str, jax.Array]:
    """The :class:`Graph` fields both methods share: the flat edge list and the neurons' types."""
    type_id = connectome.node_attrs["type_id"]
    input_ids = [spec.cell_types.index(t) for t in spec.input_types]
    return {
        "edge_type": jnp.asarray(connectome.edge_attrs["edge_type"], dtype=jnp.int32),
        "syn_count": jnp.asarray(connectome.edge_count, dtype=jnp.float32),
        "sign": jnp.asarray([e.sign for e in spec.edge_types], dtype=jnp.float32),
        "node_type": jnp.asarray(type_id, dtype=jnp.int32),
        "input_index": jnp.asarray(np.stack([np.flatnonzero(type_id == i) for i in input_ids]), dtype=jnp.int32),
    }


def _edge_graph(connectome: Connectome, spec: OpticLobeSpec, extent: int) -> Graph:
    """:class:`Graph` whose sum gathers the edges: one cell per neuron, in neuron order."""
    type_id, n = connectome.node_attrs["type_id"], connectome.n_nodes
    input_ids = [spec.cell_types.index(t) for t in spec.input_types]
    column_u, column_v = hex_lattice.columns(extent)
    column = {(a, b): i for i, (a, b) in enumerate(zip(column_u.tolist(), column_v.tolist()))}
    node_column = [column[(a, b)] for a, b in zip(connectome.node_attrs["u"].tolist(), connectome.node_attrs["v"].tolist())]
    src, dst = connectome.edge_src, connectome.edge_dst
    return Graph(
        **_per_edge_and_neuron(connectome, spec),
        term_edge_type=None,
        term_syn_count=None,
        by_target=None,
        by_source=None,
        slot_of_term=None,
        neuron_of_cell=jnp.arange(n, dtype=jnp.int32),
        cell_of_neuron=jnp.arange(n, dtype=jnp.int32),
        cell_type=jnp.asarray(type_id, dtype=jnp.int32),
        cell_is_neuron=jnp.ones(n, dtype=bool),
        cell_in_interior=jnp.ones(n, dtype=jnp.float32),
        column_of_cell=jnp.asarray(node_column, dtype=jnp.int32),
        input_gain=jnp.asarray(np.isin(type_id, input_ids), dtype=jnp.float32),
        layout=None,
        incoming=dynamics.chunked_adjacency(dst, src, n),
        outgoing=dynamics.chunked_adjacency(src, dst, n),
    )


def _lattice_terms(spec: OpticLobeSpec, occupied: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """``(edge type, offset index, du, dv, n_edges)`` of every offset of every
    edge type that makes at least one edge on the lattice.

    ``occupied`` is ``(n_types, 2e + 1, 2e + 1)``: which (type, u, v) hold a
    neuron. An offset makes an edge from each source neuron whose target cell,
    ``(du, dv)`` away, holds a neuron of the target type.
    """
    side = occupied.shape[1]
    terms = []
    for k, edge in enumerate(spec.edge_types):
        src = occupied[spec.cell_types.index(edge.source)]
        tar = occupied[spec.cell_types.index(edge.target)]
        for j, (du, dv) in enumerate(edge.offsets.tolist()):
            if abs(du) >= side or abs(dv) >= side:
                continue
            # the overlap of the source grid shifted by (du, dv) with the target grid
            s = src[max(0, -du) : side - max(0, du), max(0, -dv) : side - max(0, dv)]
            t = tar[max(0, du) : side - max(0, -du), max(0, dv) : side - max(0, -dv)]
            n_edges = int(np.sum(s & t))
            if n_edges:
                terms.append((k, j, du, dv, n_edges))
    return terms


def _term_chunks(row: np.ndarray, window: np.ndarray, n_types: int) -> TermChunks:
    """Terms laid out by the type they add to (``row``), with the first cell of
    each one's window (``window``), in chunks of :data:`TERMS_PER_CHUNK` slots."""
    n_terms, width = len(row), TERMS_PER_CHUNK
    count = np.bincount(row, minlength=n_types)
    chunks = -(-count // width)
    order = np.argsort(row, kind="stable")
    rank = np.arange(n_terms) - (np.cumsum(count) - count)[row[order]]
    slot = ((np.cumsum(chunks) - chunks) * width)[row[order]] + rank
    term = np.full(chunks.sum() * width, n_terms)
    term[slot] = order
    # an empty slot reads the first window: any cells do, its weight is zero
    return TermChunks(
        term=jnp.asarray(term, dtype=jnp.int32),
        window=jnp.asarray(np.append(window, window[:1])[term], dtype=jnp.int32),
        chunk_type=jnp.asarray(np.repeat(np.arange(n_types), chunks), dtype=jnp.int32),
    )


def with_values(
    trainable: Trainable, spec: OpticLobeSpec, field: str, values: dict[Any, float]
) -> Trainable:
    """Replace a trainable field from a mapping keyed by cell type or edge type.

    ``bias`` and ``time_const`` are keyed by cell-type name; ``syn_strength`` by
    ``(source, target)``. Every key of the field must be given.
    """
    if field in ("bias", "time_const"):
        keys: list[Any] = list(spec.cell_types)
    elif field == "syn_strength":
        keys = [(e.source, e.target) for e in spec.edge_types]
    else:
        raise ValueError(f"field: got {field!r}; allowed: {list(Trainable._fields)}")
    missing = [k for k in keys if k not in values]
    if missing:
        raise ValueError(f"{field}: no value for {missing[:5]} ({len(missing)} missing)")
    return trainable._replace(**{field: jnp.asarray([values[k] for k in keys], jnp.float32)})


def with_flyvis_parameters(trainable: Trainable, spec: OpticLobeSpec, values: Any) -> Trainable:
    """``trainable`` replaced by the values of a flyvis network.

    ``values`` maps ``cell_types`` (names), ``bias`` and ``time_const`` (one per
    cell type), ``edge_types`` (``"source>target"``) and ``syn_strength`` (one per
    edge type), as flyvis's ``named_parameters`` hold them grouped by type (the
    npz written by ``benchmarks/optic_lobe_flyvis_worker.py``). flyvis omits edge
    types that have no synapse on the lattice; they get strength 0.
    """
    strength = {
        tuple(str(k).split(">")): float(v)
        for k, v in zip(values["edge_types"], values["syn_strength"])
    }
    for edge in spec.edge_types:
        strength.setdefault((edge.source, edge.target), 0.0)
    for name in ("bias", "time_const"):
        per_type = {str(t): float(v) for t, v in zip(values["cell_types"], values[name])}
        trainable = with_values(trainable, spec, name, per_type)
    return with_values(trainable, spec, "syn_strength", strength)


TRAINABLE_FIELDS = ("cell_types", "bias", "time_const", "edge_types", "syn_strength")


def named_trainable(trainable: Trainable, spec: OpticLobeSpec) -> dict[str, np.ndarray]:
    """``trainable`` keyed by name (cell types, ``"source>target"`` edge types), the
    layout :func:`with_flyvis_parameters` reads. The values are per type, so they
    fit the network at any lattice extent."""
    return {
        "cell_types": np.array(spec.cell_types),
        "bias": np.asarray(trainable.bias),
        "time_const": np.asarray(trainable.time_const),
        "edge_types": np.array([f"{e.source}>{e.target}" for e in spec.edge_types]),
        "syn_strength": np.asarray(trainable.syn_strength),
    }


def trainable_from_named(values: dict[str, np.ndarray], spec: OpticLobeSpec, where: str) -> Trainable:
    """The inverse of :func:`named_trainable` for the connectome ``spec``.

    Raises:
        ValueError: ``values`` (read from ``where``) misses a field, names other
            cell or edge types than ``spec``, or holds a field of the wrong length
            or with NaN/inf values.
    """
    missing = [k for k in TRAINABLE_FIELDS if k not in values]
    if missing:
        raise ValueError(f"{where}: no optic-lobe parameters {missing}")
    expected_names = {
        "cell_types": list(spec.cell_types),
        "edge_types": [f"{e.source}>{e.target}" for e in spec.edge_types],
    }
    for field, expected in expected_names.items():
        given = list(map(str, values[field]))
        if sorted(given) != sorted(expected):
            missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
            raise ValueError(f"{where}: {field} are not this connectome's ({len(given)} given, {len(expected)} "
                             f"expected; missing {missing[:5]}, unknown {extra[:5]}"
                             + (", some repeated" if len(set(given)) != len(given) else "") + ")")
    for field, names in (("bias", "cell_types"), ("time_const", "cell_types"), ("syn_strength", "edge_types")):
        values_of_field = np.asarray(values[field], dtype=float)
        if values_of_field.shape != (len(values[names]),):
            raise ValueError(f"{where}: {field} has shape {values_of_field.shape}; expected one value per "
                             f"entry of {names} ({len(values[names])},)")
        if not np.isfinite(values_of_field).all():
            raise ValueError(f"{where}: {field} holds NaN or inf values")
    n = len(spec.cell_types)
    blank = Trainable(jnp.zeros(n), jnp.zeros(n), jnp.zeros(len(spec.edge_types)))
    return with_flyvis_parameters(blank, spec, values)


def save_trainable(path: str | Path, trainable: Trainable, spec: OpticLobeSpec) -> None:
    np.savez(path, **named_trainable(trainable, spec))


def load_trainable(path: str | Path, spec: OpticLobeSpec) -> Trainable:
    """Parameters written by :func:`save_trainable` (see :func:`trainable_from_named`)."""
    with np.load(path) as saved:
        return trainable_from_named({k: saved[k] for k in saved.files}, spec, str(path))


def clamp(trainable: Trainable) -> Trainable:
    """Project onto the valid domain after an optimizer update (flyvis clamps
    synaptic strengths at zero)."""
    return trainable._replace(syn_strength=jnp.maximum(trainable.syn_strength, 0.0))


def silence(trainable: Trainable, spec: OpticLobeSpec, cell_types: tuple[str, ...]) -> Trainable:
    """Block the synaptic output of ``cell_types`` (as a genetic silencer, e.g. Kir2.1
    or TNT, would): every edge type leaving them gets zero strength. Their
    voltages still follow their inputs.

    Raises:
        ValueError: a name is not one of ``spec.cell_types``.
    """
    for name in cell_types:
        _require_cell_type(name, set(spec.cell_types), "cell_types")
    from_silenced = jnp.asarray([e.source in cell_types for e in spec.edge_types])
    return trainable._replace(syn_strength=jnp.where(from_silenced, 0.0, trainable.syn_strength))


# -- Dynamics ------------------------------------------------------------------


def n_columns(params: OpticLobeParams) -> int:
    """Number of lattice columns (the length of one stimulus frame)."""
    return params.graph.input_index.shape[1]


def edge_weights(params: OpticLobeParams) -> Float[Array, " n_edges"]:
    """``sign * n_syn * syn_strength`` for every edge."""
    g = params.graph
    per_type = g.sign * params.trainable.syn_strength
    return g.syn_count * per_type[g.edge_type]


def resting_state(params: OpticLobeParams) -> OpticLobeState:
    """Every neuron at its type's resting potential (flyvis's initial state)."""
    return OpticLobeState(voltage=params.trainable.bias[params.graph.node_type])


def check_stimulus(stimulus: Any, n_cols: int, ndim: int) -> None:
    """Raise ValueError for a stimulus of the wrong shape or with NaN/inf values.

    The shape is checked always; values only when the array is concrete (inside
    ``jit`` they are not known, so check before tracing).
    """
    shape = getattr(stimulus, "shape", None)
    expected = ("n_frames, " if ndim == 2 else "") + f"{n_cols}"
    if shape is None or len(shape) != ndim or shape[-1] != n_cols:
        raise ValueError(
            f"stimulus: got shape {shape}; expected ({expected}) — one luminance per "
            "column of the hex lattice (batch with jax.vmap)"
        )
    if not isinstance(stimulus, jax.core.Tracer) and not np.isfinite(np.asarray(stimulus)).all():
        raise ValueError("stimulus: contains NaN or inf values")


class _Prepared(NamedTuple):
    """Per-term and per-cell values derived from the parameters once per run.

    Per cell, not per type, so that the elementwise work of a step reads arrays
    of the shape it writes: XLA fuses it into the window gathers of the next
    sum, where broadcasting a per-type value over a batch costs index
    arithmetic on every element read (measured tenfold slower on CPU).
    """

    weights: Any  # grid: (n_terms,) sign * n_syn * syn_strength; edges: the edge weights in both chunked layouts
    tau: jax.Array  # (n_cells,) time constant
    bias: jax.Array  # (n_cells,) resting potential


def _prepare(params: OpticLobeParams) -> _Prepared:
    g, tr = params.graph, params.trainable
    if g.layout is None:
        weight = edge_weights(params)
        weights = (dynamics.chunked_weights(g.incoming, weight), dynamics.chunked_weights(g.outgoing, weight))
    else:
        weights = g.term_syn_count * (g.sign * tr.syn_strength)[g.term_edge_type]
    return _Prepared(weights, tr.time_const[g.cell_type], tr.bias[g.cell_type])


def _synaptic_input(graph: Graph, weights: Any, rate: jax.Array) -> jax.Array:
    """``sum_j w_ij rate_j`` over the cells, by the graph's method (:class:`Graph`)."""
    if graph.layout is None:
        return dynamics.chunked_synaptic_input(rate, *weights, graph.incoming, graph.outgoing)
    return _grid_input(graph, weights, rate)


@jax.custom_vjp
def to_cells(graph: Graph, values: jax.Array) -> jax.Array:
    """``(..., n_nodes)`` per-neuron values -> ``(..., n_cells)``, 0 in cells without a neuron."""
    zero = jnp.zeros((*values.shape[:-1], 1), values.dtype)
    return _take_last(graph.neuron_of_cell, jnp.concatenate([values, zero], axis=-1))


@jax.custom_vjp
def from_cells(graph: Graph, cells: jax.Array) -> jax.Array:
    """``(..., n_cells)`` -> ``(..., n_nodes)`` per-neuron values."""
    return _take_last(graph.cell_of_neuron, cells)


# Each neuron has one cell, so each map's gradient is the other map (custom_vjp because
# the batching rule of _take_last does not differentiate).
to_cells.defvjp(lambda graph, values: (to_cells(graph, values), graph),
                lambda graph, grad: (None, from_cells(graph, grad)))
from_cells.defvjp(lambda graph, cells: (from_cells(graph, cells), graph),
                  lambda graph, grad: (None, to_cells(graph, grad)))


def _take_flat(index: jax.Array, values: jax.Array) -> jax.Array:
    """``values[..., index]`` as one gather from the flattened ``values``: under vmap, JAX's rule
    gathers every element across the batch, several times slower on CPU."""
    lead, n = values.shape[:-1], values.shape[-1]
    rows = jnp.arange(int(np.prod(lead)), dtype=jnp.int32)[:, None] * n
    return values.reshape(-1)[(rows + index[None]).reshape(-1)].reshape(*lead, -1)


# -- The recurrent sum on the cells --------------------------------------------
#
# Each term's source window is contiguous, so the sum over 1.5 M edges becomes
# one gather of windows, a weighted sum within chunks of terms, and a segment
# sum of a few hundred chunk rows into the target types. Under ``vmap`` a
# custom batching rule runs the same gathers with the batch as a dimension of
# each window, instead of JAX's rule (a gather per batch element, several
# times slower). The weights' gradient, a dot product of windows, is fast for
# one network and slow when XLA fuses it over a batch, so it runs as a loop
# over the batch.


def _batch_windows(x: jax.Array, first: jax.Array, size: int) -> jax.Array:
    """``(B, len(first), size)``: the ``size`` cells from each of ``first`` in every row of ``x`` (B, n)."""
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(0, 2), collapsed_slice_dims=(), start_index_map=(1,))
    return jax.lax.gather(
        x, first[:, None], dims, slice_sizes=(x.shape[0], size), mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS
    )


def _window_sum(layout: GridLayout, chunks: TermChunks, term_weight: jax.Array, cells: jax.Array) -> jax.Array:
    """``(..., n_cells)`` -> ``(..., n_cells)``: per type, ``sum weight * window`` over its
    chunks' terms (zero in the margins)."""
    lead, x = cells.shape[:-1], cells.reshape(-1, cells.shape[-1])
    batch, n_chunks, size = x.shape[0], chunks.chunk_type.shape[0], layout.size
    weight = jnp.concatenate([term_weight, jnp.zeros((1,), term_weight.dtype)])[chunks.term]
    windows = _batch_windows(x, chunks.window, size).reshape(batch, n_chunks, TERMS_PER_CHUNK, size)
    chunk_sums = jnp.sum(windows * weight.reshape(n_chunks, TERMS_PER_CHUNK)[None, :, :, None], axis=2)
    row = (jnp.arange(batch, dtype=jnp.int32)[:, None] * layout.n_types + chunks.chunk_type[None]).reshape(-1)
    summed = jax.ops.segment_sum(
        chunk_sums.reshape(-1, size), row, num_segments=batch * layout.n_types, indices_are_sorted=True
    )
    padded = jnp.pad(summed.reshape(batch, layout.n_types, size), ((0, 0), (0, 0), (layout.margin,) * 2))
    return padded.reshape(*lead, -1)


def _window_dots(layout: GridLayout, by_target: TermChunks, slot_of_term: jax.Array, rate, grad) -> jax.Array:
    """``(n_terms,)``: each term's source window of ``rate`` dotted with its target's interior of ``grad``
    (both ``(n_cells,)``, one network)."""
    n_chunks, size = by_target.chunk_type.shape[0], layout.size
    windows = _batch_windows(rate[None], by_target.window, size)[0].reshape(n_chunks, TERMS_PER_CHUNK, size)
    targets = _batch_windows(grad[None], by_target.chunk_type * layout.padded + layout.margin, size)[0]
    return jnp.einsum("cws,cs->cw", windows, targets).reshape(-1)[slot_of_term]


def _batched_by(fn: Callable, batched: Callable, n_fixed: int) -> Callable:
    """``fn`` whose ``vmap`` runs ``batched`` with a leading batch axis on all but the first
    ``n_fixed`` arguments (the graph's); ``vmap`` over those falls back to JAX's rule."""
    custom = jax.custom_batching.custom_vmap(fn)

    @custom.def_vmap
    def rule(axis_size, in_batched, *args):
        if any(jax.tree.leaves(in_batched[:n_fixed])):
            in_axes = [jax.tree.map(lambda b: 0 if b else None, flags) for flags in in_batched]
            return jax.vmap(fn, in_axes=in_axes)(*args), True
        data = [a if b else jnp.broadcast_to(a, (axis_size, *a.shape)) for a, b in zip(args[n_fixed:], in_batched[n_fixed:])]
        return batched(*args[:n_fixed], *data), True

    return custom


_take_last = _batched_by(lambda index, values: values[..., index], _take_flat, n_fixed=1)


@cache
def _window_ops(layout: GridLayout) -> tuple[Callable, Callable]:
    """The window sum and the window dots of ``layout``, with their batching rules."""
    window_sum = partial(_window_sum, layout)
    window_sum = _batched_by(window_sum, window_sum, n_fixed=2)
    dots = partial(_window_dots, layout)

    def dots_over_batch(by_target, slot_of_term, rate, grad):
        return jax.lax.map(lambda pair: window_dots(by_target, slot_of_term, *pair), (rate, grad))

    window_dots = _batched_by(dots, dots_over_batch, n_fixed=2)
    return window_sum, window_dots


@jax.custom_vjp
def _grid_input(graph: Graph, term_weight: jax.Array, rate: jax.Array) -> jax.Array:
    """``sum_j w_ij rate_j`` on the cells: ``(n_cells,)`` rates (zero in cells without a
    neuron) -> inputs (zero in the margins). Gradients flow to ``term_weight`` and ``rate``."""
    window_sum, _ = _window_ops(graph.layout)
    return window_sum(graph.by_target, term_weight, rate)


def _grid_input_fwd(graph, term_weight, rate):
    return _grid_input(graph, term_weight, rate), (graph, term_weight, rate)


def _grid_input_bwd(residuals, grad):
    # Written out because autodiff turns the gathers into scatter-adds, serial on
    # CPU. The transposed sum is the same window sum from targets back to sources.
    graph, term_weight, rate = residuals
    window_sum, window_dots = _window_ops(graph.layout)
    grad = grad * graph.cell_in_interior  # the output's margins are constant
    grad_rate = window_sum(graph.by_source, term_weight, grad)
    grad_weight = window_dots(graph.by_target, graph.slot_of_term, rate, grad)
    return None, grad_weight, grad_rate


_grid_input.defvjp(_grid_input_fwd, _grid_input_bwd)


def _advance(graph: Graph, prepared: _Prepared, cells: jax.Array, luminance: jax.Array, dt: float) -> jax.Array:
    """One Euler step of the ``(n_cells,)`` voltages under ``(n_columns,)`` luminance."""
    zero = jnp.zeros((*luminance.shape[:-1], 1), luminance.dtype)
    external = graph.input_gain * jnp.concatenate([luminance, zero], axis=-1)[..., graph.column_of_cell]
    recurrent = _synaptic_input(graph, prepared.weights, dynamics.relu(cells))
    new = dynamics.euler_step(cells, prepared.tau, prepared.bias, recurrent, external, dt)
    return jnp.where(graph.cell_is_neuron, new, 0.0)


def advance(params: OpticLobeParams, cells: jax.Array, luminance: jax.Array, dt: float) -> jax.Array:
    """One Euler step of voltages held in the network's own layout, ``(n_cells,)``
    (:func:`to_cells`), under ``(n_columns,)`` luminance; no checks (trace it).

    What :func:`simulate` runs each frame. A closed loop that keeps its lobes in
    cells between frames saves the two layout conversions of :func:`step`, which
    at extent 15 cost about as much as the step itself (two lobes, fastest of
    300 on a 2-core CPU: 1.06 ms a frame with them, 0.51 without).
    """
    return _advance(params.graph, _prepare(params), cells, luminance, dt)


class TypeBlocks(NamedTuple):
    """Where each cell type's neurons sit among the cells of a grid graph."""

    first: np.ndarray  # (n_types,) first cell of each type's block
    length: int  # cells per block, the same for every type
    column: np.ndarray  # (length,) lattice column of each cell of a block (n_columns: none), alike for all types


def type_blocks(graph: Graph) -> TypeBlocks:
    """:class:`TypeBlocks` of a grid graph: each type's grid is one block of
    consecutive cells, its columns at the same offsets in every type.

    Raises:
        ValueError: the graph sums over edges (its cells are the neurons, see :class:`Graph`).
    """
    layout = graph.layout
    if layout is None:
        raise ValueError("type_blocks needs a grid graph (build_graph(..., method='grid'))")
    first = np.arange(layout.n_types) * layout.padded + layout.margin
    column = np.asarray(graph.column_of_cell)[layout.margin:layout.margin + layout.size]
    return TypeBlocks(first, layout.size, column)


@jax.jit
def _step(params: OpticLobeParams, voltage: jax.Array, luminance: jax.Array, dt: float):
    g = params.graph
    return from_cells(g, _advance(g, _prepare(params), to_cells(g, voltage), luminance, dt))


@jax.jit
def _simulate(
    params: OpticLobeParams,
    voltage: jax.Array,
    stimulus: jax.Array,
    dt: float,
    readout: jax.Array | None,
):
    g, prepared = params.graph, _prepare(params)
    recorded = g.cell_of_neuron if readout is None else g.cell_of_neuron[readout]

    def body(cells: jax.Array, luminance: jax.Array) -> tuple[jax.Array, jax.Array]:
        new = _advance(g, prepared, cells, luminance, dt)
        return new, new[recorded]

    cells, voltages = jax.lax.scan(body, to_cells(g, voltage), stimulus)
    return from_cells(g, cells), voltages


@partial(jax.jit, static_argnames="n_steps")
def _hold(params: OpticLobeParams, voltage: jax.Array, luminance: jax.Array, dt: float, n_steps: int):
    g, prepared = params.graph, _prepare(params)

    def body(cells: jax.Array, _) -> tuple[jax.Array, None]:
        return _advance(g, prepared, cells, luminance, dt), None

    return from_cells(g, jax.lax.scan(body, to_cells(g, voltage), length=n_steps)[0])


def step(
    params: OpticLobeParams,
    state: OpticLobeState,
    luminance: Float[Array, " n_columns"],
    dt: float,
) -> tuple[OpticLobeState, Float[Array, " n_nodes"]]:
    """Advance one Euler step; return the new state and the new voltages.

    Raises:
        ValueError: ``luminance`` is not one value per column, or not finite.
    """
    check_stimulus(luminance, n_columns(params), ndim=1)
    voltage = _step(params, state.voltage, luminance, dt)
    return OpticLobeState(voltage), voltage


def simulate(
    params: OpticLobeParams,
    state: OpticLobeState,
    stimulus: Float[Array, "n_frames n_columns"],
    dt: float,
    readout: jax.Array | np.ndarray | None = None,
) -> tuple[OpticLobeState, Float[Array, "n_frames n_out"]]:
    """Run a stimulus through the network; frame ``k`` of the output is the
    state after update ``k``.

    ``readout`` (indices of neurons, e.g. :func:`central_neurons`) records only
    those neurons (``n_out = len(readout)``) instead of all ``n_nodes``, which
    keeps long batched runs small.

    Raises:
        ValueError: ``stimulus`` is not (n_frames, n_columns), or not finite.
    """
    check_stimulus(stimulus, n_columns(params), ndim=2)
    readout = None if readout is None else jnp.asarray(readout, dtype=jnp.int32)
    voltage, voltages = _simulate(params, state.voltage, stimulus, dt, readout)
    return OpticLobeState(voltage), voltages


def hold(
    params: OpticLobeParams,
    state: OpticLobeState,
    luminance: Float[Array, " n_columns"],
    dt: float,
    n_steps: int,
) -> OpticLobeState:
    """The state after ``n_steps`` Euler steps of one still image (nothing is recorded).

    Raises:
        ValueError: ``luminance`` is not one value per column, or not finite.
    """
    check_stimulus(luminance, n_columns(params), ndim=1)
    return OpticLobeState(_hold(params, state.voltage, jnp.asarray(luminance, jnp.float32), dt, n_steps))


def steady_state(
    params: OpticLobeParams, dt: float, duration: float = 1.0, luminance: float = 0.5
) -> OpticLobeState:
    """The state after ``duration`` s of uniform ``luminance`` from rest (flyvis's
    default initial state for stimuli: 1 s of grey 0.5)."""
    grey = jnp.full(n_columns(params), luminance, dtype=jnp.float32)
    return hold(params, resting_state(params), grey, dt, int(round(duration / dt)))


def non_input_types(spec: OpticLobeSpec) -> np.ndarray:
    """(n_types,) True for every cell type but the photoreceptors (the input types)."""
    return np.asarray([t not in spec.input_types for t in spec.cell_types])


def at_grey_voltage(
    params: OpticLobeParams,
    connectome: Connectome,
    dt: float,
    voltage: float = 0.0,
    duration: float = 2.0,
    tolerance: float = 1e-6,
    max_iterations: int = 20,
) -> Trainable:
    """Resting potentials shifted so that, in the grey steady state
    (:func:`steady_state` over ``duration`` s), the central neuron of every type
    but the photoreceptors sits at ``voltage``.

    At flyvis's initialization every type rests 0.14 to 1.2 above threshold at
    grey, so each ReLU passes small signals unchanged and the network is linear;
    at ``voltage = 0`` every synapse half-wave rectifies. The shift is a fixed-point
    iteration (each type's bias moves by its error), which converges while the
    network's loop gain is small, as it is at initialization.

    Raises:
        RuntimeError: the grey voltages are not within ``tolerance`` of ``voltage``
            after ``max_iterations`` iterations.
    """
    central = central_neurons(connectome)
    shifted = jnp.asarray(non_input_types(spec_of(connectome)))
    trainable = params.trainable
    for _ in range(max_iterations):
        grey = steady_state(params._replace(trainable=trainable), dt, duration).voltage[central]
        error = jnp.where(shifted, grey - voltage, 0.0)
        if float(jnp.max(jnp.abs(error))) <= tolerance:
            return trainable
        trainable = trainable._replace(bias=trainable.bias - error)
    raise RuntimeError(
        f"grey voltages still {float(jnp.max(jnp.abs(error))):.2g} from {voltage} after {max_iterations} iterations"
    )

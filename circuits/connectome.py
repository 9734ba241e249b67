"""The neutral in-memory connectome format shared by every loader.

A :class:`Connectome` is a directed graph of neurons with typed, signed,
counted edges. The optic-lobe loader (flyvis JSON), the VNC loaders (FANC /
MANC tables, a full weight matrix) all produce this, and the circuit builders
consume only this. Arrays are numpy; circuits convert what they need to JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Connectome:
    """Neurons and synaptic edges.

    Attributes:
        node_type: (n,) cell type of each neuron (flyvis type, hemilineage, ...).
        edge_src: (e,) presynaptic neuron index.
        edge_dst: (e,) postsynaptic neuron index.
        edge_count: (e,) synapse count (float; >= 0).
        edge_sign: (e,) +1 excitatory, -1 inhibitory.
        node_attrs: extra per-neuron columns, each shape (n,).
        edge_attrs: extra per-edge columns, each shape (e,).
        meta: loader-specific description of the graph that is not per neuron
            or per edge (cell-type order, edge-type table, lattice extent, ...).
    """

    node_type: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_count: np.ndarray
    edge_sign: np.ndarray
    node_attrs: dict[str, np.ndarray] = field(default_factory=dict)
    edge_attrs: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, e = len(self.node_type), len(self.edge_src)
        for name in ("edge_dst", "edge_count", "edge_sign"):
            if len(getattr(self, name)) != e:
                raise ValueError(f"{name} has length {len(getattr(self, name))}, expected {e}")
        for name, col in self.node_attrs.items():
            if len(col) != n:
                raise ValueError(f"node_attrs[{name!r}] has length {len(col)}, expected {n}")
        for name, col in self.edge_attrs.items():
            if len(col) != e:
                raise ValueError(f"edge_attrs[{name!r}] has length {len(col)}, expected {e}")
        if e and (self.edge_src.min() < 0 or self.edge_src.max() >= n
                  or self.edge_dst.min() < 0 or self.edge_dst.max() >= n):
            raise ValueError(f"edge endpoints must index the {n} nodes")
        if e and not np.isin(self.edge_sign, (-1, 1)).all():
            raise ValueError("edge_sign must be +1 or -1")
        if e and (self.edge_count < 0).any():
            raise ValueError("edge_count must be non-negative")

    @property
    def n_nodes(self) -> int:
        return len(self.node_type)

    @property
    def n_edges(self) -> int:
        return len(self.edge_src)

    def signed_weight_matrix(self) -> np.ndarray:
        """Dense (n_post, n_pre) matrix of sign × count (for small networks)."""
        w = np.zeros((self.n_nodes, self.n_nodes))
        np.add.at(w, (self.edge_dst, self.edge_src), self.edge_sign * self.edge_count)
        return w

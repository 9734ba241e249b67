"""Loaders of the leg-motor (VNC) connectome tables into :class:`Connectome`.

Sources (provenance and hashes: ``circuits/data.py`` and ``docs/data.md``):

* **FANC left-T1 premotor → motor-neuron table** (Lesser, Azevedo et al.,
  "Synaptic architecture of leg and wing premotor control networks in
  Drosophila", Nature 2024; FANC v840): one row per premotor → MN edge with the
  synapse count, the premotor neuron's class (local, intersegmental,
  descending, ascending, sensory), hemilineage / sensory type and transmitter,
  and the MN's muscle, function and motor module.
* **Hemilineage → transmitter** (Lacin et al., "Neurotransmitter identity is
  acquired in a lineage-restricted manner in the Drosophila CNS", eLife 2019),
  used for neurons whose transmitter is not annotated.
* **Pugliese et al. 2025 node tables** (FANC T1L, MANC T1; "Connectome
  simulations identify a central pattern generator circuit for fly walking",
  bioRxiv 2025), and a full weight matrix in their ``W`` format when a user has
  one; or a neuPrint / MANC edge-list export.

Signs follow Pugliese et al. 2025: acetylcholine excitatory (+1), GABA and
glutamate inhibitory (-1) (glutamate acts through the inhibitory GluCl channel
in the fly CNS; Liu & Wilson, PNAS 2013). Every neuron's transmitter is
resolved once, in this order: the table's own annotation; else its hemilineage
via Lacin et al. 2019; else the ``unannotated`` policy of the loader (an error,
dropping the neuron's edges, or an assumed sign). Where the transmitter came
from is kept per neuron in ``node_attrs["transmitter_source"]``
(``"annotated"``, ``"hemilineage"``, ``"assumed"``).

Node order of every connectome built here: premotor / intrinsic neurons in
table order, then motor neurons; ``node_attrs["is_motor"]`` marks the latter.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from connectofly.circuits.connectome import Connectome
from connectofly.circuits.data import connectome_path

FANC_PREMOTOR_FILE = "fanc_t1l_premotor_to_mn_v840.csv"
FANC_MN_MODULES_FILE = "fanc_t1l_mn_modules_v840.csv"
LACIN_FILE = "lacin_hemilineage_nt.csv"
PUGLIESE_FANC_NODES_FILE = "fanc_t1l_nodes_pugliese2025.csv"
PUGLIESE_MANC_NODES_FILE = "manc_t1_nodes_pugliese2025.csv"

FANC_PREMOTOR_COLUMNS = (
    "pre_cell_class",
    "pre_preferred_pool",
    "pre_NT",
    "pre_cell_type",
    "pre_segID",
    "mn_function",
    "mn_muscle",
    "mn_rank",
    "mn_segID",
    "mn_module",
    "mn_nerve",
    "syn",
)

# Canonical transmitter names and their signs (Pugliese et al. 2025 convention).
TRANSMITTER_SIGN = {"acetylcholine": 1, "gaba": -1, "glutamate": -1}
_TRANSMITTER_ALIASES = {
    "ach": "acetylcholine",
    "acetylcholine": "acetylcholine",
    "cholinergic": "acetylcholine",
    "gaba": "gaba",
    "gabaergic": "gaba",
    "glu": "glutamate",
    "glut": "glutamate",
    "glutamate": "glutamate",
    "glutamatergic": "glutamate",
}
# Values that mean "no annotation" rather than an unknown transmitter.
_MISSING_TRANSMITTER = {"", "nan", "none", "unknown", "unclear", "na", "n/a", "tbd"}

Unannotated = Literal["error", "drop", "excitatory", "inhibitory"]
UNANNOTATED_POLICIES = ("error", "drop", "excitatory", "inhibitory")

_HEMILINEAGE = re.compile(r"^(\d{2}[A-Z])(?:$|[a-z_])")


# -- Small parsing helpers ------------------------------------------------------


def require_columns(table: pd.DataFrame, columns: tuple[str, ...] | list[str], source: str) -> None:
    """Raise ``ValueError`` naming every column of ``columns`` missing from ``table``."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{source} lacks column(s) {missing}; it has {list(table.columns)}"
        )


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip().lower() in _MISSING_TRANSMITTER


def normalize_transmitter(value: object, extra_signs: dict[str, int] | None = None) -> str | None:
    """Canonical transmitter name of a table entry; ``None`` when not annotated.

    Accepts ``Ach``/``ACh``/``acetylcholine``, ``GABA``, ``Glu``/``glutamate``
    (any case), and the names in ``extra_signs``. Raises ``ValueError`` for any
    other name (for example ``dopamine``), listing what is allowed.
    """
    if _is_missing(value):
        return None
    key = str(value).strip().lower()
    if key in _TRANSMITTER_ALIASES:
        return _TRANSMITTER_ALIASES[key]
    if extra_signs and key in {k.lower() for k in extra_signs}:
        return key
    allowed = sorted(set(_TRANSMITTER_ALIASES) | set(extra_signs or {}))
    raise ValueError(
        f"unknown transmitter {value!r}; allowed: {allowed} (or empty/unknown for "
        "'not annotated'); pass extra_signs={{name: +1 or -1}} for other transmitters"
    )


def transmitter_sign(transmitter: str, extra_signs: dict[str, int] | None = None) -> int:
    """+1 or -1 for a canonical transmitter name."""
    if transmitter in TRANSMITTER_SIGN:
        return TRANSMITTER_SIGN[transmitter]
    lowered = {k.lower(): int(v) for k, v in (extra_signs or {}).items()}
    if transmitter in lowered and lowered[transmitter] in (-1, 1):
        return lowered[transmitter]
    raise ValueError(f"transmitter {transmitter!r} has no sign; allowed: {sorted(TRANSMITTER_SIGN)}")


def hemilineage_of(cell_type: object) -> str | None:
    """The hemilineage in a cell-type label, e.g. ``19A_dorsal_rind`` → ``19A``.

    Recognises FANC labels (``14Ac``, ``08A_ventral_post``, ``13B``) and MANC
    hemilineage columns (``19A``); a combined MANC label such as ``20A.22A``
    returns ``None`` (use :func:`hemilineages_of`). Sensory or class names
    (``CO_claw_flx``, ``descending``) return ``None``.
    """
    if _is_missing(cell_type):
        return None
    match = _HEMILINEAGE.match(str(cell_type).strip())
    if match is None:
        return None
    return match.group(1)


def hemilineages_of(label: object) -> list[str]:
    """All hemilineages of a possibly combined label (``20A.22A`` → ``[20A, 22A]``)."""
    if _is_missing(label):
        return []
    found = [hemilineage_of(part) for part in str(label).split(".")]
    return [h for h in found if h is not None]


# -- Lacin et al. 2019 ---------------------------------------------------------


def parse_lacin_table(table: pd.DataFrame) -> dict[str, str]:
    """Hemilineage → canonical transmitter from a Lacin-format table (``HL``, ``NT``).

    Hemilineages without a transmitter (or absent, ``NaN`` rows) are left out.
    """
    require_columns(table, ("HL", "NT"), "Lacin hemilineage table")
    mapping: dict[str, str] = {}
    for hl, nt in zip(table["HL"], table["NT"]):
        if _is_missing(hl):
            continue
        transmitter = normalize_transmitter(nt)
        if transmitter is not None:
            mapping[str(hl).strip()] = transmitter
    return mapping


def load_lacin_hemilineage_transmitters(path: str | Path | None = None) -> dict[str, str]:
    """Hemilineage → transmitter of Lacin et al. 2019 (``lacin_hemilineage_nt.csv``)."""
    path = Path(path) if path is not None else connectome_path(LACIN_FILE)
    return parse_lacin_table(pd.read_csv(path))


def resolve_transmitter(
    annotated: object,
    hemilineages: list[str],
    lacin: dict[str, str],
    extra_signs: dict[str, int] | None = None,
) -> tuple[str | None, str]:
    """(transmitter, source) of one neuron: annotation, else hemilineage, else none.

    A combined hemilineage label resolves only when all its parts agree.
    """
    transmitter = normalize_transmitter(annotated, extra_signs)
    if transmitter is not None:
        return transmitter, "annotated"
    candidates = {lacin[h] for h in hemilineages if h in lacin}
    if len(candidates) == 1 and all(h in lacin for h in hemilineages):
        return candidates.pop(), "hemilineage"
    return None, "none"


def apply_unannotated_policy(
    transmitters: list[str | None], sources: list[str], policy: str, what: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-neuron sign (0 where dropped), keep mask, and updated sources.

    ``policy``: ``"error"`` raises listing the count; ``"drop"`` keeps the
    neurons but gives them no edges; ``"excitatory"``/``"inhibitory"`` assume
    a sign and mark the source ``"assumed"``.
    """
    if policy not in UNANNOTATED_POLICIES:
        raise ValueError(f"unannotated={policy!r}; allowed: {UNANNOTATED_POLICIES}")
    missing = [i for i, t in enumerate(transmitters) if t is None]
    if missing and policy == "error":
        raise ValueError(
            f"{len(missing)} {what} have no transmitter annotation and no hemilineage "
            f"with a known transmitter (first rows: {missing[:5]}); pass "
            f"unannotated='drop', 'excitatory' or 'inhibitory'"
        )
    assumed = {"excitatory": 1, "inhibitory": -1}.get(policy, 0)
    signs = np.array(
        [TRANSMITTER_SIGN.get(t, 0) if t is not None else assumed for t in transmitters],
        dtype=np.int8,
    )
    new_sources = [s if t is not None else ("assumed" if assumed else "none")
                   for t, s in zip(transmitters, sources)]
    return signs, signs != 0, new_sources


# -- FANC T1L premotor → MN ----------------------------------------------------


def premotor_type(cell_class: object, cell_type: object) -> str:
    """Cell type used as ``node_type``: hemilineage if known, else sensory type, else class."""
    hl = hemilineage_of(cell_type)
    if hl is not None:
        return hl
    if str(cell_class) == "sensory" and not _is_missing(cell_type):
        return str(cell_type)
    return str(cell_class)


def connectome_from_premotor_table(
    table: pd.DataFrame,
    lacin: dict[str, str],
    unannotated: Unannotated = "excitatory",
    extra_signs: dict[str, int] | None = None,
) -> Connectome:
    """Build the premotor → MN connectome from a table in the FANC long format.

    Args:
        table: one row per premotor → MN edge, columns ``FANC_PREMOTOR_COLUMNS``.
        lacin: hemilineage → transmitter (:func:`load_lacin_hemilineage_transmitters`).
        unannotated: what to do with premotor neurons whose transmitter is
            neither annotated nor implied by a hemilineage (in FANC v840: the
            descending, ascending and most intersegmental neurons).
            ``"excitatory"`` (default) assumes acetylcholine, the majority
            transmitter of descending neurons (933 of the 1,318 descending
            neurons of the Pugliese MANC T1 node table are predicted
            cholinergic); ``"drop"``
            removes their edges; ``"error"`` refuses.
        extra_signs: signs of further transmitter names, e.g. ``{"octopamine": 1}``.
    """
    require_columns(table, FANC_PREMOTOR_COLUMNS, "premotor → MN table")
    if (table["syn"] < 0).any() or table["syn"].isna().any():
        raise ValueError("column 'syn' must hold non-negative synapse counts")
    pre = table.drop_duplicates("pre_segID").reset_index(drop=True)
    mns = table.drop_duplicates("mn_segID").reset_index(drop=True)
    n_pre = len(pre)
    resolved = [
        resolve_transmitter(nt, [h] if (h := hemilineage_of(ct)) else [], lacin, extra_signs)
        for nt, ct in zip(pre["pre_NT"], pre["pre_cell_type"])
    ]
    transmitters = [t for t, _ in resolved]
    signs, keep, sources = apply_unannotated_policy(
        transmitters, [s for _, s in resolved], unannotated, "premotor neurons"
    )
    pre_index = pd.Series(np.arange(n_pre), index=pre["pre_segID"].to_numpy())
    mn_index = pd.Series(n_pre + np.arange(len(mns)), index=mns["mn_segID"].to_numpy())
    src = pre_index.loc[table["pre_segID"].to_numpy()].to_numpy()
    dst = mn_index.loc[table["mn_segID"].to_numpy()].to_numpy()
    edge_keep = keep[src]
    src, dst = src[edge_keep], dst[edge_keep]
    rows = table[edge_keep]

    def both(pre_values, mn_values) -> np.ndarray:
        return np.concatenate([np.asarray(pre_values, dtype=object), np.asarray(mn_values, dtype=object)])

    n_mn = len(mns)
    node_type = both(
        [premotor_type(c, t) for c, t in zip(pre["pre_cell_class"], pre["pre_cell_type"])],
        mns["mn_module"],
    )
    transmitter_col = [t if t is not None else ("acetylcholine" if unannotated == "excitatory" else "unknown")
                       for t in transmitters]
    node_attrs = {
        "segment_id": np.concatenate([pre["pre_segID"].to_numpy(), mns["mn_segID"].to_numpy()]),
        "is_motor": np.concatenate([np.zeros(n_pre, bool), np.ones(n_mn, bool)]),
        "cell_class": both(pre["pre_cell_class"], ["motor"] * n_mn),
        "cell_type": both(pre["pre_cell_type"].fillna(""), mns["mn_muscle"]),
        "hemilineage": both([hemilineage_of(t) or "" for t in pre["pre_cell_type"]], [""] * n_mn),
        # Leg MNs are glutamatergic (15B hemilineage; Lacin et al. 2019); they have
        # no outgoing edges in this table, so their sign is never used here.
        "transmitter": both(transmitter_col, ["glutamate"] * n_mn),
        "transmitter_source": both(sources, ["hemilineage"] * n_mn),
        "sign": np.concatenate([signs, np.full(n_mn, -1, np.int8)]),
        "preferred_pool": both(pre["pre_preferred_pool"].fillna(""), mns["mn_module"]),
        "mn_module": both([""] * n_pre, mns["mn_module"]),
        "mn_function": both([""] * n_pre, mns["mn_function"]),
        "mn_muscle": both([""] * n_pre, mns["mn_muscle"]),
        "mn_rank": both([""] * n_pre, mns["mn_rank"].astype(str)),
        "mn_nerve": both([""] * n_pre, mns["mn_nerve"]),
    }
    return Connectome(
        node_type=node_type,
        edge_src=src.astype(np.int64),
        edge_dst=dst.astype(np.int64),
        edge_count=rows["syn"].to_numpy(dtype=float),
        edge_sign=signs[src].astype(np.int64),
        node_attrs=node_attrs,
        meta={
            "source": "FANC v840 left T1 premotor → MN (Lesser, Azevedo et al. 2024)",
            "n_premotor": n_pre,
            "n_motor": n_mn,
            "unannotated": unannotated,
        },
    )


def load_fanc_t1l_premotor_to_mn(
    path: str | Path | None = None,
    lacin_path: str | Path | None = None,
    unannotated: Unannotated = "excitatory",
) -> Connectome:
    """The FANC left-T1 premotor → motor-neuron connectome (1,546 → 69 in v840).

    See :func:`connectome_from_premotor_table` for the transmitter policy.
    """
    path = Path(path) if path is not None else connectome_path(FANC_PREMOTOR_FILE)
    table = pd.read_csv(path)
    return connectome_from_premotor_table(
        table, load_lacin_hemilineage_transmitters(lacin_path), unannotated
    )


def load_fanc_mn_modules(path: str | Path | None = None) -> dict[int, str]:
    """Motor-neuron segment id → motor module (``fanc_t1l_mn_modules_v840.csv``).

    This older dictionary of the same repository uses longer module names
    (``coxa_promotion`` for ``coxa_promote``) and, for 9 of the 69 MNs, segment
    ids of an earlier proofreading state than the premotor table; use
    :func:`connectofly.circuits.motor_map.canonical_module` to compare names.
    """
    path = Path(path) if path is not None else connectome_path(FANC_MN_MODULES_FILE)
    table = pd.read_csv(path)
    require_columns(table, ("mn_segID", "module"), "MN module table")
    return {int(s): str(m) for s, m in zip(table["mn_segID"], table["module"])}


# -- Pugliese et al. 2025 node tables and weight matrices -----------------------


def load_weight_matrix(source: str | Path | np.ndarray, n_nodes: int | None = None) -> np.ndarray:
    """A dense weight matrix from ``.npy``, ``.npz`` (dense or scipy sparse) or ``.csv``.

    The orientation is Pugliese et al.'s: ``W[pre, post]`` (their simulation
    transposes W before multiplying rates), one row and column per node-table
    row in table order (``w_idx``). A ``.csv`` may carry a header row and an
    index column (both are dropped when non-numeric / equal to 0..n-1).
    """
    if isinstance(source, np.ndarray):
        w = np.asarray(source, dtype=float)
    else:
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix == ".npy":
            w = np.load(path, allow_pickle=False).astype(float)
        elif suffix == ".npz":
            w = _load_npz_matrix(path)
        elif suffix == ".csv":
            w = _load_csv_matrix(path)
        else:
            raise ValueError(f"weight matrix {path} must be .npy, .npz or .csv, not {suffix!r}")
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weight matrix must be square (pre × post), got shape {w.shape}")
    if n_nodes is not None and w.shape[0] != n_nodes:
        raise ValueError(f"weight matrix is {w.shape[0]}×{w.shape[1]} but the node table has {n_nodes} rows")
    if not np.isfinite(w).all():
        raise ValueError("weight matrix has non-finite entries")
    return w


def _load_npz_matrix(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        keys = set(archive.files)
        if {"data", "indices", "indptr", "shape", "format"} <= keys or {"row", "col", "data", "shape"} <= keys:
            import scipy.sparse

            return scipy.sparse.load_npz(path).toarray().astype(float)
        if len(keys) != 1:
            raise ValueError(f"{path} holds arrays {sorted(keys)}; expected one dense matrix or a scipy sparse matrix")
        return archive[next(iter(keys))].astype(float)


def _load_csv_matrix(path: Path) -> np.ndarray:
    table = pd.read_csv(path, header=None)
    first = table.iloc[0]
    if pd.to_numeric(first, errors="coerce").isna().any():
        table = table.iloc[1:]
    values = table.apply(pd.to_numeric, errors="coerce")
    if values.isna().to_numpy()[:, 0].any():
        values = values.iloc[:, 1:]
    if values.shape[1] == values.shape[0] + 1:
        values = values.iloc[:, 1:]
    if values.isna().to_numpy().any():
        raise ValueError(f"{path} has non-numeric entries in the weight matrix")
    return values.to_numpy(dtype=float)


def connectome_from_weight_matrix(
    w: np.ndarray,
    node_type: np.ndarray,
    node_sign: np.ndarray,
    node_attrs: dict[str, np.ndarray],
    meta: dict,
) -> Connectome:
    """Edges of a dense ``W[pre, post]``: count ``|W|``, sign from the presynaptic node.

    ``W`` may be signed (entries negative for inhibitory presynaptic neurons)
    or unsigned (synapse counts). A signed ``W`` must agree with ``node_sign``
    (Dale's law: one sign per presynaptic neuron) or ``ValueError`` is raised.
    Nodes with sign 0 (transmitter dropped) lose their outgoing edges.
    """
    pre, post = np.nonzero(w)
    values = w[pre, post]
    negative = values < 0
    if negative.any():
        expected = node_sign[pre]
        bad = (np.sign(values) != expected) & (expected != 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"W[{pre[i]}, {post[i]}] = {values[i]} disagrees with the sign {expected[i]} "
                f"of presynaptic node {pre[i]} ({node_type[pre[i]]}); {int(bad.sum())} entries disagree"
            )
    keep = node_sign[pre] != 0
    pre, post, values = pre[keep], post[keep], values[keep]
    return Connectome(
        node_type=np.asarray(node_type, dtype=object),
        edge_src=pre.astype(np.int64),
        edge_dst=post.astype(np.int64),
        edge_count=np.abs(values).astype(float),
        edge_sign=node_sign[pre].astype(np.int64),
        node_attrs=node_attrs,
        meta=meta,
    )


def _empty_edges(node_type, node_attrs, meta) -> Connectome:
    empty = np.zeros(0, dtype=np.int64)
    return Connectome(
        node_type=np.asarray(node_type, dtype=object),
        edge_src=empty, edge_dst=empty, edge_count=np.zeros(0), edge_sign=empty,
        node_attrs=node_attrs, meta=meta,
    )


PUGLIESE_FANC_COLUMNS = ("w_type", "sign", "class", "surf_area_um2", "motor module", "step contribution")
PUGLIESE_MANC_COLUMNS = (
    "bodyId", "type", "class", "hemilineage", "size", "predictedNt", "motor module", "step contribution",
)


def _text(column: pd.Series) -> np.ndarray:
    return column.fillna("").astype(str).to_numpy(dtype=object)


def connectome_from_pugliese_fanc_nodes(
    nodes: pd.DataFrame, weights: str | Path | np.ndarray | None = None
) -> Connectome:
    """FANC T1L network of Pugliese et al. 2025 from its node table (and ``W``).

    Node type: ``w_type`` (hemilineage for intrinsic neurons, muscle for MNs,
    ``DNg100`` for BDN2). The sign is the table's own ``sign`` column.
    """
    require_columns(nodes, PUGLIESE_FANC_COLUMNS, "Pugliese FANC node table")
    sign = nodes["sign"].to_numpy()
    if not np.isin(sign, (-1, 1)).all():
        raise ValueError(f"column 'sign' must be +1/-1, found {sorted(set(sign.tolist()))}")
    is_motor = nodes["class"].to_numpy() == "motor neuron"
    node_attrs = {
        "is_motor": is_motor,
        "cell_class": _text(nodes["class"]),
        "hemilineage": np.array([hemilineage_of(t) or "" for t in nodes["w_type"]], dtype=object),
        "transmitter": np.where(sign > 0, "acetylcholine", "gaba_or_glutamate").astype(object),
        "transmitter_source": np.full(len(nodes), "annotated", dtype=object),
        "sign": sign.astype(np.int8),
        "size": nodes["surf_area_um2"].to_numpy(dtype=float),
        "mn_module": _text(nodes["motor module"]),
        "step_contribution": _text(nodes["step contribution"]),
    }
    if "pt_root_id" in nodes.columns:
        node_attrs["segment_id"] = nodes["pt_root_id"].to_numpy()
    return _pugliese_connectome(_text(nodes["w_type"]), sign, node_attrs, weights, "FANC T1L")


def _pugliese_connectome(
    node_type: np.ndarray, signs: np.ndarray, node_attrs: dict, weights, table: str
) -> Connectome:
    """A Pugliese et al. 2025 node table as a connectome: edges from ``weights`` (W), else none."""
    meta = {"source": f"Pugliese et al. 2025, {table} node table", "weights": weights is not None}
    if weights is None:
        return _empty_edges(node_type, node_attrs, meta)
    w = load_weight_matrix(weights, len(node_type))
    return connectome_from_weight_matrix(w, node_type, signs.astype(np.int64), node_attrs, meta)


def connectome_from_pugliese_manc_nodes(
    nodes: pd.DataFrame,
    weights: str | Path | np.ndarray | None = None,
    lacin: dict[str, str] | None = None,
    unannotated: Unannotated = "excitatory",
    extra_signs: dict[str, int] | None = None,
) -> Connectome:
    """MANC T1 network of Pugliese et al. 2025 from its node table (and ``W``).

    The transmitter is ``predictedNt`` (Takemura et al. 2024, MANC), else the
    hemilineage via Lacin et al. 2019, else ``unannotated``.
    """
    require_columns(nodes, PUGLIESE_MANC_COLUMNS, "Pugliese MANC node table")
    lacin = lacin if lacin is not None else {}
    resolved = [
        resolve_transmitter(nt, hemilineages_of(hl), lacin, extra_signs)
        for nt, hl in zip(nodes["predictedNt"], nodes["hemilineage"])
    ]
    transmitters = [t for t, _ in resolved]
    signs, _, sources = apply_unannotated_policy(
        transmitters, [s for _, s in resolved], unannotated, "MANC neurons"
    )
    is_motor = nodes["class"].to_numpy() == "motor neuron"
    node_attrs = {
        "body_id": nodes["bodyId"].to_numpy(),
        "is_motor": is_motor,
        "cell_class": _text(nodes["class"]),
        "hemilineage": _text(nodes["hemilineage"]),
        "transmitter": np.array([t or "unknown" for t in transmitters], dtype=object),
        "transmitter_source": np.array(sources, dtype=object),
        "sign": signs,
        "size": nodes["size"].to_numpy(dtype=float),
        "mn_module": _text(nodes["motor module"]),
        "step_contribution": _text(nodes["step contribution"]),
    }
    return _pugliese_connectome(_text(nodes["type"]), signs, node_attrs, weights, "MANC T1")


def load_pugliese_fanc_t1l(
    path: str | Path | None = None, weights: str | Path | np.ndarray | None = None
) -> Connectome:
    """FANC T1L node table of Pugliese et al. 2025 (803 neurons); edges only with ``weights``."""
    path = Path(path) if path is not None else connectome_path(PUGLIESE_FANC_NODES_FILE)
    return connectome_from_pugliese_fanc_nodes(pd.read_csv(path), weights)


def load_pugliese_manc_t1(
    path: str | Path | None = None,
    weights: str | Path | np.ndarray | None = None,
    lacin_path: str | Path | None = None,
    unannotated: Unannotated = "excitatory",
) -> Connectome:
    """MANC T1 node table of Pugliese et al. 2025 (4,604 neurons); edges only with ``weights``."""
    path = Path(path) if path is not None else connectome_path(PUGLIESE_MANC_NODES_FILE)
    return connectome_from_pugliese_manc_nodes(
        pd.read_csv(path), weights, load_lacin_hemilineage_transmitters(lacin_path), unannotated
    )


# -- neuPrint / MANC edge-list export ------------------------------------------

NEUPRINT_NEURON_COLUMNS = ("bodyId", "type")
NEUPRINT_EDGE_COLUMNS = ("bodyId_pre", "bodyId_post", "weight")
_NEUPRINT_NT_COLUMNS = ("predictedNt", "consensusNt", "nt")


def _frame(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    return source if isinstance(source, pd.DataFrame) else pd.read_csv(source)


def load_neuprint_edges(
    neurons: str | Path | pd.DataFrame,
    edges: str | Path | pd.DataFrame,
    lacin: dict[str, str] | None = None,
    unannotated: Unannotated = "excitatory",
    extra_signs: dict[str, int] | None = None,
) -> Connectome:
    """A connectome from a neuPrint export (e.g. MANC): neuron table + edge list.

    ``neurons`` needs ``bodyId``, ``type`` and a transmitter column
    (``predictedNt``, ``consensusNt`` or ``nt``); ``hemilineage`` and ``class``
    are used when present. ``edges`` needs ``bodyId_pre``, ``bodyId_post``,
    ``weight`` (neuprint-python's ``fetch_adjacencies`` layout); rows repeated
    per ROI are summed. Edges whose endpoints are not in ``neurons`` raise.
    """
    neurons, edges = _frame(neurons), _frame(edges)
    require_columns(neurons, NEUPRINT_NEURON_COLUMNS, "neuPrint neuron table")
    require_columns(edges, NEUPRINT_EDGE_COLUMNS, "neuPrint edge list")
    nt_column = next((c for c in _NEUPRINT_NT_COLUMNS if c in neurons.columns), None)
    if nt_column is None:
        raise ValueError(
            f"neuPrint neuron table lacks a transmitter column (one of {_NEUPRINT_NT_COLUMNS}); "
            f"it has {list(neurons.columns)}"
        )
    if neurons["bodyId"].duplicated().any():
        raise ValueError("neuPrint neuron table repeats bodyIds")
    if (edges["weight"] < 0).any():
        raise ValueError("edge 'weight' must be a non-negative synapse count")
    hemi = neurons["hemilineage"] if "hemilineage" in neurons.columns else pd.Series([None] * len(neurons))
    resolved = [
        resolve_transmitter(nt, hemilineages_of(h), lacin or {}, extra_signs)
        for nt, h in zip(neurons[nt_column], hemi)
    ]
    transmitters = [t for t, _ in resolved]
    signs, _, sources = apply_unannotated_policy(
        transmitters, [s for _, s in resolved], unannotated, "neuPrint neurons"
    )
    summed = edges.groupby(["bodyId_pre", "bodyId_post"], as_index=False)["weight"].sum()
    index = pd.Series(np.arange(len(neurons)), index=neurons["bodyId"].to_numpy())
    unknown = ~summed["bodyId_pre"].isin(index.index) | ~summed["bodyId_post"].isin(index.index)
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} edges name bodyIds missing from the neuron table")
    src = index.loc[summed["bodyId_pre"].to_numpy()].to_numpy()
    dst = index.loc[summed["bodyId_post"].to_numpy()].to_numpy()
    keep = (signs[src] != 0) & (summed["weight"].to_numpy() > 0)
    cell_class = _text(neurons["class"]) if "class" in neurons.columns else np.full(len(neurons), "", object)
    node_attrs = {
        "body_id": neurons["bodyId"].to_numpy(),
        "is_motor": np.array(["motor" in c for c in cell_class]),
        "cell_class": cell_class,
        "hemilineage": _text(hemi),
        "transmitter": np.array([t or "unknown" for t in transmitters], dtype=object),
        "transmitter_source": np.array(sources, dtype=object),
        "sign": signs,
    }
    return Connectome(
        node_type=_text(neurons["type"]),
        edge_src=src[keep].astype(np.int64),
        edge_dst=dst[keep].astype(np.int64),
        edge_count=summed["weight"].to_numpy(dtype=float)[keep],
        edge_sign=signs[src[keep]].astype(np.int64),
        node_attrs=node_attrs,
        meta={"source": "neuPrint edge-list export", "transmitter_column": nt_column},
    )

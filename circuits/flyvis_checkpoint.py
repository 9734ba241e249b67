"""flyvis's trained networks in our optic lobe: read their checkpoints without torch.

flyvis 1.2.0 (Lappalainen et al., Nature 2024) trains its networks with
``MultiTaskSolver``, which saves ``<model>/chkpts/chkpt_NNNNN`` with
``torch.save``: a zip archive holding ``<name>/data.pkl`` (a pickle) and one
raw storage per tensor, ``<name>/data/<key>``. The pickle is a dict::

    network        the network's state_dict, one float32 tensor per parameter group:
                   nodes_bias (n cell types), nodes_time_const (n cell types),
                   edges_sign (n edge types), edges_syn_count (n offsets, the log of
                   the synapse count), edges_syn_strength (n edge types)
    decoder        {task: the decoder's state_dict}
    optim          the Adam optimizer's state_dict
    time, val_loss, iteration, dt
    activity_optim the activity penalty's optimizer state_dict (when trained with one)

:func:`read_torch_checkpoint` rebuilds that object with every tensor as a numpy
array: a restricted unpickler that knows containers, numbers, numpy scalars and
``torch._utils._rebuild_tensor_v2`` over typed storages, and refuses any other
class by name. :func:`load_flyvis_checkpoint` turns the ``network`` entry into
:class:`~connectofly.circuits.optic_lobe.Trainable`.

**Layout.** flyvis groups parameters with pandas ``groupby(sort=False)`` over
its node and edge tables, so a group's position is its first appearance:
cell types in the connectome file's node order; edge types
``(source, target)`` in file order; synapse counts per
``(source, target, du, dv)`` in edge type, then offset order. Only groups
that have at least one edge on the lattice exist, so the lengths depend on the
extent the network was built at (flyvis's default 15: 65 / 604 / 2,355; the
edge type ``Lawf1 > Lawf1`` at offset (1, 0) never lands on the Lawf1 lattice).
:func:`flyvis_layout` derives the keys from our connectome at the smallest
extent whose lengths match the checkpoint's (the layout stops changing at
extent 4, so extent-15 checkpoints get extent 4's identical layout).

**What is read.** ``nodes_bias``, ``nodes_time_const`` and
``edges_syn_strength`` (flyvis trains these three); the edge type missing from
flyvis's groups gets strength 0, as in
:func:`~connectofly.circuits.optic_lobe.with_flyvis_parameters`.
``edges_sign`` and ``edges_syn_count`` (fixed by flyvis's default config) are
compared with the connectome; a checkpoint whose signs or synapse counts differ
(another connectome, or a run that trained the counts) is refused, since our
network takes both from the connectome file.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from connectofly.circuits import optic_lobe as ol

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a"  # pickle protocol 2, then torch's legacy magic number (a long)
CHECKPOINT_NAME = re.compile(r"chkpt_(\d+)")
LOSS_FILES = ("epe.h5", "loss.h5")  # what flyvis's NetworkView ranks checkpoints by, first found
TRAINED_KEYS = ("nodes_bias", "nodes_time_const", "edges_syn_strength")
FIXED_KEYS = ("edges_sign", "edges_syn_count")
MAX_EXTENT = 15  # flyvis's default lattice; the layout does not change beyond extent 4
COUNT_RTOL = 1e-5  # exp(log(n)) in float32

# Typed storages torch pickles (``torch.FloatStorage`` ...) and their element types.
STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "b1",
}


class CheckpointError(ValueError):
    """A file that is not a flyvis checkpoint this reader can use (the message names why)."""


# -- A torch checkpoint without torch -------------------------------------------


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _TensorType:
    """``torch.Tensor`` or ``torch.nn.Parameter``, as the class argument of a rebuild."""

    name: str


def _storage_array(raw: bytes, storage: _StorageType, numel: int, big_endian: bool, where: str) -> np.ndarray:
    code = STORAGE_DTYPES[storage.name]
    order = ">" if big_endian else "<"
    if code == "bf16":  # the upper half of a float32
        halves = np.frombuffer(raw, dtype=order + "u2")
        values = (halves.astype(np.uint32) << 16).view(np.float32)
    else:
        values = np.frombuffer(raw, dtype=np.dtype(code).newbyteorder(order) if code not in ("i1", "u1", "b1") else code)
    if len(values) < numel:
        raise CheckpointError(f"{where}: a {storage.name} of {numel} elements holds only {len(values)}")
    return values[:numel].astype(values.dtype.newbyteorder("="))


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_unused) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: a strided view of a storage, copied."""
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"a tensor of size {size} and stride {stride}")
    if 0 in size:
        return np.empty(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= len(storage):
        raise CheckpointError(f"a tensor (offset {offset}, size {size}, stride {stride}) "
                              f"beyond its storage of {len(storage)} elements")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * storage.itemsize for s in stride), writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data: np.ndarray, *_unused) -> np.ndarray:
    return data


def _rebuild_from_type(func, cls, args, _state) -> Any:
    if not isinstance(cls, _TensorType):
        raise CheckpointError(f"a tensor of class {cls!r}")
    return func(*args)


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if dtype.hasobject:
        raise CheckpointError("a numpy scalar of object type")
    return np.frombuffer(data, dtype=dtype)[0]


def _numpy_array(cls, shape, typecode) -> np.ndarray:
    if cls is not np.ndarray:
        raise CheckpointError(f"a numpy array of class {cls!r}")
    return np.ndarray.__new__(np.ndarray, shape, typecode)


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode``: how pickle protocol 2 writes ``bytes`` (e.g. of a numpy scalar)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise CheckpointError(f"a _codecs.encode to {encoding!r}")
    return text.encode("latin1")


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _latin1_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): _TensorType("Tensor"),
    ("torch.nn.parameter", "Parameter"): _TensorType("Parameter"),
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    **{(module, "scalar"): _numpy_scalar for module in _NUMPY_CORE},
    **{(module, "_reconstruct"): _numpy_array for module in _NUMPY_CORE},
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    """Rebuilds what :data:`_ALLOWED` names; tensors' storages come from the archive."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, big_endian: bool, where: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.big_endian, self.where = archive, prefix, big_endian, where
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self.where}: holds a {module}.{name}, which this reader does not rebuild "
                "(it reads tensors of typed storages, numbers, strings and containers)"
            ) from None

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.where}: an unknown persistent object {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self.where}: a storage of type {storage_type!r}")
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise CheckpointError(f"{self.where}: no storage data/{key} in the archive") from None
            self.storages[key] = _storage_array(raw, storage_type, int(numel), self.big_endian, self.where)
        return self.storages[key]


def read_torch_checkpoint(path: str | Path) -> Any:
    """The object ``torch.save`` wrote to ``path``, with every tensor a numpy array.

    Reads torch's zip format (torch >= 1.6): ``<name>/data.pkl`` and the raw
    storages ``<name>/data/<key>``; tensors are rebuilt from storage, offset,
    size and stride (``torch._utils._rebuild_tensor_v2``). No torch needed.

    Raises:
        CheckpointError: the file is not a zip archive with a ``data.pkl`` (e.g.
            text, an ``.npz``, torch's legacy format), or its pickle holds a
            class other than containers, numbers, numpy scalars and tensors.
    """
    path = Path(path)
    with path.open("rb") as file:
        head = file.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        if head == LEGACY_TORCH_MAGIC:
            raise CheckpointError(f"{path}: a torch checkpoint in the legacy format (torch < 1.6), which this "
                                  "reader does not read; re-save it with torch.save from a recent torch")
        raise CheckpointError(f"{path}: not a torch checkpoint (torch.save's zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
            if len(pickles) != 1:
                raise CheckpointError(f"{path}: a zip archive, but not a torch checkpoint (no <name>/data.pkl "
                                      f"among {names[:6]}{' ...' if len(names) > 6 else ''})")
            prefix = pickles[0][: -len("data.pkl")]
            byteorder = archive.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
            unpickler = _Unpickler(archive.read(pickles[0]), archive, prefix, byteorder == "big", str(path))
            return unpickler.load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, TypeError, ValueError, IndexError,
            AttributeError, KeyError) as error:
        raise CheckpointError(f"{path}: a cut-short or damaged torch checkpoint ({error})") from None


# -- Which checkpoint of a model directory --------------------------------------


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: itself if a file; in a flyvis model
    directory (``.../flow/0000/000``, or its ``chkpts`` folder), the one flyvis's
    ``NetworkView.init_network()`` loads by default: the only ``chkpts/chkpt_*``,
    or among several the one with the least validation loss
    (``validation/epe.h5``, else ``validation/loss.h5``, in checkpoint order;
    reading those HDF5 files needs ``h5py``).

    Raises:
        CheckpointError: nothing at ``path``, no checkpoint in the directory, or
            several without a validation loss that can be read.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such file or folder")
    folder = path / "chkpts" if (path / "chkpts").is_dir() else path
    found = sorted(
        (int(match.group(1)), p) for p in folder.iterdir()
        if (match := CHECKPOINT_NAME.fullmatch(p.name)) and p.is_file()
    )
    if not found:
        raise CheckpointError(f"{path}: no flyvis checkpoint (chkpts/chkpt_NNNNN) in this folder")
    if len(found) == 1:
        return found[0][1]
    return found[_best_index(folder.parent if folder.name == "chkpts" else folder, found)][1]


def _best_index(model_dir: Path, found: list[tuple[int, Path]]) -> int:
    loss_file = next((model_dir / "validation" / n for n in LOSS_FILES if (model_dir / "validation" / n).is_file()), None)
    first, last = found[0][1], found[-1][1]
    choose = f"pass one checkpoint file instead, e.g. {last}"
    if loss_file is None:
        raise CheckpointError(f"{model_dir}: {len(found)} checkpoints ({first.name} ... {last.name}) and no "
                              f"validation/epe.h5 or loss.h5 to choose the best by; {choose}")
    try:
        import h5py
    except ImportError:
        raise CheckpointError(f"{model_dir}: {len(found)} checkpoints; flyvis loads the one with the least "
                              f"validation loss ({loss_file}), an HDF5 file: pip install 'connectofly[flyvis]' "
                              f"(h5py), or {choose}") from None
    # datamate, which writes flyvis's result folders, keeps an array under the dataset "data"
    with h5py.File(loss_file, "r") as file:
        losses = np.asarray(file["data"][()], dtype=float).reshape(-1)
    if len(losses) != len(found):
        raise CheckpointError(f"{loss_file}: {len(losses)} validation losses for {len(found)} checkpoints; {choose}")
    return int(np.argmin(losses))


# -- flyvis's parameter layout and our Trainable ----------------------------------


@dataclass(frozen=True)
class FlyvisLayout:
    """flyvis's parameter groups for our connectome at one lattice extent.

    Attributes:
        extent: the smallest extent with these groups.
        cell_types: node groups (``nodes_bias``, ``nodes_time_const``).
        edge_types: indices into ``spec.edge_types`` of the edge groups
            (``edges_sign``, ``edges_syn_strength``).
        offsets: ``(edge type index, du, dv)`` of the count groups (``edges_syn_count``).
        n_syn: synapse count of each of ``offsets``.
    """

    extent: int
    cell_types: tuple[str, ...]
    edge_types: np.ndarray
    offsets: np.ndarray
    n_syn: np.ndarray

    def edge_names(self, spec: ol.OpticLobeSpec) -> list[str]:
        return [f"{spec.edge_types[k].source}>{spec.edge_types[k].target}" for k in self.edge_types]

    def offset_names(self, spec: ol.OpticLobeSpec) -> list[str]:
        return [f"{spec.edge_types[k].source}>{spec.edge_types[k].target}@{du},{dv}" for k, du, dv in self.offsets]


def _first_appearances(rows: np.ndarray) -> np.ndarray:
    """Row indices of the distinct rows of ``rows`` in order of first appearance."""
    _, first = np.unique(rows, axis=0, return_index=True)
    return np.sort(first)


def flyvis_layout(spec: ol.OpticLobeSpec, extent: int) -> FlyvisLayout:
    """The groups flyvis makes of our connectome built at ``extent`` (see the module doc)."""
    connectome = ol.load_connectome(extent, spec)
    attrs = connectome.edge_attrs
    keys = np.stack([attrs["edge_type"], attrs["du"], attrs["dv"]], axis=1)
    first_offset = _first_appearances(keys)
    return FlyvisLayout(
        extent=extent,
        cell_types=tuple(dict.fromkeys(connectome.node_type.tolist())),
        edge_types=attrs["edge_type"][_first_appearances(attrs["edge_type"][:, None])],
        offsets=keys[first_offset],
        n_syn=np.asarray(connectome.edge_count, dtype=float)[first_offset],
    )


def matching_layout(spec: ol.OpticLobeSpec, state: dict[str, np.ndarray], where: str) -> FlyvisLayout:
    """The layout whose group counts are those of ``state`` (a network state dict).

    Raises:
        CheckpointError: naming the field whose length fits no extent.
    """
    field = "edges_syn_count" if "edges_syn_count" in state else "edges_syn_strength"
    want = len(state[field])
    seen = []
    for extent in range(MAX_EXTENT + 1):
        layout = flyvis_layout(spec, extent)
        have = len(layout.offsets) if field == "edges_syn_count" else len(layout.edge_types)
        if have == want:
            break
        seen.append(have)
        if have > want or extent == MAX_EXTENT:  # the counts only grow with the extent
            raise CheckpointError(
                f"{where}: {field} has {want} values, but flyvis's network of this connectome has "
                f"{', '.join(map(str, sorted(set(seen))))} (extents 0-{extent}): a checkpoint of another connectome"
            )
    n_types, n_edges = len(spec.cell_types), len(layout.edge_types)
    for name, n in (("nodes_bias", n_types), ("nodes_time_const", n_types), ("edges_syn_strength", n_edges),
                    ("edges_sign", n_edges)):
        if name in state and len(state[name]) != n:
            raise CheckpointError(f"{where}: {name} has {len(state[name])} values, but this connectome has {n} "
                                  f"{'cell' if name.startswith('nodes') else 'edge'} types (at flyvis's extent "
                                  f"{layout.extent} or larger): a checkpoint of another connectome")
    return layout


def network_state(checkpoint: Any, where: str) -> dict[str, np.ndarray]:
    """The network's parameters of a checkpoint dict (its ``"network"`` entry, or
    the dict itself when it is a bare network state dict).

    Raises:
        CheckpointError: naming the keys found when the layout is not flyvis's,
            or a field that is not a 1-D float array.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{where}: holds a {type(checkpoint).__name__}, not a flyvis checkpoint dict")
    state = checkpoint.get("network", checkpoint)
    keys = list(state) if isinstance(state, dict) else []
    missing = [k for k in TRAINED_KEYS if k not in keys]
    if missing:
        found = keys if state is checkpoint else [f"network.{k}" for k in keys]
        raise CheckpointError(
            f"{where}: not a flyvis network checkpoint: no {missing}; found keys "
            f"{(list(checkpoint) if state is not checkpoint else []) + found}"
        )
    out = {}
    for name in (*TRAINED_KEYS, *FIXED_KEYS):
        if name not in state:
            continue
        value = state[name]
        if not (isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind == "f"):
            shape = getattr(value, "shape", None)
            raise CheckpointError(f"{where}: network.{name} is not a 1-D float tensor "
                                  f"({type(value).__name__}{f' of shape {shape}' if shape is not None else ''})")
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{where}: network.{name} holds NaN or infinite values")
        out[name] = value.astype(np.float32)
    return out


def _check_fixed(state: dict[str, np.ndarray], layout: FlyvisLayout, spec: ol.OpticLobeSpec, where: str) -> None:
    if "edges_sign" in state:
        want = np.array([spec.edge_types[k].sign for k in layout.edge_types])
        bad = np.flatnonzero(state["edges_sign"] != want)
        if len(bad):
            names = layout.edge_names(spec)
            raise CheckpointError(f"{where}: edges_sign differs from this connectome's signs at {len(bad)} edge "
                                  f"types (first {names[bad[0]]}: {state['edges_sign'][bad[0]]:g} against "
                                  f"{want[bad[0]]:g}): a checkpoint of another connectome")
    if "edges_syn_count" in state:
        counts = np.exp(state["edges_syn_count"].astype(float))
        bad = np.flatnonzero(~np.isclose(counts, layout.n_syn, rtol=COUNT_RTOL, atol=0))
        if len(bad):
            names = layout.offset_names(spec)
            raise CheckpointError(
                f"{where}: edges_syn_count differs from this connectome's synapse counts at {len(bad)} offsets "
                f"(first {names[bad[0]]}: {counts[bad[0]]:.6g} against {layout.n_syn[bad[0]]:g}). Our network "
                "takes the counts from the connectome file (flyvis's default config does not train them): "
                "a checkpoint of another connectome, or one that trained the synapse counts, is not imported"
            )


def trainable_from_checkpoint(checkpoint: Any, spec: ol.OpticLobeSpec, where: str = "checkpoint") -> ol.Trainable:
    """:class:`~connectofly.circuits.optic_lobe.Trainable` of a checkpoint read by
    :func:`read_torch_checkpoint` (see the module doc for what is read and refused)."""
    state = network_state(checkpoint, where)
    layout = matching_layout(spec, state, where)
    _check_fixed(state, layout, spec, where)
    values = {
        "cell_types": np.array(layout.cell_types),
        "bias": state["nodes_bias"],
        "time_const": state["nodes_time_const"],
        "edge_types": np.array(layout.edge_names(spec)),
        "syn_strength": state["edges_syn_strength"],
    }
    n_types, n_edges = len(spec.cell_types), len(spec.edge_types)
    blank = ol.Trainable(jnp.zeros(n_types), jnp.zeros(n_types), jnp.zeros(n_edges))
    return ol.with_flyvis_parameters(blank, spec, values)


def load_flyvis_checkpoint(path: str | Path, spec: ol.OpticLobeSpec | None = None) -> ol.Trainable:
    """Our optic lobe's parameters from a flyvis checkpoint file or model directory.

    Args:
        path: ``.../chkpts/chkpt_NNNNN``, or a model directory such as
            ``flyvis/data/results/flow/0000/000`` (:func:`find_checkpoint` picks
            the checkpoint flyvis loads by default).
        spec: the connectome; by default :func:`~connectofly.circuits.optic_lobe.read_spec`
            (flyvis's ``fib25-fib19_v2.2.json``).

    Raises:
        CheckpointError: see :func:`find_checkpoint`, :func:`read_torch_checkpoint`,
            :func:`network_state`, :func:`matching_layout`; and when the signs or
            synapse counts are not the connectome's.
    """
    spec = ol.read_spec() if spec is None else spec
    file = find_checkpoint(path)
    return trainable_from_checkpoint(read_torch_checkpoint(file), spec, str(file))


def is_flyvis_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` looks like a flyvis model (a folder, or a torch zip archive
    with a ``data.pkl``), rather than an ``.npz`` of ours; reads no tensor."""
    path = Path(path).expanduser()
    if path.is_dir():
        return True
    try:
        with path.open("rb") as file:
            head = file.read(len(ZIP_MAGIC))
        if head == LEGACY_TORCH_MAGIC:
            return True
        if head != ZIP_MAGIC:
            return False
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("data.pkl") and n.count("/") <= 1 for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False

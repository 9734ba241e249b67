"""Locating connectome tables: a local directory, or hash-checked downloads.

The project never ships connectome data. Each table is identified by its file
name and SHA-256, and made from one or more public upstream files (provenance:
``docs/data.md``). A loader asks for a table with :func:`connectome_path`:

* if the environment variable ``CONNECTOFLY_DATA_DIR`` names a directory, the
  table is read from there and nothing is downloaded;
* otherwise it is read from the user cache (``CONNECTOFLY_CACHE_DIR``, else
  pooch's cache folder for ``connectofly``), and fetched into it the first time:
  the upstream file is downloaded with pooch and its SHA-256 checked, the table
  is made from it (a pandas pickle is converted to the CSV the loaders read,
  unpickled only after its hash matched), the table's own SHA-256 is checked,
  and only then is it saved. A table with two sources (the optic-lobe
  connectome: flyvis's repository, or the flyvis wheel on PyPI) is fetched from
  the first one that can be reached.

``CONNECTOFLY_DATA_URL_BASE`` points every download at a mirror:
``https://host/path`` is then fetched from ``$CONNECTOFLY_DATA_URL_BASE/host/path``.

A file that fails its hash is refused (``ValueError``); a table that is neither
local nor downloadable raises :class:`DataUnavailable`, one line naming the
file, the URLs tried and ``CONNECTOFLY_DATA_DIR``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pooch
import requests

DATA_DIR_ENV = "CONNECTOFLY_DATA_DIR"
CACHE_DIR_ENV = "CONNECTOFLY_CACHE_DIR"
URL_BASE_ENV = "CONNECTOFLY_DATA_URL_BASE"


class DataUnavailable(RuntimeError):
    """A connectome table is neither in the local directory nor downloadable."""


# -- Making a table from its upstream file ---------------------------------------


def premotor_table(wide: pd.DataFrame) -> pd.DataFrame:
    """The long premotor → MN table of Lesser, Azevedo et al.'s synapse-count matrix.

    ``wide`` has one row per premotor neuron (index levels ``cell_class``, ...,
    ``segID``) and one column per motor neuron (levels ``side``, ..., ``module``).
    The table has one row per non-zero count, premotor neurons in row order and
    each one's MNs in column order, with columns ``pre_<index level>``,
    ``mn_<column level>`` and ``syn``.
    """
    counts = wide.to_numpy()
    rows, cols = np.nonzero(counts)
    pre = wide.index.to_frame(index=False).add_prefix("pre_").iloc[rows].reset_index(drop=True)
    mn = wide.columns.to_frame(index=False).add_prefix("mn_").iloc[cols].reset_index(drop=True)
    return pre.join(mn).assign(syn=counts[rows, cols])


def mn_module_table(modules: dict) -> pd.DataFrame:
    """Motor-neuron segment id → motor module, one row per entry in dictionary order."""
    return pd.DataFrame({"mn_segID": list(modules), "module": list(modules.values())})


def premotor_csv_from_pickle(path: Path) -> bytes:
    """``fanc_t1l_premotor_to_mn_v840.csv`` from the hash-checked upstream pickle."""
    return premotor_table(pd.read_pickle(path)).to_csv(index=False, lineterminator="\n").encode()


def mn_modules_csv_from_pickle(path: Path) -> bytes:
    """``fanc_t1l_mn_modules_v840.csv`` (CRLF lines) from the hash-checked upstream pickle."""
    return mn_module_table(pd.read_pickle(path)).to_csv(index=False, lineterminator="\r\n").encode()


def with_final_newline(path: Path) -> bytes:
    """The file's bytes, ending in a newline (the upstream Lacin table lacks one)."""
    data = path.read_bytes()
    return data if data.endswith(b"\n") else data + b"\n"


def zip_member(path: Path, member: str) -> bytes:
    """One file of a zip archive (a wheel)."""
    with zipfile.ZipFile(path) as archive:
        return archive.read(member)


# -- The catalogue -----------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """A public file a table is made from.

    ``to_table`` turns the downloaded file into the table's bytes; it is called
    only after the file matched ``sha256``.
    """

    url: str
    sha256: str
    to_table: Callable[[Path], bytes] = Path.read_bytes
    note: str = ""  # how the table is made from the file, when it is not the file itself


@dataclass(frozen=True)
class DataFile:
    """A connectome table: its name, hash and public sources (tried in order)."""

    name: str
    sha256: str
    sources: tuple[Upstream, ...]


_RAW = "https://raw.githubusercontent.com"
_FLYVIS = f"{_RAW}/TuragaLab/flyvis/b0b3365d722fcea0b88669ebc0ebd2914023efd6"
_LESSER = f"{_RAW}/tuthill-lab/Lesser_Azevedo_2023/93cafa55b8bbdb1493e8d73c941035969349b223"
_PUGLIESE = f"{_RAW}/smpuglie/Pugliese_cpg_2025/dfcea2b78a58063b8eb019d9ac8880ca5307f179/data"
_FLYVIS_WHEEL = (
    "https://files.pythonhosted.org/packages/84/4b/"
    "ff611ea0a98ee30395b3a716810bf623984b12442d717366170fff6839b2/flyvis-1.2.0-py3-none-any.whl"
)
_FLYVIS_CONNECTOME = "flyvis/connectome/fib25-fib19_v2.2.json"

KNOWN_FILES: dict[str, DataFile] = {
    f.name: f
    for f in (
        DataFile(
            "fib25-fib19_v2.2.json",
            "bfbb0766251ff09e22723d0ebbf7b14793e70b3ae8ad0eea64eac9d28223351a",
            (
                Upstream(
                    f"{_FLYVIS}/{_FLYVIS_CONNECTOME}",
                    "bfbb0766251ff09e22723d0ebbf7b14793e70b3ae8ad0eea64eac9d28223351a",
                ),
                Upstream(
                    _FLYVIS_WHEEL,
                    "af365b16e870111fcb06782a063f6551b05cce9a105c6eaab9c0bda3b017031f",
                    functools.partial(zip_member, member=_FLYVIS_CONNECTOME),
                    f"the flyvis 1.2.0 wheel on PyPI, member {_FLYVIS_CONNECTOME}",
                ),
            ),
        ),
        DataFile(
            "fanc_t1l_premotor_to_mn_v840.csv",
            "a688bb2d3729b2d3a42f6746be4e42279fef1f40eb052d32df96d0062942e7de",
            (
                Upstream(
                    f"{_LESSER}/dfs_pre_to_mn/pre_to_mn_df_matched_typed_with_nt_v840.pkl",
                    "81fade01ad007ab42902d16873eb7814ba160a1c46db93786482800cca2818e1",
                    premotor_csv_from_pickle,
                    "pandas pickle of the preMN × MN matrix, converted to one CSV row per edge",
                ),
            ),
        ),
        DataFile(
            "fanc_t1l_mn_modules_v840.csv",
            "eef10ee29096d5574156336ece87db45cbdb896d9b77171eee8ffb4c8d836d70",
            (
                Upstream(
                    f"{_LESSER}/pkls/leg_module_dictionary.pkl",
                    "921aedaeb8db805da4b25144ec1659ea4a0b625d591ebbcfe41bdae3a7fcb55a",
                    mn_modules_csv_from_pickle,
                    "pandas pickle of a dict segID → module, converted to CSV",
                ),
            ),
        ),
        DataFile(
            "lacin_hemilineage_nt.csv",
            "945d0f9b28f0a6328e28752ae485aac4c91104aed5ea1246408d0d6acb95e378",
            (
                Upstream(
                    f"{_LESSER}/annotations_hl/LacinHLTable.csv",
                    "7f0345e1694caaae2c48fb0b6168e941cbd11a354940b4cb709d9312d29223d1",
                    with_final_newline,
                    "a final newline added",
                ),
            ),
        ),
        DataFile(
            "fanc_t1l_nodes_pugliese2025.csv",
            "b1d4788f7c41ef654e7ad4554bd8a60f583df722079eab729d88e11d37bb53ee",
            (
                Upstream(
                    f"{_PUGLIESE}/fanc%20t1l%20connectome%20data/wTable_BDN2toMN_20250107_corrected.csv",
                    "b1d4788f7c41ef654e7ad4554bd8a60f583df722079eab729d88e11d37bb53ee",
                ),
            ),
        ),
        DataFile(
            "manc_t1_nodes_pugliese2025.csv",
            "279c1262cfe2896e5d5d3e79cccf5058f3d27a8e4e1f706a371f597fab7674a8",
            (
                Upstream(
                    f"{_PUGLIESE}/manc%20t1%20connectome%20data/wTable_20250813_DNtoMN_unsorted_withModules.csv",
                    "279c1262cfe2896e5d5d3e79cccf5058f3d27a8e4e1f706a371f597fab7674a8",
                ),
            ),
        ),
    )
}


# -- Where a table is, and whether it is the published one --------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"SHA-256 mismatch for {path}: expected {expected}, got {actual}; "
            "the file is corrupted or not the published version"
        )


def known_file(name: str) -> DataFile:
    if name not in KNOWN_FILES:
        raise ValueError(f"unknown connectome file {name!r}; known files: {sorted(KNOWN_FILES)}")
    return KNOWN_FILES[name]


def cache_dir() -> Path:
    """Where fetched tables are kept: ``$CONNECTOFLY_CACHE_DIR``, else pooch's user cache."""
    return Path(os.environ.get(CACHE_DIR_ENV) or pooch.os_cache("connectofly"))


def tables_dir() -> Path:
    """Where the loaders read tables: ``$CONNECTOFLY_DATA_DIR`` when set, else :func:`cache_dir`."""
    local = os.environ.get(DATA_DIR_ENV)
    return Path(local) if local else cache_dir()


def table_state(name: str) -> str:
    """``"verified"``, ``"missing"`` or ``"SHA-256 mismatch"`` for the table in :func:`tables_dir`."""
    path = tables_dir() / name
    if not path.is_file():
        return "missing"
    return "verified" if sha256_of(path) == known_file(name).sha256 else "SHA-256 mismatch"


def resolve_url(url: str) -> str:
    """``url``, or its copy under ``$CONNECTOFLY_DATA_URL_BASE/<host>/<path>`` when that is set."""
    base = os.environ.get(URL_BASE_ENV)
    if not base:
        return url
    parts = urlsplit(url)
    return f"{base.rstrip('/')}/{parts.netloc}{parts.path}"


# -- Fetching ----------------------------------------------------------------------------


def table_from(source: Upstream) -> bytes:
    """Download ``source`` (pooch checks its SHA-256) into a temporary folder and make the table."""
    url = resolve_url(source.url)
    with tempfile.TemporaryDirectory(prefix="connectofly-download-") as folder:
        path = pooch.retrieve(
            url, known_hash=f"sha256:{source.sha256}", fname=unquote(Path(urlsplit(url).path).name), path=folder
        )
        return source.to_table(Path(path))


def verify_table(entry: DataFile, table: bytes, source: Upstream) -> None:
    actual = hashlib.sha256(table).hexdigest()
    if actual != entry.sha256:
        raise ValueError(
            f"{entry.name} made from {resolve_url(source.url)} has SHA-256 {actual}, not the "
            f"pinned {entry.sha256}; refused, nothing saved"
        )


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it, so ``path`` is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


def fetch_table(name: str, directory: Path) -> Path:
    """Make the table ``name`` from its first reachable source and save it in ``directory``.

    Raises:
        DataUnavailable: no source could be downloaded (offline, host down, 404).
        ValueError: a download or the table made from it failed its SHA-256;
            nothing is saved then.
    """
    entry = known_file(name)
    tried = []
    for source in entry.sources:
        try:
            table = table_from(source)
        except requests.RequestException as error:
            tried.append(f"{resolve_url(source.url)} ({type(error).__name__})")
            continue
        verify_table(entry, table, source)
        return write_atomically(directory / name, table)
    raise DataUnavailable(
        f"cannot download {name} from {' or '.join(tried)}; offline, set {DATA_DIR_ENV} "
        f"to a directory holding {name}"
    )


def connectome_path(name: str) -> Path:
    """A local, hash-verified path to the connectome table ``name``, fetched if needed.

    Raises:
        ValueError: unknown name, or a file whose SHA-256 does not match.
        DataUnavailable: the file is missing from ``$CONNECTOFLY_DATA_DIR``, or
            (without that variable) not cached and not downloadable.
    """
    entry = known_file(name)
    path = tables_dir() / name
    if os.environ.get(DATA_DIR_ENV):
        if not path.is_file():
            raise DataUnavailable(
                f"{name} is missing from {DATA_DIR_ENV}={path.parent}; 'connectofly data --fetch' "
                f"puts it there (from {entry.sources[0].url})"
            )
        verify_sha256(path, entry.sha256)
    elif table_state(name) != "verified":
        fetch_table(name, path.parent)
    return path

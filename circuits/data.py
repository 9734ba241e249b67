"""Locating connectome tables: a local directory, or a hash-checked download.

The project never ships connectome data. Each table is identified by its file
name and SHA-256 (the provenance is in the docs, ``docs/data.md``). A loader asks
for a file with :func:`connectome_path`:

* if the environment variable ``CONNECTOFLY_DATA_DIR`` names a directory, the
  file is read from there (tests and CI point it at ``../shared/data/connectomes``);
* otherwise it is downloaded once from its public source into the user cache
  (``pooch``), and its SHA-256 is checked before it is used.

Either way the hash is verified, so a corrupted or substituted file is an error.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "CONNECTOFLY_DATA_DIR"


@dataclass(frozen=True)
class DataFile:
    """A connectome table: its name, hash and public source."""

    name: str
    sha256: str
    url: str | None  # None: no public raw-file URL; only a local directory works


_FLYVIS_RAW = "https://raw.githubusercontent.com/TuragaLab/flyvis/b0b3365d"
_LESSER_RAW = "https://raw.githubusercontent.com/tuthill-lab/Lesser_Azevedo_2023/93cafa55"

KNOWN_FILES: dict[str, DataFile] = {
    f.name: f
    for f in (
        DataFile(
            "fib25-fib19_v2.2.json",
            "bfbb0766251ff09e22723d0ebbf7b14793e70b3ae8ad0eea64eac9d28223351a",
            f"{_FLYVIS_RAW}/flyvis/connectome/fib25-fib19_v2.2.json",
        ),
        DataFile(
            "fanc_t1l_premotor_to_mn_v840.csv",
            "a688bb2d3729b2d3a42f6746be4e42279fef1f40eb052d32df96d0062942e7de",
            None,  # upstream is a pickle; the CSV is a converted copy
        ),
        DataFile(
            "fanc_t1l_mn_modules_v840.csv",
            "eef10ee29096d5574156336ece87db45cbdb896d9b77171eee8ffb4c8d836d70",
            None,  # upstream is a pickle (pkls/leg_module_dictionary.pkl); converted copy
        ),
        DataFile(
            "lacin_hemilineage_nt.csv",
            "945d0f9b28f0a6328e28752ae485aac4c91104aed5ea1246408d0d6acb95e378",
            None,  # upstream annotations_hl/LacinHLTable.csv; byte identity not verified here
        ),
        DataFile(
            "fanc_t1l_nodes_pugliese2025.csv",
            "b1d4788f7c41ef654e7ad4554bd8a60f583df722079eab729d88e11d37bb53ee",
            None,
        ),
        DataFile(
            "manc_t1_nodes_pugliese2025.csv",
            "279c1262cfe2896e5d5d3e79cccf5058f3d27a8e4e1f706a371f597fab7674a8",
            None,
        ),
        DataFile(
            "malecns_dnan_cluster_function_20250919.csv",
            "a34051d6b225a403667d20b88c4dd8db62445c2592602586ce9da465b1204402",
            None,
        ),
    )
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def connectome_path(name: str) -> Path:
    """Return a local, hash-verified path to the connectome table ``name``.

    Raises:
        ValueError: unknown file name, or a file whose SHA-256 does not match.
        FileNotFoundError: the file is neither in ``$CONNECTOFLY_DATA_DIR`` nor
            downloadable.
    """
    if name not in KNOWN_FILES:
        raise ValueError(
            f"unknown connectome file {name!r}; known files: {sorted(KNOWN_FILES)}"
        )
    entry = KNOWN_FILES[name]
    local_dir = os.environ.get(DATA_DIR_ENV)
    if local_dir:
        path = Path(local_dir) / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{DATA_DIR_ENV}={local_dir!r} has no file {name!r}"
            )
    elif entry.url is not None:
        import pooch  # only needed when downloading
        import requests

        try:
            path = Path(
                pooch.retrieve(entry.url, known_hash=f"sha256:{entry.sha256}", fname=name)
            )
        except requests.ConnectionError as error:
            raise FileNotFoundError(
                f"cannot download {name!r} from {entry.url} ({type(error).__name__}); "
                f"offline, set {DATA_DIR_ENV} to a directory holding it"
            ) from error
    else:
        raise FileNotFoundError(
            f"{name!r} has no public raw-file source; set {DATA_DIR_ENV} to a "
            "directory holding it (README, section Data)"
        )
    verify_sha256(path, entry.sha256)
    return path


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"SHA-256 mismatch for {path}: expected {expected}, got {actual}; "
            "the file is corrupted or not the published version"
        )

"""Connectome tables on a user's machine: fetched from their upstream files, converted, verified.

Downloads go to a real HTTP server on 127.0.0.1 serving a mirror
(``$CONNECTOFLY_DATA_URL_BASE/<host>/<path>``) of upstream-shaped files made
here: the FANC pickles are rebuilt from the reference tables (the matrix and
dictionary the upstream pickles hold), the other files are the upstream bytes.
"""

import functools
import graphlib
import hashlib
import http.server
import io
import os
import socket
import threading
import zipfile
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jax
import numpy as np
import pandas as pd
import pytest

from connectofly.circuits import data, vnc
from connectofly.circuits import vnc_connectome as vc
from connectofly.cli.main import main

REFERENCE = Path(os.environ[data.DATA_DIR_ENV]) if os.environ.get(data.DATA_DIR_ENV) else None
needs_reference = pytest.mark.skipif(
    REFERENCE is None or not (REFERENCE / vc.FANC_PREMOTOR_FILE).is_file(),
    reason="reference connectome tables (CONNECTOFLY_DATA_DIR) not found",
)
VNC_TABLES = (vc.FANC_PREMOTOR_FILE, vc.FANC_MN_MODULES_FILE, vc.LACIN_FILE)


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


# -- upstream-shaped files from the reference tables ----------------------------------


def premotor_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """The preMN × MN synapse-count matrix a long premotor table was made from.

    Rows: premotor neurons in table order. Columns: MNs in an order agreeing with
    every premotor neuron's row sequence (any such order gives the same table).
    """
    pre = [c for c in table.columns if c.startswith("pre_")]
    mn = [c for c in table.columns if c.startswith("mn_")]
    pre_keys = list(table[pre].itertuples(index=False, name=None))
    mn_keys = list(table[mn].itertuples(index=False, name=None))
    after: dict[tuple, set[tuple]] = {key: set() for key in mn_keys}
    for i in range(1, len(table)):
        if pre_keys[i] == pre_keys[i - 1]:
            after[mn_keys[i]].add(mn_keys[i - 1])
    columns = pd.MultiIndex.from_tuples(list(graphlib.TopologicalSorter(after).static_order()), names=mn)
    rows = pd.MultiIndex.from_tuples(list(dict.fromkeys(pre_keys)), names=pre)
    wide = table.set_index(pre + mn)["syn"].unstack(mn, fill_value=0).reindex(index=rows, columns=columns)
    return wide.rename_axis(index=[c.removeprefix("pre_") for c in pre],
                            columns=[c.removeprefix("mn_") for c in mn])


def read_reference_premotor() -> pd.DataFrame:
    """The reference premotor table with every field as its text (so writing it back is exact)."""
    return pd.read_csv(REFERENCE / vc.FANC_PREMOTOR_FILE, dtype=str, keep_default_na=False).astype({"syn": int})


def pickled(obj) -> bytes:
    buffer = io.BytesIO()
    pd.to_pickle(obj, buffer)
    return buffer.getvalue()


def wheel_with(member: str, blob: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, blob)
    return buffer.getvalue()


def upstream_files() -> dict[str, tuple[bytes, ...]]:
    """Per table, the bytes of each of its sources, in the catalogue's order."""
    ref = {name: (REFERENCE / name).read_bytes() for name in data.KNOWN_FILES}
    modules = pd.read_csv(REFERENCE / vc.FANC_MN_MODULES_FILE)
    return {
        "fib25-fib19_v2.2.json": (
            ref["fib25-fib19_v2.2.json"],
            wheel_with("flyvis/connectome/fib25-fib19_v2.2.json", ref["fib25-fib19_v2.2.json"]),
        ),
        vc.FANC_PREMOTOR_FILE: (pickled(premotor_matrix(read_reference_premotor())),),
        vc.FANC_MN_MODULES_FILE: (pickled(dict(zip(modules["mn_segID"].tolist(), modules["module"]))),),
        vc.LACIN_FILE: (ref[vc.LACIN_FILE].removesuffix(b"\n"),),
        vc.PUGLIESE_FANC_NODES_FILE: (ref[vc.PUGLIESE_FANC_NODES_FILE],),
        vc.PUGLIESE_MANC_NODES_FILE: (ref[vc.PUGLIESE_MANC_NODES_FILE],),
    }


def mirror_path(root: Path, url: str) -> Path:
    parts = urlsplit(url)
    return root / parts.netloc / unquote(parts.path).lstrip("/")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A local HTTP server with every table's upstream files; yields (root, base URL, catalogue).

    The catalogue is KNOWN_FILES with each source's hash set to the served
    file's (equal to the published hash except for the pickles made here).
    """
    root = tmp_path_factory.mktemp("mirror")
    catalogue = {}
    for name, blobs in upstream_files().items():
        entry = data.KNOWN_FILES[name]
        for source, blob in zip(entry.sources, blobs, strict=True):
            path = mirror_path(root, source.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
        catalogue[name] = replace(entry, sources=tuple(
            replace(source, sha256=sha256(blob)) for source, blob in zip(entry.sources, blobs)))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", catalogue
    server.shutdown()
    server.server_close()


@pytest.fixture
def clean_cache(tmp_path, monkeypatch):
    """No local directory, an empty cache; returns the cache folder."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(cache))
    return cache


@pytest.fixture
def served(mirror, clean_cache, monkeypatch):
    """Downloads from the local mirror, whose files the catalogue accepts; returns (root, cache)."""
    root, base, catalogue = mirror
    monkeypatch.setenv(data.URL_BASE_ENV, base)
    for name, entry in catalogue.items():
        monkeypatch.setitem(data.KNOWN_FILES, name, entry)
    return root, clean_cache


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# -- conversions -------------------------------------------------------------------------


def test_premotor_csv_of_a_small_matrix(tmp_path):
    """One row per non-zero count, premotor neurons in row order, MNs in column order."""
    pre = pd.MultiIndex.from_tuples(
        [("local", "tibia_extend", "GABA", "Lacin", "13A", 11),
         ("sensory", "ltm_A", np.nan, np.nan, "CO_club", 12),
         ("descending", "coxa_promote", np.nan, np.nan, np.nan, 13)],
        names=["cell_class", "preferred_pool", "NT", "classification_system", "cell_type", "segID"],
    )
    mn = pd.MultiIndex.from_tuples(
        [("L", "Leg", "tibia", "flex", "tibia_flexor", "A", 22, "tibia_flex_A"),
         ("L", "Leg", "tibia", "extend", "tibia_extensor", "0", 21, "tibia_extend")],
        names=["side", "nerve", "segment", "function", "muscle", "rank", "segID", "module"],
    )
    pd.to_pickle(pd.DataFrame([[0, 5], [0, 0], [2, 7]], index=pre, columns=mn), tmp_path / "m.pkl")
    assert data.premotor_csv_from_pickle(tmp_path / "m.pkl").decode() == (
        "pre_cell_class,pre_preferred_pool,pre_NT,pre_classification_system,pre_cell_type,pre_segID,"
        "mn_side,mn_nerve,mn_segment,mn_function,mn_muscle,mn_rank,mn_segID,mn_module,syn\n"
        "local,tibia_extend,GABA,Lacin,13A,11,L,Leg,tibia,extend,tibia_extensor,0,21,tibia_extend,5\n"
        "descending,coxa_promote,,,,13,L,Leg,tibia,flex,tibia_flexor,A,22,tibia_flex_A,2\n"
        "descending,coxa_promote,,,,13,L,Leg,tibia,extend,tibia_extensor,0,21,tibia_extend,7\n"
    )


def test_mn_modules_csv_of_a_dict(tmp_path):
    pd.to_pickle({648518346487756866: "coxa_promotion", 7: "tibia_ta_flex_C"}, tmp_path / "d.pkl")
    assert data.mn_modules_csv_from_pickle(tmp_path / "d.pkl") == (
        b"mn_segID,module\r\n648518346487756866,coxa_promotion\r\n7,tibia_ta_flex_C\r\n"
    )


@needs_reference
def test_conversions_reproduce_the_published_tables(tmp_path):
    """Upstream-shaped pickles made from the reference tables convert back to them byte for byte."""
    blobs = upstream_files()
    for name, to_table in [(vc.FANC_PREMOTOR_FILE, data.premotor_csv_from_pickle),
                           (vc.FANC_MN_MODULES_FILE, data.mn_modules_csv_from_pickle),
                           (vc.LACIN_FILE, data.with_final_newline)]:
        (tmp_path / name).write_bytes(blobs[name][0])
        assert to_table(tmp_path / name) == (REFERENCE / name).read_bytes(), name
    # The Lacin table without its final newline is the pinned upstream file.
    assert sha256(blobs[vc.LACIN_FILE][0]) == data.KNOWN_FILES[vc.LACIN_FILE].sources[0].sha256


# -- fetching ----------------------------------------------------------------------------


@needs_reference
def test_vnc_tables_are_fetched_converted_verified_and_loaded(served):
    _, cache = served
    connectome = vc.load_fanc_t1l_premotor_to_mn()
    modules = vc.load_fanc_mn_modules()
    assert sorted(p.name for p in cache.iterdir()) == sorted(VNC_TABLES)
    for name in VNC_TABLES:
        assert (cache / name).read_bytes() == (REFERENCE / name).read_bytes(), name
    assert connectome.meta["n_premotor"] == 1546 and connectome.meta["n_motor"] == 69
    assert len(modules) == 69
    reference = vc.load_fanc_t1l_premotor_to_mn(REFERENCE / vc.FANC_PREMOTOR_FILE, REFERENCE / vc.LACIN_FILE)
    np.testing.assert_array_equal(connectome.edge_src, reference.edge_src)
    np.testing.assert_array_equal(connectome.edge_count, reference.edge_count)
    np.testing.assert_array_equal(connectome.edge_sign, reference.edge_sign)
    # and the VNC network builds on the fetched tables as on the reference ones
    built, expected = vnc.init(jax.random.PRNGKey(0), connectome), vnc.init(jax.random.PRNGKey(0), reference)
    assert jax.tree.structure(built) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(built), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)


@needs_reference
def test_second_source_when_the_first_is_missing(served):
    """The optic-lobe connectome comes out of the flyvis wheel when the raw file is not served."""
    root, cache = served
    raw, wheel = data.KNOWN_FILES["fib25-fib19_v2.2.json"].sources
    mirror_path(root, raw.url).rename(mirror_path(root, raw.url).with_suffix(".hidden"))
    try:
        path = data.connectome_path("fib25-fib19_v2.2.json")
    finally:
        mirror_path(root, raw.url).with_suffix(".hidden").rename(mirror_path(root, raw.url))
    assert path == cache / "fib25-fib19_v2.2.json"
    assert path.read_bytes() == (REFERENCE / "fib25-fib19_v2.2.json").read_bytes()


@needs_reference
def test_a_download_with_a_wrong_hash_is_refused_and_nothing_cached(served, monkeypatch):
    entry = data.KNOWN_FILES[vc.FANC_PREMOTOR_FILE]
    wrong = replace(entry.sources[0], sha256="0" * 64)
    monkeypatch.setitem(data.KNOWN_FILES, entry.name, replace(entry, sources=(wrong,)))
    with pytest.raises(ValueError, match="hash of downloaded file"):
        data.connectome_path(entry.name)
    assert not served[1].exists() or not any(served[1].iterdir())


@needs_reference
def test_a_table_converted_to_other_bytes_is_refused_and_nothing_cached(served, monkeypatch):
    entry = data.KNOWN_FILES[vc.LACIN_FILE]
    twice = replace(entry.sources[0], to_table=lambda path: path.read_bytes() + b"\n\n")
    monkeypatch.setitem(data.KNOWN_FILES, entry.name, replace(entry, sources=(twice,)))
    with pytest.raises(ValueError, match="refused, nothing saved"):
        data.connectome_path(entry.name)
    assert not served[1].exists() or not any(served[1].iterdir())


def test_offline_is_one_line_naming_file_url_and_data_dir(clean_cache, monkeypatch, capsys):
    monkeypatch.setenv(data.URL_BASE_ENV, closed_port_url())
    with pytest.raises(data.DataUnavailable) as error:
        vc.load_lacin_hemilineage_transmitters()
    message = str(error.value)
    assert "\n" not in message
    assert vc.LACIN_FILE in message and "LacinHLTable.csv" in message and data.DATA_DIR_ENV in message
    assert main(["data", "--fetch"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("connectofly: error: 6 of 6 tables not fetched")
    assert "Traceback" not in err
    assert not clean_cache.exists() or not any(clean_cache.iterdir())


def test_a_table_missing_from_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(data.DataUnavailable, match=rf"{vc.LACIN_FILE} is missing from {data.DATA_DIR_ENV}=.*"
                                                   r"LacinHLTable\.csv"):
        data.connectome_path(vc.LACIN_FILE)


# -- the CLI ------------------------------------------------------------------------------


@needs_reference
def test_cli_fetches_every_table_then_lists_them_verified(served, capsys):
    _, cache = served
    assert main(["data"]) == 0
    assert capsys.readouterr().out.count(": missing") == len(data.KNOWN_FILES)
    assert main(["data", "--fetch"]) == 0
    out = capsys.readouterr().out
    assert out.count(": verified") == len(data.KNOWN_FILES)
    for name in data.KNOWN_FILES:
        assert sha256((cache / name).read_bytes()) == data.KNOWN_FILES[name].sha256

"""VNC connectome loaders: the real FANC/MANC tables and synthetic formats."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from connectofly.circuits import vnc_connectome as vc
from connectofly.circuits.data import connectome_path
from connectofly.circuits.motor_map import canonical_module


@pytest.fixture(scope="module")
def fanc():
    return vc.load_fanc_t1l_premotor_to_mn()


@pytest.fixture(scope="module")
def fanc_table():
    return pd.read_csv(connectome_path(vc.FANC_PREMOTOR_FILE))


def test_fanc_counts_match_the_published_numbers(fanc):
    # Lesser, Azevedo et al. 2024 / data README: 1,546 premotor × 69 MNs, 11,136 edges, 212,190 synapses.
    attrs = fanc.node_attrs
    assert (~attrs["is_motor"]).sum() == 1546
    assert attrs["is_motor"].sum() == 69
    assert fanc.n_edges == 11136
    assert fanc.edge_count.sum() == 212190
    assert set(np.unique(fanc.edge_dst)) <= set(np.flatnonzero(attrs["is_motor"]))
    assert not attrs["is_motor"][fanc.edge_src].any()


def test_fanc_signs_follow_transmitters(fanc):
    attrs = fanc.node_attrs
    hl = attrs["hemilineage"][fanc.edge_src]
    assert (fanc.edge_sign[hl == "13A"] == -1).all()  # GABA
    assert (fanc.edge_sign[hl == "16B"] == -1).all()  # glutamate
    assert (fanc.edge_sign[hl == "03A"] == 1).all()  # acetylcholine
    assert (fanc.edge_sign[attrs["cell_class"][fanc.edge_src] == "sensory"] == 1).all()
    assert (hl == "13A").sum() > 0 and (hl == "03A").sum() > 0


def test_unannotated_policies(fanc_table):
    lacin = vc.load_lacin_hemilineage_transmitters()
    with pytest.raises(ValueError, match="no transmitter annotation"):
        vc.connectome_from_premotor_table(fanc_table, lacin, unannotated="error")
    dropped = vc.connectome_from_premotor_table(fanc_table, lacin, unannotated="drop")
    annotated_rows = fanc_table["pre_NT"].notna()
    assert dropped.n_edges == int(annotated_rows.sum())
    assert dropped.edge_count.sum() == fanc_table.loc[annotated_rows, "syn"].sum()
    inhibitory = vc.connectome_from_premotor_table(fanc_table, lacin, unannotated="inhibitory")
    descending = inhibitory.node_attrs["cell_class"][inhibitory.edge_src] == "descending"
    assert (inhibitory.edge_sign[descending] == -1).all()
    with pytest.raises(ValueError, match="unannotated"):
        vc.connectome_from_premotor_table(fanc_table, lacin, unannotated="maybe")


def test_missing_transmitter_falls_back_to_hemilineage(fanc_table):
    lacin = vc.load_lacin_hemilineage_transmitters()
    table = fanc_table.copy()
    table.loc[table["pre_cell_type"] == "13A", "pre_NT"] = np.nan
    table.loc[table["pre_cell_type"] == "03A", "pre_NT"] = np.nan
    c = vc.connectome_from_premotor_table(table, lacin, unannotated="drop")
    ct = c.node_attrs["cell_type"]
    assert (c.node_attrs["transmitter_source"][ct == "13A"] == "hemilineage").all()
    assert (c.node_attrs["transmitter"][ct == "13A"] == "gaba").all()
    assert (c.edge_sign[ct[c.edge_src] == "03A"] == 1).all()


def test_lacin_table():
    lacin = vc.load_lacin_hemilineage_transmitters()
    assert lacin["19A"] == "gaba"
    assert lacin["16B"] == "glutamate"
    assert lacin["17A"] == "acetylcholine"
    assert "16A" not in lacin  # no transmitter listed
    assert "NaN" not in lacin


@pytest.mark.parametrize("label, expected", [
    ("19A_dorsal_rind", "19A"), ("14Ac", "14A"), ("13B", "13B"), ("22A_primary", "22A"),
    ("20A.22A", None), ("CO_claw_flx", None), ("descending", None), (float("nan"), None),
])
def test_hemilineage_of(label, expected):
    assert vc.hemilineage_of(label) == expected


def test_transmitter_names():
    assert vc.normalize_transmitter("Ach") == "acetylcholine"
    assert vc.normalize_transmitter("GABA") == "gaba"
    assert vc.normalize_transmitter("glutamate") == "glutamate"
    assert vc.normalize_transmitter("unclear") is None
    with pytest.raises(ValueError, match="unknown transmitter 'dopamine'"):
        vc.normalize_transmitter("dopamine")
    assert vc.normalize_transmitter("octopamine", {"octopamine": 1}) == "octopamine"


def test_missing_columns_are_named(fanc_table):
    with pytest.raises(ValueError, match="pre_NT"):
        vc.connectome_from_premotor_table(fanc_table.drop(columns=["pre_NT"]), {})


def test_mn_module_dictionary_maps_to_known_modules():
    modules = vc.load_fanc_mn_modules()
    assert len(modules) == 69
    assert len(set(modules.values())) == 14
    for name in modules.values():
        canonical_module(name)


def test_pugliese_fanc_nodes():
    c = vc.load_pugliese_fanc_t1l()
    assert c.n_nodes == 803 and c.n_edges == 0
    assert c.node_attrs["is_motor"].sum() == 69
    assert c.node_type[0] == "DNg100"
    assert (c.node_attrs["sign"][c.node_type == "19A"] == -1).all()


def test_pugliese_manc_nodes_use_predicted_nt_then_hemilineage():
    nodes = pd.read_csv(connectome_path(vc.PUGLIESE_MANC_NODES_FILE))
    c = vc.load_pugliese_manc_t1()
    assert c.n_nodes == 4604
    assert c.node_attrs["is_motor"].sum() == 144
    gaba = (nodes["predictedNt"] == "gaba").to_numpy()
    assert (c.node_attrs["sign"][gaba] == -1).all()
    unknown = nodes["predictedNt"].isin(["unknown", "unclear"]).to_numpy()
    fallback = unknown & nodes["hemilineage"].isin(["19A", "13A", "03A"]).to_numpy()
    sources = c.node_attrs["transmitter_source"]
    assert fallback.any()
    assert (sources[fallback] == "hemilineage").all()
    assert (sources[unknown] != "annotated").all()


# -- synthetic formats ---------------------------------------------------------

def _pugliese_fanc_nodes(n=4):
    return pd.DataFrame({
        "w_type": ["DNg100", "03A", "19A", "trochanter_flexor"][:n],
        "sign": [1, 1, -1, 1][:n],
        "class": ["descending neuron", "intrinsic neuron", "intrinsic neuron", "motor neuron"][:n],
        "surf_area_um2": [10.0, 5.0, 6.0, 20.0][:n],
        "motor module": [np.nan, np.nan, np.nan, "femur/tr flex"][:n],
        "step contribution": [np.nan, np.nan, np.nan, "swing"][:n],
    })


def _weights():
    w = np.zeros((4, 4))
    w[0, 1] = 12  # DN -> 03A
    w[1, 2] = 5  # 03A -> 19A
    w[2, 1] = 7  # 19A -> 03A (inhibitory)
    w[1, 3] = 9  # 03A -> MN
    return w


@pytest.mark.parametrize("fmt", ["array", "npy", "npz_dense", "npz_sparse", "csv"])
def test_weight_matrix_formats(tmp_path, fmt):
    w = _weights()
    if fmt == "array":
        source = w
    elif fmt == "npy":
        source = tmp_path / "W.npy"
        np.save(source, w)
    elif fmt == "npz_dense":
        source = tmp_path / "W.npz"
        np.savez(source, W=w)
    elif fmt == "npz_sparse":
        source = tmp_path / "W.npz"
        scipy.sparse.save_npz(source, scipy.sparse.csr_matrix(w))
    else:
        source = tmp_path / "W.csv"
        pd.DataFrame(w, columns=[f"n{i}" for i in range(4)]).to_csv(source)  # header + index
    c = vc.connectome_from_pugliese_fanc_nodes(_pugliese_fanc_nodes(), source)
    edges = {(int(s), int(d)): (float(n), int(g)) for s, d, n, g in
             zip(c.edge_src, c.edge_dst, c.edge_count, c.edge_sign)}
    assert edges == {(0, 1): (12.0, 1), (1, 2): (5.0, 1), (2, 1): (7.0, -1), (1, 3): (9.0, 1)}


def test_signed_weight_matrix_must_obey_dale():
    w = _weights()
    w[2, 1] = -7  # signed and consistent: accepted
    c = vc.connectome_from_pugliese_fanc_nodes(_pugliese_fanc_nodes(), w)
    assert c.signed_weight_matrix()[1, 2] == -7
    w[1, 2] = -5  # 03A is cholinergic: contradiction
    with pytest.raises(ValueError, match="disagrees with the sign"):
        vc.connectome_from_pugliese_fanc_nodes(_pugliese_fanc_nodes(), w)


def test_weight_matrix_shape_errors(tmp_path):
    with pytest.raises(ValueError, match="node table has 4 rows"):
        vc.connectome_from_pugliese_fanc_nodes(_pugliese_fanc_nodes(), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="square"):
        vc.load_weight_matrix(np.zeros((3, 4)))
    bad = tmp_path / "W.txt"
    bad.write_text("1")
    with pytest.raises(ValueError, match=".npy, .npz or .csv"):
        vc.load_weight_matrix(bad)


def _neuprint():
    neurons = pd.DataFrame({
        "bodyId": [10, 11, 12, 13],
        "type": ["DNg100", "IN03A001", "IN19A002", "MNfl01"],
        "class": ["descending neuron", "intrinsic neuron", "intrinsic neuron", "motor neuron"],
        "predictedNt": ["acetylcholine", "acetylcholine", "unknown", "acetylcholine"],
        "hemilineage": [None, "03A", "19A", None],
    })
    edges = pd.DataFrame({
        "bodyId_pre": [10, 11, 11, 12, 11],
        "bodyId_post": [11, 12, 12, 11, 13],
        "roi": ["LegNp(T1)(L)", "LegNp(T1)(L)", "LegNp(T1)(R)", "LegNp(T1)(L)", "LegNp(T1)(L)"],
        "weight": [30, 4, 2, 8, 11],
    })
    return neurons, edges


def test_neuprint_edge_list(tmp_path):
    neurons, edges = _neuprint()
    neurons.to_csv(tmp_path / "neurons.csv", index=False)
    edges.to_csv(tmp_path / "edges.csv", index=False)
    c = vc.load_neuprint_edges(tmp_path / "neurons.csv", tmp_path / "edges.csv", lacin={"19A": "gaba"})
    w = c.signed_weight_matrix()  # (post, pre)
    assert w[1, 0] == 30
    assert w[2, 1] == 6  # two ROI rows summed
    assert w[1, 2] == -8  # 19A: sign from its hemilineage
    assert w[3, 1] == 11
    assert c.node_attrs["transmitter_source"][2] == "hemilineage"
    assert c.node_attrs["is_motor"].tolist() == [False, False, False, True]


def test_neuprint_errors():
    neurons, edges = _neuprint()
    with pytest.raises(ValueError, match="weight"):
        vc.load_neuprint_edges(neurons, edges.drop(columns=["weight"]))
    with pytest.raises(ValueError, match="transmitter column"):
        vc.load_neuprint_edges(neurons.drop(columns=["predictedNt"]), edges)
    bad = edges.copy()
    bad.loc[0, "bodyId_pre"] = 99
    with pytest.raises(ValueError, match="missing from the neuron table"):
        vc.load_neuprint_edges(neurons, bad)
    odd = neurons.copy()
    odd.loc[1, "predictedNt"] = "serotonin"
    with pytest.raises(ValueError, match="unknown transmitter 'serotonin'"):
        vc.load_neuprint_edges(odd, edges)
    with pytest.raises(ValueError, match="no transmitter annotation"):
        vc.load_neuprint_edges(neurons, edges, lacin={}, unannotated="error")

"""Reading flyvis's checkpoints without torch (:mod:`connectofly.circuits.flyvis_checkpoint`).

The fixture ``tests/data/flyvis_model/chkpts/chkpt_00000`` is flyvis 1.2.0's
network at extent 2 after four of its own training steps, saved by its
``MultiTaskSolver.checkpoint``; ``flyvis_checkpoint_responses.npz`` holds that
network's responses and flyvis's parameter keys. Both are written by
``benchmarks/optic_lobe_vs_flyvis.py --checkpoint-fixture tests/data``.
"""

from __future__ import annotations

import copy
import pickle
import zipfile
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.circuits import flyvis_checkpoint as fc
from connectofly.circuits import optic_lobe as ol

DATA = Path(__file__).parent / "data"
MODEL_DIR = DATA / "flyvis_model"
CHECKPOINT = MODEL_DIR / "chkpts" / "chkpt_00000"
RESPONSES = DATA / "flyvis_checkpoint_responses.npz"
PARITY_TOLERANCE = 1e-6  # measured max |delta| 3.6e-7 (float32 round-off)


@pytest.fixture(scope="module")
def spec() -> ol.OpticLobeSpec:
    return ol.read_spec()


@pytest.fixture(scope="module")
def checkpoint():
    return fc.read_torch_checkpoint(CHECKPOINT)


@pytest.fixture(scope="module")
def fixture():
    return dict(np.load(RESPONSES))


def _responses(trainable: ol.Trainable, fixture: dict, spec) -> tuple[np.ndarray, np.ndarray]:
    dt = float(fixture["dt"])
    params = ol.OpticLobeParams(trainable, ol.build_graph(ol.load_connectome(int(fixture["extent"]), spec)))
    steady = ol.steady_state(params, dt)
    _, responses = jax.vmap(ol.simulate, in_axes=(None, None, 0, None))(params, steady, jnp.asarray(fixture["stimulus"]), dt)
    return np.asarray(steady.voltage), np.asarray(responses)


def test_the_checkpoint_holds_flyvis_solver_layout(checkpoint):
    assert set(checkpoint) == {"network", "decoder", "optim", "time", "val_loss", "iteration", "dt", "activity_optim"}
    network = checkpoint["network"]
    assert list(network) == ["nodes_bias", "nodes_time_const", "edges_sign", "edges_syn_count", "edges_syn_strength"]
    assert all(v.dtype == np.float32 for v in network.values())
    assert checkpoint["decoder"]["flow"]["base.1.num_batches_tracked"].dtype == np.int64  # a LongStorage
    assert checkpoint["decoder"]["flow"]["base.0.weight"].shape == (8, 34, 5, 5)
    assert checkpoint["optim"]["state"][4]["exp_avg"].shape == (604,)
    assert checkpoint["iteration"] == 3 and isinstance(checkpoint["val_loss"], np.float64)


def test_our_layout_is_flyvis_grouping(spec, fixture):
    layout = fc.flyvis_layout(spec, int(fixture["extent"]))
    assert list(layout.cell_types) == list(fixture["cell_types"]) == list(spec.cell_types)
    assert layout.edge_names(spec) == list(fixture["syn_strength_keys"]) == list(fixture["edge_types"])
    assert layout.offset_names(spec) == list(fixture["syn_count_keys"])


def test_the_loaded_values_are_flyvis_trained_parameters(spec, checkpoint, fixture):
    trainable = fc.load_flyvis_checkpoint(MODEL_DIR, spec)
    expected = ol.with_flyvis_parameters(trainable, spec, fixture)  # by name, from flyvis's named_parameters
    for got, want in zip(trainable, expected):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # the training steps moved them away from flyvis's initialization
    assert np.abs(np.asarray(trainable.time_const) - 0.05).max() > 1e-3


def test_responses_match_flyvis_trained_network(spec, fixture):
    """Every neuron, every frame: the trained network's steady state and two stimuli."""
    steady, responses = _responses(fc.load_flyvis_checkpoint(CHECKPOINT, spec), fixture, spec)
    assert responses.shape == fixture["responses"].shape == (2, 20, 1203)
    np.testing.assert_allclose(steady, fixture["steady"], rtol=0, atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(responses, fixture["responses"], rtol=0, atol=PARITY_TOLERANCE)
    assert np.abs(fixture["responses"] - fixture["steady"]).max() > 0.1  # the stimuli drive the network


def test_the_parity_check_catches_a_strength_off_by_1e_3(spec, checkpoint, fixture):
    broken = copy.deepcopy(checkpoint)
    strength = broken["network"]["edges_syn_strength"]
    strength[int(np.argmax(strength))] += 1e-3
    _, responses = _responses(fc.trainable_from_checkpoint(broken, spec), fixture, spec)
    assert np.abs(responses - fixture["responses"]).max() > PARITY_TOLERANCE


def test_a_model_folder_with_several_checkpoints_needs_the_validation_loss(tmp_path):
    chkpts = tmp_path / "model" / "chkpts"
    chkpts.mkdir(parents=True)
    for i in (0, 1):
        (chkpts / f"chkpt_{i:05}").write_bytes(CHECKPOINT.read_bytes())
    with pytest.raises(fc.CheckpointError, match="2 checkpoints .*validation"):
        fc.find_checkpoint(tmp_path / "model")
    assert fc.find_checkpoint(chkpts / "chkpt_00001") == chkpts / "chkpt_00001"
    with pytest.raises(fc.CheckpointError, match="no flyvis checkpoint"):
        fc.find_checkpoint(tmp_path)
    with pytest.raises(fc.CheckpointError, match="no such file or folder"):
        fc.find_checkpoint(tmp_path / "missing")


def test_the_best_checkpoint_is_flyvis_least_validation_loss(tmp_path):
    import h5py  # the flyvis extra; the test extra has it

    chkpts = tmp_path / "chkpts"
    chkpts.mkdir()
    for i in range(3):
        (chkpts / f"chkpt_{i:05}").write_bytes(CHECKPOINT.read_bytes())
    (tmp_path / "validation").mkdir()
    with h5py.File(tmp_path / "validation" / "loss.h5", "w") as file:
        file["data"] = np.array([3.0, 1.0, 2.0])
    assert fc.find_checkpoint(tmp_path) == chkpts / "chkpt_00001"
    with h5py.File(tmp_path / "validation" / "epe.h5", "w") as file:  # flyvis ranks by epe first
        file["data"] = np.array([3.0, 2.0, 1.0])
    assert fc.find_checkpoint(tmp_path) == chkpts / "chkpt_00002"


def test_the_lobe_choice_and_the_import_command_read_flyvis_models(spec, tmp_path, capsys):
    from connectofly.agents.optic_lobe_vision import lobe_parameters
    from connectofly.cli.main import main

    expected = fc.load_flyvis_checkpoint(CHECKPOINT, spec)
    out = tmp_path / "lobe.npz"
    assert main(["lobe-import", str(MODEL_DIR), "--out", str(out)]) == 0
    assert str(CHECKPOINT) in capsys.readouterr().out
    for source in (MODEL_DIR, str(CHECKPOINT), out):
        for got, want in zip(lobe_parameters(source), expected):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# -- Refusals ------------------------------------------------------------------------


def test_an_unknown_layout_is_refused_naming_the_keys(spec, checkpoint):
    other = {"model": checkpoint["network"], "epoch": 3}
    with pytest.raises(fc.CheckpointError, match=r"no \['nodes_bias'.*found keys \['model', 'epoch'\]"):
        fc.trainable_from_checkpoint(other, spec)
    renamed = {**checkpoint, "network": {"weights": checkpoint["network"]["edges_syn_strength"]}}
    with pytest.raises(fc.CheckpointError, match=r"found keys .*'network\.weights'"):
        fc.trainable_from_checkpoint(renamed, spec)
    with pytest.raises(fc.CheckpointError, match="holds a list"):
        fc.trainable_from_checkpoint([1, 2], spec)


def test_a_bare_network_state_dict_is_read(spec, checkpoint):
    bare = fc.trainable_from_checkpoint(checkpoint["network"], spec)
    np.testing.assert_array_equal(bare.syn_strength, fc.trainable_from_checkpoint(checkpoint, spec).syn_strength)


@pytest.mark.parametrize("field, n", [
    ("nodes_bias", 64), ("nodes_time_const", 66), ("edges_syn_strength", 600), ("edges_sign", 603),
    ("edges_syn_count", 2300),
])
def test_parameters_of_another_length_are_refused_naming_the_field(spec, checkpoint, field, n):
    broken = copy.deepcopy(checkpoint)
    values = broken["network"][field]
    broken["network"][field] = np.resize(values, n)
    with pytest.raises(fc.CheckpointError, match=f"{field} has {n} values"):
        fc.trainable_from_checkpoint(broken, spec)


def test_trained_synapse_counts_or_other_signs_are_refused(spec, checkpoint):
    counts = copy.deepcopy(checkpoint)
    counts["network"]["edges_syn_count"][10] += 0.1
    with pytest.raises(fc.CheckpointError, match="edges_syn_count differs .* at 1 offsets"):
        fc.trainable_from_checkpoint(counts, spec)
    signs = copy.deepcopy(checkpoint)
    signs["network"]["edges_sign"][3] *= -1
    with pytest.raises(fc.CheckpointError, match="edges_sign differs .* R1>Am"):
        fc.trainable_from_checkpoint(signs, spec)
    nan = copy.deepcopy(checkpoint)
    nan["network"]["nodes_bias"][0] = np.nan
    with pytest.raises(fc.CheckpointError, match="nodes_bias holds NaN"):
        fc.trainable_from_checkpoint(nan, spec)


def test_files_that_are_not_torch_checkpoints_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(fc.CheckpointError, match="not a torch checkpoint"):
        fc.read_torch_checkpoint(text)
    npz = tmp_path / "trainable.npz"
    np.savez(npz, bias=np.zeros(3))
    with pytest.raises(fc.CheckpointError, match="a zip archive, but not a torch checkpoint"):
        fc.read_torch_checkpoint(npz)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(fc.LEGACY_TORCH_MAGIC + b"\x00" * 16)
    with pytest.raises(fc.CheckpointError, match="legacy format"):
        fc.read_torch_checkpoint(legacy)
    cut = tmp_path / "cut"
    cut.write_bytes(CHECKPOINT.read_bytes()[:5000])
    with pytest.raises(fc.CheckpointError, match="damaged"):
        fc.read_torch_checkpoint(cut)
    assert fc.is_flyvis_checkpoint(CHECKPOINT) and fc.is_flyvis_checkpoint(MODEL_DIR)
    assert not fc.is_flyvis_checkpoint(npz) and not fc.is_flyvis_checkpoint(text)


def test_a_pickle_of_other_classes_is_refused_by_name(tmp_path):
    path = tmp_path / "chkpt_00000"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("chkpt_00000/data.pkl", pickle.dumps({"network": Counter()}, protocol=2))
    with pytest.raises(fc.CheckpointError, match=r"holds a collections\.Counter"):
        fc.read_torch_checkpoint(path)

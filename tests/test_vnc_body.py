"""Body-in-the-loop tuning of the VNC's MN stage (evolution strategies on the C physics)."""

import json

import jax
import numpy as np
import pytest

from connectofly.circuits import vnc
from connectofly.training import vnc_body, vnc_evaluate


@pytest.fixture(scope="module")
def model():
    return vnc_evaluate.load_model()


def test_offsets_scale_excitability_and_shift_resting_drive_per_segment_and_pool(model):
    pools = vnc_body.pools(model.mmap)
    offsets = np.zeros((2, 3, len(pools)))
    same = vnc_body.with_offsets(model.params, model.mmap, offsets).trainable
    np.testing.assert_allclose(jax.nn.softplus(same["motor_gain"]),
                               jax.nn.softplus(model.params.trainable["motor_gain"]), rtol=2e-5)
    np.testing.assert_array_equal(same["motor_bias"], model.params.trainable["motor_bias"])
    offsets[0, 1, 2] = np.log(2.0)  # middle segment, third pool: excitability × 2
    offsets[1, 2, 0] = 0.25  # hind segment, first pool: resting drive + 0.25
    tuned = vnc_body.with_offsets(model.params, model.mmap, offsets)
    slot = np.asarray(model.mmap.slot)
    before = np.asarray(jax.nn.softplus(model.params.trainable["motor_gain"]))
    after = np.asarray(jax.nn.softplus(tuned.trainable["motor_gain"]))
    expected = before.copy()
    expected[1, slot == pools[2]] *= 2.0
    np.testing.assert_allclose(after, expected, rtol=2e-5)
    bias = np.asarray(model.params.trainable["motor_bias"]).copy()
    bias[2, slot == pools[0]] += 0.25
    np.testing.assert_allclose(tuned.trainable["motor_bias"], bias, atol=1e-6)
    untouched = set(model.params.trainable) - {"motor_gain", "motor_bias"}
    assert all(tuned.trainable[k] is model.params.trainable[k] for k in untouched)
    assert not any(vnc.sign_violations(tuned).values())


def test_centred_ranks():
    np.testing.assert_allclose(vnc_body.centred_ranks(np.array([3.0, -1.0, 7.0])), [0.0, -0.5, 0.5])


def test_tune_runs_on_the_body_and_resumes(tmp_path):
    """A real (tiny) search: two candidates of 0.1 s on the C body per generation, then one more generation."""
    config = vnc_body.BodyTuneConfig(drives=(1.5,), duration=0.1, population=2, generations=1, workers=1)
    path = vnc_evaluate.embedded_weights()
    _, history = vnc_body.tune(path, tmp_path, config, progress=False)
    assert [row["generation"] for row in history] == [1]
    first_centre = np.load(tmp_path / "state.npz")["centre"]
    assert np.abs(first_centre).max() > 0  # the Adam step moved the offsets
    with open(tmp_path / "history.jsonl", "a") as f:  # a run killed after writing generation 2's row, before its state
        f.write(json.dumps({"generation": 2, "centre_speed_mm_s": []}) + "\n")
    tuned, history = vnc_body.tune(path, tmp_path, config._replace(generations=2), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [row["generation"] for row in rows] == [1, 2]
    assert len(rows[1]["centre_speed_mm_s"]) == 1 and np.isfinite(rows[1]["centre_speed_mm_s"][0])
    assert not np.array_equal(np.load(tmp_path / "state.npz")["centre"], first_centre)
    assert not any(vnc.sign_violations(tuned).values())
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_tune_refuses_bad_configs(tmp_path):
    with pytest.raises(ValueError, match="even"):
        vnc_body.tune(vnc_evaluate.embedded_weights(), tmp_path, vnc_body.BodyTuneConfig(population=3))
    with pytest.raises(ValueError, match="generations"):
        vnc_body.tune(vnc_evaluate.embedded_weights(), tmp_path, vnc_body.BodyTuneConfig(generations=0))


def test_cli_tunes_the_embedded_weights_on_the_body(tmp_path):
    """``connectofly vnc --init embedded --steps 0 --body-generations 1``: no in-air training, one ES generation,
    then stage 3 on the tuned weights; bad ES options are refused before anything runs."""
    from connectofly.cli.main import main

    out = tmp_path / "run"
    assert main(["vnc", "--out", str(out), "--init", "embedded", "--steps", "0", "--body-generations", "1",
                 "--body-population", "2", "--body-drives", "1.5", "--body-duration", "0.3", "--drives", "1.5",
                 "--duration", "0.6", "--no-video"]) == 0
    assert np.load(out / "body_tuning" / "state.npz")["generation"] == 1
    assert (out / "body_tuning" / "fitness.png").exists() and (out / "summary.json").exists()
    start = np.load(out / "body_tuning" / "start.npz")
    np.testing.assert_array_equal(start["motor_bias"], np.load(vnc_evaluate.embedded_weights())["motor_bias"])
    tuned = np.load(out / "params.npz")
    assert not np.array_equal(tuned["motor_bias"], start["motor_bias"])  # the ES step was saved
    np.testing.assert_array_equal(tuned["recurrent"], start["recurrent"])  # and only the MN stage changed
    assert main(["vnc", "--out", str(tmp_path / "x"), "--steps", "0"]) == 2  # nothing to use as it is
    for bad in (["--body-population", "3"], ["--body-duration", "0"]):
        assert main(["vnc", "--out", str(tmp_path / "x"), "--init", "embedded", "--steps", "0",
                     "--body-generations", "1", *bad]) == 2
    assert not (tmp_path / "x").exists()

"""BPTT of the descending readout through eyes, optic lobes, CPG and MJX physics.

The whole trainer, gradient included, compiles for about four minutes on a
2-core CPU: it is in the slow tier. The fast tier checks its parts: the gains'
parametrization and the cost here, the gradient through MJX in
tests/test_gradients.py, through the lobes in tests/test_optic_lobe.py, through
the eyes in tests/test_eye.py, and the forward loop in tests/test_mjx_closed_loop.py.
"""

import argparse
import json

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from connectofly.agents.connectome import embedded_readout, load_readout, resting_readout, save_readout
from connectofly.agents.cpg import tripod_params, with_descending_drive
from connectofly.agents.optic_lobe_vision import lobe_parameters
from connectofly.circuits.optic_lobe import read_spec
from connectofly.cli.train import run_bptt
from connectofly.training import bptt_readout

# 5 frames (the compile dominates), the gradient through the body cut every 2
SHORT = bptt_readout.BPTTConfig(updates=2, horizon=0.01, batch=1, eval_layouts=2, gradient_window=0.004)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):  # slow: compiling the update takes minutes
    out = tmp_path_factory.mktemp("bptt")
    return out, bptt_readout.run(SHORT, out, progress=False)


@pytest.mark.slow
def test_a_run_writes_a_readout_that_keeps_the_start_sparsity(short_run):
    out, summary = short_run
    for name in ("readout.npz", "history.jsonl", "learning_curve.png", "summary.json"):
        assert (out / name).is_file(), name
    start = load_readout(embedded_readout("visual_taxis"))
    trained = load_readout(out / "readout.npz", read_spec().output_types)
    zero = np.asarray(start.weight) == 0
    np.testing.assert_array_equal(np.asarray(trained.weight)[zero], 0.0)  # gains cannot grow connections
    # Adam moves each gain by at most about the learning rate per update, and most of them move.
    change = np.abs(np.asarray(trained.weight)[~zero] / np.asarray(start.weight)[~zero] - 1)
    assert np.mean(change > 1e-4) > 0.5
    assert change.max() <= 1.05 * SHORT.updates * SHORT.learning_rate
    assert float(trained.bias) != pytest.approx(float(start.bias), abs=1e-4)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == SHORT.updates
    assert all(np.isfinite(row["loss"]) and min(row["gradient_norms"]) > 0 for row in history)
    # 10 ms from standing: the fly has barely moved or turned, so the cost is the distance
    # ratio 1 plus the heading error 1 - cos(bearing) of each held-out layout, seen from the
    # thorax in the keyframe pose (MuJoCo C)
    world = bptt_readout.make_world()
    trajectories, _ = bptt_readout.sample_batch(world, jax.random.key(bptt_readout.HELD_OUT_SEED), SHORT.eval_layouts)
    data = mujoco.MjData(world.model)
    data.qpos[:] = world.model.key_qpos[0]
    mujoco.mj_forward(world.model, data)
    thorax = world.body.index.thorax_body
    offset = np.asarray(trajectories.origin)[:, 0] - data.xpos[thorax, :2]
    heading = data.xmat[thorax].reshape(3, 3)[:2, 0]
    cos_bearing = offset @ heading / np.linalg.norm(offset, axis=1) / np.linalg.norm(heading)
    np.testing.assert_allclose(summary["held_out_loss_per_layout"]["before"], 2.0 - cos_bearing, atol=0.01)
    assert summary["n_frames"] == 5


def test_gains_scale_the_start_weights_and_keep_their_zeros():
    start = load_readout(embedded_readout("visual_taxis"))
    gain = jax.random.normal(jax.random.key(0), start.weight.shape)
    trained = bptt_readout.apply(start, bptt_readout.Trainable(gain, jnp.float32(0.25)))
    zero = np.asarray(start.weight) == 0
    assert zero.any() and (~zero).any()
    np.testing.assert_array_equal(np.asarray(trained.weight)[zero], 0.0)  # gains cannot grow connections
    np.testing.assert_allclose(np.asarray(trained.weight), np.asarray(start.weight) * (1 + np.asarray(gain)), rtol=1e-6)
    assert float(trained.bias) == 0.25


def test_approach_cost_is_the_distance_ratio_plus_the_heading_error():
    objects = np.zeros((3, 2))
    toward = np.array([[-10.0, 0.0], [-5.0, 0.0], [-5.0, 0.0]])  # walks halfway, facing the object
    facing = np.tile([1.0, 0.0], (3, 1))
    # distances 10, 5, 5 over a start of 10; bearing 0 throughout
    assert float(bptt_readout.approach_cost(toward, facing, objects)) == pytest.approx((1 + 0.5 + 0.5) / 3)
    away = -facing  # the same path facing away: heading error 1 - cos(180 deg) = 2
    assert float(bptt_readout.approach_cost(toward, away, objects)) == pytest.approx((1 + 0.5 + 0.5) / 3 + 2)
    sideways = np.tile([0.0, 1.0], (3, 1))  # 90 deg off: 1 - cos = 1
    assert float(bptt_readout.approach_cost(toward, sideways, objects)) == pytest.approx((1 + 0.5 + 0.5) / 3 + 1)


def test_config_and_start_readout_are_checked(tmp_path):
    with pytest.raises(ValueError, match="horizon"):
        bptt_readout.BPTTConfig(horizon=0.001)
    with pytest.raises(ValueError, match="updates"):
        bptt_readout.BPTTConfig(updates=0)
    rest = tmp_path / "rest.npz"
    output_types = read_spec().output_types
    save_readout(rest, resting_readout(len(output_types)), output_types, lobe_parameters("untrained"))
    with pytest.raises(ValueError, match="no nonzero weight"):
        bptt_readout.run(SHORT, tmp_path / "out", rest, progress=False)
    assert not (tmp_path / "out").exists()


def _train_args(tmp_path, **overrides):
    values = {"algo": "bptt", "env": "VisualTaxis", "policy": "connectome", "start_readout": None, "updates": 1,
              "horizon": 0.01, "num_envs": 1, "learning_rate": None, "seed": 0, "output_dir": tmp_path,
              "run_name": None}
    return argparse.Namespace(**(values | overrides))


@pytest.mark.parametrize("overrides, message", [
    ({"env": "Walk"}, "visual envs"),
    ({"policy": "mlp"}, "--policy connectome"),
    ({"start_readout": "missing.npz"}, "no such file"),
])
def test_cli_refuses_what_bptt_cannot_train(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run_bptt(_train_args(tmp_path, **overrides))
    assert not any(tmp_path.iterdir())


def test_descending_drive_steers_the_cpg_under_jit_and_grad():
    params = tripod_params()
    drive = np.array([0.5, -1.0])
    plain = with_descending_drive(params, drive)
    traced = jax.jit(with_descending_drive)(params, jnp.asarray(drive))
    np.testing.assert_allclose(np.asarray(traced.amplitudes), plain.amplitudes)
    np.testing.assert_allclose(np.asarray(traced.frequencies), plain.frequencies)
    # d(sum of amplitudes)/d(drive): three legs per side, |drive| per leg
    gradient = jax.grad(lambda d: with_descending_drive(params, d).amplitudes.sum())(jnp.asarray(drive))
    np.testing.assert_allclose(np.asarray(gradient), [3.0, -3.0])

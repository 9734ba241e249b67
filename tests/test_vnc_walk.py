"""The VNC walking gait: target in muscle units, Fourier loss, training loop, body metrics."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.circuits import motor_map, vnc, vnc_connectome
from connectofly.envs.body import LEGS, N_JOINTS
from connectofly.envs.kinematics import load_step_kinematics
from connectofly.training import vnc_evaluate, vnc_rhythm, vnc_walk

DT = 1e-3


@pytest.fixture(scope="module")
def kin():
    return load_step_kinematics()


@pytest.fixture(scope="module")
def target(kin):
    return vnc_walk.gait_target(kin)


def _activations(signal: np.ndarray) -> np.ndarray:
    """(..., n_ch) signal → (..., n_ch, 2) activations that produce it (agonist, antagonist)."""
    return np.stack([np.maximum(signal, 0.0), np.maximum(-signal, 0.0)], axis=-1)


def test_gait_target_drives_the_motor_map_to_the_recorded_step(kin, target):
    """Target activations through the muscle stage's joint map give back the recorded angles.

    Where the target is inside the muscles' range the joint angle is exact;
    the claws grip in stance and release in swing.
    """
    mmap = motor_map.build_motor_map(["trochanter_flex"], np.ones(1))  # only the DoF tables are used
    phases = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    for phase in phases:
        bin_ = int(round(phase / (2 * np.pi) * target.signal.shape[0])) % target.signal.shape[0]
        action = np.asarray(motor_map.joint_action(mmap, jnp.asarray(_activations(target.signal[bin_])),
                                                   jnp.asarray(target.rest_action)))
        recorded = kin.table[bin_].reshape(-1)
        for leg_i, leg in enumerate(LEGS):
            for c, channel in enumerate(motor_map.CHANNELS):
                k = motor_map.dof_index(leg, channel)
                if channel.dof["front"] == motor_map.ADHESION:
                    stance = not kin.in_swing(np.full(len(LEGS), 2 * np.pi * bin_ / target.signal.shape[0]))[leg_i]
                    assert action[k] == float(stance)
                elif abs(target.signal[bin_, leg_i, c]) < vnc_walk.ACTIVATION_LIMIT - 1e-9:
                    assert action[k] == pytest.approx(recorded[k], abs=1e-6), (leg, channel.name)  # float32
    assert (np.abs(target.signal) <= vnc_walk.ACTIVATION_LIMIT).all()
    one_sided = [c for c, ch in enumerate(motor_map.CHANNELS) if not ch.antagonists]
    assert (target.signal[:, :, one_sided] >= 0).all()  # a lone agonist can only pull one way
    moved = np.flatnonzero(np.abs(mmap.joint_change).sum(axis=(0, 1)))
    unmoved = np.setdiff1d(np.arange(N_JOINTS), moved)
    low, high = kin.table.min(0).reshape(-1), kin.table.max(0).reshape(-1)
    np.testing.assert_allclose(target.rest_action[unmoved], 0.5 * (low + high)[unmoved])


def test_coupled_dofs_follow_the_recorded_step(kin, target):
    """The ThC channel's coupling ratios are the least-squares slopes of the recorded step, and the
    coupled DoF, driven through the motor map, tracks the recording better than holding it at rest."""
    mmap = motor_map.build_motor_map(["trochanter_flex"], np.ones(1))
    table = kin.table[:-1]
    thc = motor_map.CHANNELS[vnc_walk.THC]
    actions = np.stack([np.asarray(motor_map.joint_action(mmap, jnp.asarray(_activations(s)),
                                                          jnp.asarray(target.rest_action)))
                        for s in target.signal[::16]])
    for leg_i, leg in enumerate(LEGS):
        segment = motor_map.SEGMENT_OF_LEG[leg]
        main = motor_map.DOF_NAMES.index(thc.dof[segment])
        (dof, ratio), = thc.coupled[segment]
        j = motor_map.DOF_NAMES.index(dof)
        slope = np.polyfit(table[:, leg_i, main], table[:, leg_i, j], 1)[0]
        assert ratio == pytest.approx(slope, abs=0.01), (leg, dof)
        recorded = table[::16, leg_i, j]
        driven = actions[:, leg_i * 7 + j]
        held = target.rest_action[leg_i * 7 + j]
        assert np.mean((driven - recorded) ** 2) < 0.8 * np.mean((held - recorded) ** 2), leg


def _played_back(signal: np.ndarray, frequency: float, n_steps: int, phase0: float, reverse: bool = False):
    """(T, 6, n_ch) the step table played at ``frequency`` with the tripod offsets."""
    t = np.arange(n_steps) * DT
    theta = (-1 if reverse else 1) * 2 * np.pi * frequency * t + phase0
    legs = (theta[:, None] + vnc_walk.TRIPOD_OFFSET[None, :]) % (2 * np.pi)
    bins = (legs / (2 * np.pi) * signal.shape[0]).astype(int) % signal.shape[0]
    return signal[bins, np.arange(len(LEGS))[None, :]]


@pytest.mark.parametrize("reverse", [False, True])
def test_fourier_loss_is_zero_for_the_target_gait_at_any_start_phase(target, reverse):
    base = jnp.asarray(vnc_walk.harmonic_coefficients(target.signal, 2))
    condition = vnc_walk.condition_target(base, jnp.ones(2), jnp.asarray(reverse))
    frequency = 10.0
    for phase0 in (0.0, 2.0):
        walking = _played_back(target.signal, frequency, 1000, phase0, reverse)
        coeffs = vnc_walk.window_coefficients(jnp.asarray(walking), DT, frequency, 2)
        gait, leg, posture, amplitude = vnc_walk.gait_loss_terms(coeffs, condition)
        assert max(float(gait), float(leg), float(posture), float(amplitude)) < 0.02
    # the other direction, all legs in phase, a flat signal: far off
    wrong_way = _played_back(target.signal, frequency, 1000, 0.0, not reverse)
    gait, _, _, amplitude = vnc_walk.gait_loss_terms(
        vnc_walk.window_coefficients(jnp.asarray(wrong_way), DT, frequency, 2), condition)
    assert float(gait) > 0.8 and float(amplitude) < 0.02  # right amplitudes, wrong phases
    in_phase = target.signal[(np.arange(1000) * DT * frequency * target.signal.shape[0]).astype(int)
                             % target.signal.shape[0]]  # every leg at the same phase
    gait, leg, _, _ = vnc_walk.gait_loss_terms(vnc_walk.window_coefficients(jnp.asarray(in_phase), DT, frequency, 2),
                                               vnc_walk.condition_target(base, jnp.ones(2), jnp.asarray(False)))
    assert float(gait) > 0.5  # the tripod is missing
    flat = jnp.broadcast_to(base[0].real, (1000, *base.shape[1:]))
    gait, leg, posture, amplitude = vnc_walk.gait_loss_terms(vnc_walk.window_coefficients(flat, DT, frequency, 2),
                                                             condition)
    assert float(posture) < 0.02 and float(gait) == pytest.approx(float(leg), rel=1e-3) and float(gait) > 1.0
    assert float(amplitude) == pytest.approx(1.0, abs=0.05)  # no step: the whole amplitude is missing


def test_turning_target_shrinks_the_steered_side_only(target):
    base = jnp.asarray(vnc_walk.harmonic_coefficients(target.signal, 2))
    left = np.asarray(vnc_walk.condition_target(base, jnp.asarray([0.3, 1.0]), jnp.asarray(False)))
    is_left = np.array([leg.startswith("l") for leg in LEGS])
    np.testing.assert_allclose(left[1:, is_left], 0.3 * np.asarray(base)[1:, is_left], atol=1e-7)
    np.testing.assert_allclose(left[1:, ~is_left], np.asarray(base)[1:, ~is_left], atol=1e-7)
    np.testing.assert_allclose(left[0], np.asarray(base)[0], atol=1e-7)  # posture unchanged


def test_conditions_cover_drive_levels_steering_and_backward():
    config = vnc_walk.GaitConfig()
    conditions = vnc_walk.training_conditions(config)
    assert conditions.names == ("forward 1", "forward 1.5", "forward 2", "steer left", "steer right", "backward")
    freq = np.asarray(conditions.frequency)
    assert freq[0] == config.freq_low and freq[2] == config.freq_high and freq[0] < freq[1] < freq[2]
    assert np.asarray(conditions.reverse).tolist() == [False] * 5 + [True]


def test_phase_matrix_and_tripod_index():
    t = np.arange(2000) * DT
    tripod = np.sin(2 * np.pi * 10 * t[:, None] + vnc_walk.TRIPOD_OFFSET[None, :])
    phases = vnc_evaluate.phase_matrix(tripod, DT, 10.0)
    np.testing.assert_allclose(np.cos(np.radians(phases - vnc_evaluate.TRIPOD_PHASE)), 1.0, atol=1e-6)
    assert vnc_evaluate.tripod_index(phases) == pytest.approx(1.0)
    in_phase = np.repeat(np.sin(2 * np.pi * 10 * t)[:, None], 6, axis=1)
    # 6 pairs within a tripod (cos 0 = 1), 9 across (cos 180 = -1): (6 - 9) / 15
    assert vnc_evaluate.tripod_index(vnc_evaluate.phase_matrix(in_phase, DT, 10.0)) == pytest.approx(-0.2)
    assert np.isnan(vnc_evaluate.phase_matrix(in_phase, DT, 0.0)).all()


def test_dominant_frequency():
    assert vnc_evaluate.dominant_frequency(np.zeros((0, 3)), DT) == 0.0  # a run that fell before the transient ended
    t = np.arange(1500) * DT
    x = np.stack([np.sin(2 * np.pi * 9.3 * t), 0.3 * np.sin(2 * np.pi * 18.6 * t + 1.0)], axis=1)
    assert vnc_evaluate.dominant_frequency(x, DT) == pytest.approx(9.3, abs=0.1)
    assert vnc_evaluate.dominant_frequency(np.ones((1500, 2)), DT) == 0.0


def test_recorded_step_is_a_tripod_by_the_stance_command(target):
    walking = _played_back(target.signal, 10.0, 2000, 0.0)
    phases = vnc_evaluate.phase_matrix(walking[:, :, vnc_walk.CLAW], DT, 10.0)
    assert vnc_evaluate.tripod_index(phases) > 0.95


@pytest.fixture(scope="module")
def six_leg_model():
    one_leg, mmap, spec = vnc_rhythm.build(0)
    six = vnc_walk.six_legs(one_leg, spec, vnc_connectome.load_fanc_t1l_premotor_to_mn())
    return six, mmap, spec


def test_six_legs_share_the_front_leg_parameters_and_seed_the_coupling(six_leg_model):
    six, _, spec = six_leg_model
    for name in ("descending", "motor_bias", "synapse_gain"):  # per segment: the front's everywhere
        per_segment = np.asarray(six.trainable[name])
        np.testing.assert_array_equal(per_segment[1], per_segment[0], err_msg=name)
        np.testing.assert_array_equal(per_segment[2], per_segment[0], err_msg=name)
    w = np.asarray(vnc.coupling_weights(six))
    e = np.isin(spec.premotor_hemilineage, vnc_rhythm.CORE_EXCITATORY)
    i = np.isin(spec.premotor_hemilineage, vnc_rhythm.CORE_INHIBITORY)
    np.testing.assert_allclose(w[:, e][:, :, i].sum(axis=2), -vnc_walk.TRIPOD_COUPLING, rtol=1e-5)
    assert vnc.sign_violations(six) == {k: 0 for k in vnc.sign_violations(six)}


def test_parameters_saved_when_shared_by_segments_still_load(six_leg_model, tmp_path):
    """Files from before MN biases were per segment and premotor → MN strengths per edge and segment
    (one ``premotor_gain`` per source) give every segment the same biases and every edge its source's strength."""
    six, _, spec = six_leg_model
    per_source = np.linspace(0, 2, spec.n_premotor + spec.n_sensory)
    bias = np.linspace(-1, 1, spec.n_motor)
    np.savez(tmp_path / "old.npz", motor_bias=bias, premotor_gain=per_source)
    loaded = vnc_rhythm.load_trainable(six, str(tmp_path / "old.npz")).trainable
    np.testing.assert_allclose(np.asarray(loaded["motor_bias"]), np.broadcast_to(bias, (3, bias.size)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded["synapse_gain"]),
                               np.broadcast_to(per_source[spec.edge_src], (3, len(spec.edge_src))), rtol=1e-6)
    for wrong in ({"motor_bias": np.zeros(spec.n_motor + 1)}, {"premotor_gain": np.zeros(3)}):
        np.savez(tmp_path / "wrong.npz", **wrong)
        with pytest.raises(ValueError, match="does not fit"):
            vnc_rhythm.load_trainable(six, str(tmp_path / "wrong.npz"))


def test_revive_makes_silent_and_unexcitable_mns_fire_again(six_leg_model):
    """An MN silenced on the hind legs (bias far below threshold) or made unexcitable on the front legs
    is given back excitability and a bias that puts it at threshold half the time; others are untouched."""
    six, mmap, spec = six_leg_model
    config = vnc_walk.GaitConfig(duration=0.5, transient=0.2, forward_drives=(1.0, 2.0))
    t = six.trainable
    silent, unexcitable = 5, 7
    broken = six._replace(trainable={**t, "motor_bias": t["motor_bias"].at[2, silent].set(-50.0),
                                     "motor_gain": t["motor_gain"].at[0, unexcitable].set(-10.0)})
    revived_params, revived = vnc_walk.revive_motor_neurons(broken, mmap, spec.n_sensory, config)
    assert revived[2, silent] and revived[0, unexcitable]
    kept = ~revived
    np.testing.assert_array_equal(np.asarray(revived_params.trainable["motor_bias"])[kept],
                                  np.asarray(broken.trainable["motor_bias"])[kept])
    np.testing.assert_allclose(np.asarray(jax.nn.softplus(revived_params.trainable["motor_gain"]))[revived], 1.0,
                               rtol=1e-5)
    key = jax.random.PRNGKey(1)
    before = vnc_rhythm.simulate_in_air(broken, vnc_rhythm.forward_drive(1.5), 500, DT, spec.n_sensory, key, 0.3)
    after = vnc_rhythm.simulate_in_air(revived_params, vnc_rhythm.forward_drive(1.5), 500, DT, spec.n_sensory, key, 0.3)
    hind, front = LEGS.index("lh"), LEGS.index("lf")
    assert np.asarray(before.mn_rate)[200:, hind, silent].max() == 0
    active = np.asarray(after.mn_rate)[200:, hind, silent] > np.asarray(mmap.threshold)[silent]
    assert 0.1 < active.mean() < 0.9  # fires in part of the cycle, not always, not never
    assert np.asarray(after.mn_rate)[200:, front, unexcitable].std() > 10 * np.asarray(before.mn_rate)[200:, front, unexcitable].std()


def _channel_phase_error(params, mmap, n_sensory, leg: str, channel: str) -> float:
    """|phase of ``channel`` − phase of CTr flexion| minus the same in the target step, degrees (in air, drive 1.5)."""
    out = vnc_rhythm.simulate_in_air(params, vnc_rhythm.forward_drive(1.5), 1000, DT, n_sensory,
                                     jax.random.PRNGKey(3), 0.3)
    signal = vnc_walk.channel_signal(vnc_walk.muscle_activations(mmap, out.mn_rate, DT))[400:, LEGS.index(leg)]
    measured = np.asarray(vnc_walk.window_coefficients(signal, DT, 10.5, 1))[1]
    target = vnc_walk.harmonic_coefficients(vnc_walk.gait_target(load_step_kinematics()).signal, 1)[1, LEGS.index(leg)]
    c, ctr = motor_map.CHANNEL_NAMES.index(channel), motor_map.CHANNEL_NAMES.index("ctr_flexion")
    return abs(np.degrees(np.angle(measured[c] / measured[ctr] / (target[c] / target[ctr]))))


FIRST_GAIT = Path(__file__).parent / "data" / "vnc_walk_first_gait.npz"  # the weights shipped at commit 98e4107


def test_phase_alignment_turns_the_front_legs_protraction_into_its_target_phase():
    """The first trained gait's front ThC runs ~170° off its target (docs/vnc.md); aligning the MN synapses
    brings it within 30°, measured on the muscle output, with Dale's law and synapse counts intact."""
    model = vnc_evaluate.load_model(FIRST_GAIT)
    n_sensory = model.spec.n_sensory
    revived, _ = vnc_walk.revive_motor_neurons(model.params, model.mmap, n_sensory)
    assert _channel_phase_error(revived, model.mmap, n_sensory, "lf", "thc_protraction") > 120
    aligned, errors = vnc_walk.align_motor_phases(revived, model.mmap, n_sensory)
    assert _channel_phase_error(aligned, model.mmap, n_sensory, "lf", "thc_protraction") < 30
    assert _channel_phase_error(aligned, model.mmap, n_sensory, "rf", "thc_protraction") < 30
    assert abs(errors[0, 0, 0]) > 120 and np.abs(errors[1]).max() < 30  # its own account agrees
    assert vnc.sign_violations(aligned) == {k: 0 for k in vnc.sign_violations(aligned)}
    np.testing.assert_array_equal(aligned.graph.pm_count, model.params.graph.pm_count)
    for name in set(aligned.trainable) - {"synapse_gain", "motor_bias"}:
        np.testing.assert_array_equal(aligned.trainable[name], revived.trainable[name], err_msg=name)


def test_gait_training_updates_logs_checkpoints_and_resumes(six_leg_model, tmp_path):
    six, mmap, spec = six_leg_model
    config = vnc_walk.GaitConfig(duration=0.3, transient=0.1, forward_drives=(1.0, 2.0))
    trained, history = vnc_walk.train(six, mmap, spec.n_sensory, 2, config, out_dir=tmp_path, checkpoint_every=1,
                                      progress=False)
    assert [row["step"] for row in history] == [1, 2]
    assert all(np.isfinite(row["loss"]) for row in history)
    changed = [k for k in vnc_walk.TRAINED if not np.array_equal(trained.trainable[k], six.trainable[k])]
    assert set(changed) == set(vnc_walk.TRAINED)
    fixed = set(six.trainable) - set(vnc_walk.TRAINED)
    assert all(np.array_equal(trained.trainable[k], six.trainable[k]) for k in fixed)
    np.testing.assert_array_equal(trained.graph.pm_count, six.graph.pm_count)  # synapse counts untouched
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    assert any((tmp_path / "tensorboard").iterdir())
    with (tmp_path / "history.jsonl").open("a") as rows:
        rows.write(json.dumps({"step": 3}) + "\n")  # what a run killed after step 3, before its checkpoint, leaves
    resumed, more = vnc_walk.train(six, mmap, spec.n_sensory, 3, config, out_dir=tmp_path, progress=False)
    assert [row["step"] for row in more] == [3]  # continued from the step-2 checkpoint
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert lines == [json.dumps(row) for row in history + more]  # the killed run's row replaced
    assert not np.array_equal(resumed.trainable["recurrent"], trained.trainable["recurrent"])


def test_vnc_agent_runs_closed_loop_on_the_body_and_records(six_leg_model, target):
    six, mmap, spec = six_leg_model
    model = vnc_evaluate.WalkModel(six, mmap, spec, target.rest_action)
    run = vnc_evaluate.run_on_body(model, vnc_evaluate.forward(1.5), duration=0.2, transient=0.1)
    n_steps = len(run.rollout.times) - 1
    assert run.mn_rate.shape == (n_steps, len(LEGS), spec.n_motor)
    assert run.signal.shape == (n_steps, len(LEGS), len(motor_map.CHANNELS))
    assert run.load.shape == (n_steps, len(LEGS)) and (run.load >= 0).all()
    assert np.isfinite(run.mn_rate).all() and run.mn_rate.max() > 0  # the drive reaches the MNs
    summary = run.summary()
    assert summary["upright"] and set(summary) >= {"speed_mm_s", "frequency_hz", "tripod_index", "phase_matrix_deg"}
    with pytest.raises(ValueError, match="transient"):
        vnc_evaluate.run_on_body(model, vnc_evaluate.forward(1.0), duration=0.2, transient=0.3)
    with pytest.raises(ValueError, match="descending must be 4 finite numbers"):
        model.agent(1e-3, [1.0, 0.0])


def test_vnc_cli_evaluates_the_embedded_weights_which_walk_turn_and_back_up(tmp_path):
    """``connectofly vnc --evaluate-only`` on the embedded weights writes the summary, plots and
    tables; 1-s episodes on the C body show the shipped behaviour (the 2-s version with
    tighter bounds is in the slow tier): at forward drive 1.5 an upright ~10 Hz tripod that
    walks, the steering inputs turn the fly to their side, the backward drive backs it up,
    silencing the 19A rhythm core breaks the tripod."""
    import shutil

    from connectofly.cli.main import main

    shutil.copy(vnc_evaluate.embedded_weights(), tmp_path / "params.npz")
    assert main(["vnc", "--out", str(tmp_path), "--evaluate-only", "--drives", "1.5", "--duration", "1.0",
                 "--silence", "19A", "--no-video", "--seeds", "2"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    (walk,) = summary["forward"]
    assert walk["descending"]["forward"] == 1.5
    (seeds,) = summary["forward_seeds"]
    assert len(seeds["speed_mm_s"]) == 2 and seeds["speed_mm_s"][0] == pytest.approx(walk["speed_mm_s"], abs=0.01)
    assert seeds["speed_mm_s"][1] != seeds["speed_mm_s"][0]  # another initial state, another episode
    assert [row["silenced"] for row in summary["silencing"]] == ["", "19A"]
    assert summary["sign_violations"] == {k: 0 for k in summary["sign_violations"]}
    for name in ("speed_vs_drive.png", "phase_matrix.png", "activity.png", "silencing.md"):
        assert (tmp_path / name).stat().st_size > 0, name

    assert walk["upright"] and 8.0 <= walk["frequency_hz"] <= 12.0
    assert walk["tripod_index"] > 0.9 and walk["speed_mm_s"] > 5.0  # 7.8 mm/s in 1 s, 10 in 2 s
    left, right = summary["steer_left"]["yaw_rate_rad_s"], summary["steer_right"]["yaw_rate_rad_s"]
    assert left > walk["yaw_rate_rad_s"] + 0.1 and right < walk["yaw_rate_rad_s"] - 0.1  # + is a left turn
    assert summary["backward"]["upright"] and summary["backward"]["speed_mm_s"] < -1.0
    assert summary["silencing"][1]["tripod_index"] < 0.5  # the rhythm core's inhibitory half

    assert main(["vnc", "--out", str(tmp_path / "empty"), "--evaluate-only"]) == 2  # nothing trained there
    assert main(["vnc", "--out", str(tmp_path), "--evaluate-only", "--seeds", "0"]) == 2
    assert main(["vnc", "--out", str(tmp_path), "--evaluate-only", "--silence", "99Z"]) == 2


def test_proprioception_feeds_the_body_back_into_the_vnc():
    """With ``proprioception`` (``vnc --proprioception``) the body's sensors reach the premotor units."""
    model = vnc_evaluate.load_model()
    blind, fed_back = (vnc_evaluate.run_on_body(model, vnc_evaluate.forward(1.5), duration=0.5, transient=0.2,
                                                proprioception=p) for p in (False, True))
    assert not np.allclose(fed_back.mn_rate, blind.mn_rate)
    assert fed_back.speed != pytest.approx(blind.speed, abs=1e-6)


def test_vnc_cli_fine_tunes_the_readout_of_trained_weights(tmp_path):
    """``--init embedded --align-phases --train readout``: only the MN stage changes; bad combinations refused."""
    from connectofly.cli.main import main

    out = tmp_path / "run"
    assert main(["vnc", "--out", str(out), "--init", "embedded", "--align-phases", "--train", "readout",
                 "--steps", "1", "--amplitude-weight", "3", "--drives", "1.5", "--duration", "0.6", "--no-video"]) == 0
    start = vnc_evaluate.load_model().params.trainable
    tuned = vnc_evaluate.load_model(out / "params.npz").params.trainable
    changed = {k for k in start if not np.array_equal(start[k], tuned[k])}
    assert changed == set(vnc_walk.READOUT)
    assert not (out / "rhythm.npz").exists()  # stage 1 skipped
    assert main(["vnc", "--out", str(tmp_path / "x"), "--align-phases", "--steps", "1"]) == 2  # nothing to align
    assert main(["vnc", "--out", str(tmp_path / "x"), "--init", str(tmp_path / "missing.npz")]) == 2


@pytest.mark.slow
def test_embedded_model_walks_turns_and_backs_up_on_the_body():
    """The shipped weights (docs/vnc.md) on the C body, flat ground, 2 s from seed 0.

    Forward drive 1.5: upright, ~10 Hz, a tripod in the stance commands and the footfalls, and
    walking (about 10 mm/s measured; the weights before the motor-map fix and the body tuning
    walked 2 mm/s). The steering inputs turn the fly to their side; the backward drive walks it
    backwards; silencing the 19A rhythm core breaks the tripod.
    """
    model = vnc_evaluate.load_model()
    assert vnc.sign_violations(model.params) == {k: 0 for k in vnc.sign_violations(model.params)}
    run = vnc_evaluate.run_on_body(model, vnc_evaluate.forward(1.5), duration=2.0)
    assert run.upright
    assert 8.0 <= run.frequency <= 12.0
    assert vnc_evaluate.tripod_index(run.phase_matrix) > 0.9
    assert vnc_evaluate.tripod_index(run.footfall_phase_matrix) > 0.6  # 0.76: the front legs land ~60° off
    assert run.speed > 7.0
    left = vnc_evaluate.run_on_body(model, np.array([1.5, 1.0, 0.0, 0.0]), duration=2.0)
    right = vnc_evaluate.run_on_body(model, np.array([1.5, 0.0, 1.0, 0.0]), duration=2.0)
    assert left.yaw_rate > run.yaw_rate + 0.1 and right.yaw_rate < run.yaw_rate - 0.1  # + is a left turn
    backward = vnc_evaluate.run_on_body(model, np.array([0.0, 0.0, 0.0, 1.5]), duration=2.0)
    assert backward.upright and backward.speed < -1.0
    silenced = vnc_evaluate.run_on_body(model.silenced(("19A",)), vnc_evaluate.forward(1.5), duration=1.2)
    assert vnc_evaluate.tripod_index(silenced.phase_matrix) < 0.5  # the rhythm core's inhibitory half

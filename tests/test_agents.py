"""Baseline controllers: their pieces, and walking the real body."""

import numpy as np
import pytest

from connectofly.agents import make_agent
from connectofly.agents.cpg import CPGState, cpg_step, tripod_params, with_descending_drive
from connectofly.agents.hybrid import heading_from_quaternion, retraction_leg, stumbling_mask, swing_gain
from connectofly.agents.rollout import run_episode
from connectofly.agents.rule_based import default_rule_params, leg_scores, RuleState
from connectofly.envs.body import LEGS
from connectofly.envs.fly_env import FlyEnv
from connectofly.envs.kinematics import N_PHASE_BINS, load_step_kinematics


def wrapped(angle):
    return np.angle(np.exp(1j * angle))


def test_tripod_cpg_locks_the_two_tripods_in_antiphase_at_the_intrinsic_frequency():
    params = tripod_params(frequency=12.0)
    state = CPGState(np.random.default_rng(1).uniform(0, 2 * np.pi, 6), np.zeros(6))
    for _ in range(2000):  # 2 s at 1 ms
        state = cpg_step(params, state, 1e-3)
    phases = state.phases
    lf, lm, lh, rf, rm, rh = range(6)
    assert abs(wrapped(phases[lf] - phases[rm])) < 0.05  # same tripod
    assert abs(wrapped(phases[lf] - phases[lh])) < 0.05
    assert abs(abs(wrapped(phases[lf] - phases[rf])) - np.pi) < 0.05  # other tripod
    before = state.phases.copy()
    state = cpg_step(params, state, 1e-3)
    assert (state.phases - before) / 1e-3 == pytest.approx(np.full(6, 2 * np.pi * 12), rel=1e-3)
    assert state.amplitudes == pytest.approx(np.ones(6), abs=1e-6)


def test_descending_drive_sets_side_amplitudes_and_reverses_on_negative_drive():
    params = with_descending_drive(tripod_params(), np.array([0.5, -1.0]))
    left = np.array([leg[0] == "l" for leg in LEGS])
    assert params.amplitudes[left] == pytest.approx(0.5) and params.amplitudes[~left] == pytest.approx(1.0)
    assert (params.frequencies[left] > 0).all() and (params.frequencies[~left] < 0).all()
    with pytest.raises(ValueError, match="drive"):
        with_descending_drive(tripod_params(), np.array([np.nan, 1.0]))


def test_step_kinematics_table_is_periodic_and_swing_is_a_minority_of_the_cycle():
    kin = load_step_kinematics()
    assert kin.table.shape == (N_PHASE_BINS + 1, 6, 7)
    np.testing.assert_allclose(kin.table[0], kin.table[-1], atol=1e-9)
    assert ((kin.swing_end > 0.5) & (kin.swing_end < np.pi)).all()
    np.testing.assert_allclose(kin.angles(np.zeros(6)), kin.table[0], atol=1e-12)


def test_retraction_picks_the_leg_hanging_far_below_the_others():
    claw_z = np.array([0.0, 0.0, 0.01, 0.0, -0.3, 0.0])
    assert retraction_leg(1.0, claw_z, 0.05) == 4
    assert retraction_leg(1.0, np.zeros(6), 0.05) is None


def test_stumbling_is_a_backward_push_on_tibia_or_proximal_tarsus():
    forces = np.zeros((6, 8, 3))
    forces[2, 2] = [-5.0, 0, 0]  # tibia of lh pushed backwards
    forces[0, 7] = [-50.0, 0, 0]  # the claw pushing back is stance, not stumbling
    mask = stumbling_mask(forces, np.array([1.0, 0, 0]), -1.0)
    assert mask.tolist() == [False, False, True, False, False, False]


def test_correction_gain_peaks_mid_swing_and_vanishes_at_cycle_ends():
    swing_end = np.full(6, 2.0)
    gains = swing_gain(np.array([0.0, 1.0, 0.5, 2.0 + np.pi / 4, 1.0 + np.pi, 2 * np.pi - 1e-9]), swing_end, np.pi / 4)
    np.testing.assert_allclose(gains, [0.0, 0.8, 0.4, 0.0, -0.1, 0.0], atol=1e-6)


def test_heading_of_a_yawed_body():
    half = np.pi / 4  # 90 degrees about z
    np.testing.assert_allclose(heading_from_quaternion(np.array([np.cos(half), 0, 0, np.sin(half)])), [0, 1, 0], atol=1e-12)


def test_walknet_rules_suppress_behind_a_swinging_leg():
    params = default_rule_params()
    kin = load_step_kinematics()
    phases = np.zeros(6)
    phases[LEGS.index("lf")] = 0.5 * kin.swing_end[0]  # lf mid-swing
    scores = leg_scores(params, RuleState(phases, np.zeros(6, bool), True), kin.swing_end)
    assert scores[LEGS.index("lm")] == -10.0
    assert scores[LEGS.index("rm")] == 0.0


@pytest.mark.parametrize("controller", ["cpg", "hybrid"])
def test_cpg_and_hybrid_walk_at_least_10_mm_per_s_upright(controller):
    env = FlyEnv(duration=1.0)
    rollout = run_episode(env, make_agent(controller, env.control_dt), seed=0)
    assert rollout.termination is None
    assert rollout.mean_forward_speed() >= 10.0
    # The env's own measure agrees with the displacement, and the walk task pays for it.
    assert np.mean(rollout.forward_speeds) == pytest.approx(rollout.mean_forward_speed(), rel=0.15)
    assert np.mean(rollout.rewards) > 0.5 * rollout.mean_forward_speed()


def test_rule_based_walks_forward():
    env = FlyEnv(duration=1.0)
    rollout = run_episode(env, make_agent("rule_based", env.control_dt), seed=0)
    assert rollout.termination is None
    assert rollout.mean_forward_speed() > 3.0


def test_asymmetric_drive_turns_toward_the_weaker_side():
    def mean_yaw_rate(drive):
        env = FlyEnv(duration=0.6)
        rollout = run_episode(env, make_agent("turning", env.control_dt, drive=drive), seed=0)
        return np.mean(rollout.yaw_rates[200:])

    assert mean_yaw_rate((0.4, 1.2)) > 0.5  # weaker left side: turn left (counter-clockwise)
    assert mean_yaw_rate((1.2, 0.4)) < -0.5


def test_unknown_controller_lists_the_valid_ones():
    with pytest.raises(ValueError, match="hybrid"):
        make_agent("ppo", 1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("terrain", ["gapped", "blocks"])
def test_hybrid_walks_farther_than_cpg_on_rough_terrain_over_10_seeds(terrain):
    def mean_distance(controller):
        env = FlyEnv(terrain=terrain, duration=1.0)
        agent = make_agent(controller, env.control_dt)
        return np.mean([run_episode(env, agent, seed=seed).displacement[0] for seed in range(10)])

    assert mean_distance("hybrid") > mean_distance("cpg")

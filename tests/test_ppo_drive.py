"""The PPO-MLP drive policy: its env, its PPO wiring, saving, the agent and the CLI."""

import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.training import types
from gymnasium.utils.env_checker import check_env

from connectofly.agents.connectome import N_REGIONS
from connectofly.agents.ppo_mlp import PPOMLPAgent
from connectofly.agents.rollout import run_episode
from connectofly.agents.visual_taxis import DRIVE_RANGE
from connectofly.envs import arena
from connectofly.envs.drive_env import STRAIGHT_DRIVE, DriveEnv, drive_from_unit, photoreceptor_features
from connectofly.envs.fly_env import FlyEnv
from connectofly.training import ppo_drive
from connectofly.training.ppo import init_normalizer, init_params, make_networks, make_optimizer, sgd

TINY = replace(ppo_drive.DRIVE_PPO, num_envs=2, unroll_length=3, num_minibatches=2, epochs=1)


@pytest.fixture(scope="module")
def drive_env():
    env = DriveEnv("visual_taxis", duration=0.3)
    yield env
    env.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One PPO update on two in-process envs whose 0.1 s episodes (2 decisions) end and restart
    within the update's 3 decisions: the saved policy and the history."""
    out = tmp_path_factory.mktemp("ppo_drive")
    history = ppo_drive.train([ppo_drive.Stage("visual_taxis", 1)], out, TINY, duration=0.1, workers=False, progress=False)
    return out, history


def test_drive_env_passes_the_gymnasium_checker(drive_env):
    check_env(drive_env, skip_render_check=True)


def test_actions_map_onto_the_drive_range_with_zero_walking_straight():
    low, high = DRIVE_RANGE
    np.testing.assert_allclose(drive_from_unit([-1.0, 0.0]), [low, STRAIGHT_DRIVE])
    np.testing.assert_allclose(drive_from_unit([1.0, 0.5]), [high, (STRAIGHT_DRIVE + high) / 2])
    np.testing.assert_allclose(drive_from_unit([-7.0, 7.0]), [low, high])  # clipped


def test_bad_actions_are_refused(drive_env):
    drive_env.reset(seed=0)
    for bad in (np.zeros(3), np.array([np.nan, 0.0])):
        with pytest.raises(ValueError, match="2 finite numbers"):
            drive_env.step(bad)


def test_features_are_region_means_of_each_eye(drive_env):
    regions = drive_env.regions
    vision = np.full((2, 721, 2), 0.25)
    dark = regions[1, 5] > 0  # right eye, region 5
    vision[1, dark] = 0.0
    features = photoreceptor_features(vision, regions)
    assert features.shape == (2 * N_REGIONS,)
    expected = np.full(2 * N_REGIONS, 0.5, np.float32)
    expected[N_REGIONS + 5] = 0.0
    np.testing.assert_allclose(features, expected, atol=1e-6)


def test_sgd_moves_the_policy_toward_rewarded_actions():
    """A one-step bandit whose reward is the first action: PPO must raise that action's mean."""
    config = replace(TINY, num_envs=4, num_minibatches=2, epochs=4, learning_rate=3e-3)
    networks, optimizer = make_networks(4, 2, config), make_optimizer(config)
    params = init_params(networks, jax.random.key(0))
    opt_state, normalizer = optimizer.init(params), init_normalizer(4)
    dist = networks.parametric_action_distribution
    obs = jnp.ones((4, 16, 4))

    def mean_first_action(params):
        return float(dist.create_dist(networks.policy_network.apply(normalizer, params.policy, obs[0, 0])).loc[0])

    before = mean_first_action(params)
    key = jax.random.key(1)
    for _ in range(5):
        key, k_sample, k_sgd = jax.random.split(key, 3)
        logits = networks.policy_network.apply(normalizer, params.policy, obs)
        raw = dist.sample_no_postprocessing(logits, jax.random.key_data(k_sample))
        zeros = jnp.zeros((4, 16))
        data = types.Transition(
            observation=obs, action=raw, reward=raw[..., 0], discount=zeros, next_observation=obs,
            extras={"policy_extras": {"raw_action": raw, "log_prob": dist.log_prob(logits, raw),
                                      "distribution_params": logits},
                    "state_extras": {"truncation": zeros}},
        )
        params, opt_state, _ = sgd(networks, optimizer, config, params, opt_state, normalizer, data, k_sgd)
    assert mean_first_action(params) > before + 0.05


def test_training_writes_a_policy_that_reloads_to_the_same_actions(tiny_run):
    out, history = tiny_run
    assert len(history) == 1 and history[0]["decisions"] == TINY.steps_per_update
    assert history[0]["episodes_ended"] == TINY.num_envs  # the restart path was taken
    assert np.isfinite(history[0]["loss/total_loss"])
    saved = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert saved[0]["update"] == 1
    assert (out / "learning_curve.png").stat().st_size > 0
    policy = ppo_drive.load_policy(out / "policy.npz")
    features = np.random.default_rng(0).uniform(0, 0.5, ppo_drive.N_FEATURES).astype(np.float32)
    networks = make_networks(ppo_drive.N_FEATURES, 2, policy.config)
    logits = networks.policy_network.apply(policy.normalizer, policy.params, features)
    expected = np.clip(networks.parametric_action_distribution.create_dist(logits).loc, -1, 1)
    np.testing.assert_allclose(policy(features), expected, rtol=1e-5, atol=1e-6)  # jitted vs eager float32
    assert policy.task == "visual_taxis" and policy.decision_dt == ppo_drive.DECISION_DT


def test_the_agent_on_a_flyenv_replays_the_drive_env(tiny_run):
    """The bench's agent (500 Hz eyes, decisions every 50 steps) does what the policy did in training."""
    policy = ppo_drive.load_policy(tiny_run[0] / "policy.npz")
    drive_env = DriveEnv("visual_taxis", duration=0.3)
    features, _ = drive_env.reset(seed=3)
    done = False
    while not done:
        features, _, terminated, truncated, info = drive_env.step(policy(features))
        done = terminated or truncated
    env = FlyEnv(task="visual_taxis", duration=0.3)
    rollout = run_episode(env, PPOMLPAgent.for_env(env, policy), seed=3)
    np.testing.assert_allclose(rollout.positions[-1], drive_env.fly.physics.read().thorax_position, atol=1e-9)
    drive_env.close()


def _turn_toward(env, agent, bearing_deg: float) -> float:
    """Mean yaw rate (rad/s, + left) over 0.5 s with the target at ``bearing_deg``, 11 mm away."""
    bearing = np.deg2rad(bearing_deg)
    layout = arena.static_trajectory(11.0 * np.array([[np.cos(bearing), np.sin(bearing)]]))
    obs, _ = env.reset(seed=0, options={"layout": arena.to_numpy(layout)})
    rng = np.random.default_rng(0)
    params, carry, yaw = agent.default_params(), agent.init(rng), []
    for _ in range(500):
        carry, action = agent.act(params, carry, obs, rng)
        obs, _, terminated, truncated, info = env.step(action)
        yaw.append(info["yaw_rate"])
    return float(np.mean(yaw))


def test_the_embedded_taxis_policy_turns_toward_the_target():
    env = FlyEnv(task="visual_taxis", duration=1.0)
    agent = PPOMLPAgent.for_env(env)
    assert _turn_toward(env, agent, 60.0) > _turn_toward(env, agent, -60.0) + 0.5


def test_the_agent_refuses_a_blind_env():
    with pytest.raises(ValueError, match="needs an env with vision"):
        PPOMLPAgent.for_env(FlyEnv(task="walk"))


def test_cli_trains_in_worker_processes_and_refuses_to_overwrite(tmp_path):
    from connectofly.cli.main import main

    args = ["train", "--algo", "ppo", "--env", "VisualTaxis", "--updates", "1", "--num-envs", "2",
            "--unroll-length", "2", "--minibatches", "2", "--epochs", "1", "--episode-duration", "0.2",
            "--output-dir", str(tmp_path), "--run-name", "run"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["decisions"] == 4 and summary["num_envs"] == 2
    assert (tmp_path / "run" / "policy.npz").exists()
    assert main(args) == 2  # the run exists: refused, not overwritten


def test_cli_refuses_zero_updates_before_making_the_run_folder(tmp_path):
    from connectofly.cli.main import main

    assert main(["train", "--algo", "ppo", "--env", "FollowObject", "--updates", "0",
                 "--output-dir", str(tmp_path), "--run-name", "run"]) == 2
    assert not (tmp_path / "run").exists()


def test_a_curriculum_carries_the_policy_and_its_statistics_through_the_stages(tmp_path):
    stages = [ppo_drive.Stage("visual_taxis", 1), ppo_drive.Stage("follow_object", 1, "blocks")]
    history = ppo_drive.train(stages, tmp_path, TINY, duration=0.1, workers=False, progress=False)
    assert [(row["update"], row["stage"], row["task"], row["terrain"]) for row in history] == [
        (1, 0, "visual_taxis", "flat"), (2, 1, "follow_object", "blocks")]
    policy = ppo_drive.load_policy(tmp_path / "policy.npz")
    assert policy.task == "follow_object"
    # the observation statistics count both stages' decisions: the second did not start afresh
    assert int(policy.normalizer.count) == 2 * TINY.steps_per_update
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


def test_drive_env_walks_on_the_chosen_terrain():
    env = DriveEnv("visual_taxis", duration=0.1, terrain="blocks")
    assert env.fly.terrain == "blocks"
    env.close()


def test_curriculum_parsing():
    from connectofly.cli.train import parse_curriculum

    assert parse_curriculum("VisualTaxis:40, FollowObject@mixed:80") == [
        ppo_drive.Stage("visual_taxis", 40, "flat"), ppo_drive.Stage("follow_object", 80, "mixed")]
    for bad, message in [("VisualTaxis", "ENV\\[@TERRAIN\\]:UPDATES"), ("Walk:10", "ENV\\[@TERRAIN\\]:UPDATES"),
                         ("VisualTaxis:x", "ENV\\[@TERRAIN\\]:UPDATES"), ("VisualTaxis@moon:5", "unknown terrain"),
                         ("VisualTaxis:0", "at least 1")]:
        with pytest.raises(ValueError, match=message):
            parse_curriculum(bad)


@pytest.mark.parametrize("extra", [["--curriculum", "VisualTaxis:1,FollowObject:x"],
                                   ["--curriculum", "VisualTaxis:1", "--updates", "3"],
                                   ["--curriculum", "VisualTaxis:1", "--env", "FollowObject"],
                                   ["--curriculum", "VisualTaxis:1", "--algo", "bptt"]])
def test_cli_refuses_a_bad_curriculum_before_making_the_run_folder(tmp_path, extra):
    from connectofly.cli.main import main

    assert main(["train", *extra, "--output-dir", str(tmp_path), "--run-name", "run"]) == 2
    assert not (tmp_path / "run").exists()

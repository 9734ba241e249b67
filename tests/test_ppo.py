"""PPO on the MJX env: exact resume from orbax checkpoints; the CLI run and learning (slow).

One env and one learner serve the fast tests, so the update (a minute of
compiling on 2 cores) compiles once.
"""

import json
from dataclasses import replace

import jax
import numpy as np
import pytest

from connectofly.cli.main import main
from connectofly.cli.train import check_same_run
from connectofly.envs.mjx_env import MjxEnv
from connectofly.training.checkpoints import Checkpoints
from connectofly.training.ppo import PPO, PPOConfig, evaluate, train

TINY = PPOConfig(num_envs=2, unroll_length=4, num_minibatches=1, epochs=1)
EPISODE = 0.05  # s


def train_cli(output_dir, run_name: str, updates: int, *extra: str) -> int:
    return main([
        "train", "--algo", "ppo", "--env", "Walk", "--updates", str(updates),
        "--num-envs", str(TINY.num_envs), "--unroll-length", str(TINY.unroll_length),
        "--minibatches", str(TINY.num_minibatches), "--epochs", str(TINY.epochs),
        "--episode-duration", str(EPISODE), "--eval-seconds", "0.05", "--checkpoint-every", "1",
        "--output-dir", str(output_dir), "--run-name", run_name, *extra,
    ])


def leaves(state) -> list[np.ndarray]:
    is_key = lambda x: hasattr(x, "dtype") and jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key)  # noqa: E731
    return [np.asarray(jax.random.key_data(x) if is_key(x) else x) for x in jax.tree.leaves(state)]


@pytest.fixture(scope="module")
def env():
    return MjxEnv("walk", duration=EPISODE)


@pytest.fixture(scope="module")
def ppo(env):
    return PPO(env, TINY)


def test_a_fresh_state_is_typed_and_placed_as_a_restored_one(ppo, tmp_path):
    """So the update compiled for a fresh run serves a resumed one, and XLA's cache finds it."""
    fresh = ppo.init(0)
    Checkpoints(tmp_path).save(0, fresh)
    restored = Checkpoints(tmp_path).restore(ppo.init(1))
    placed = lambda x: (jax.typeof(x), x.sharding) if hasattr(x, "dtype") else x  # noqa: E731
    assert jax.tree.map(placed, fresh) == jax.tree.map(placed, restored)
    for a, b in zip(leaves(fresh), leaves(restored)):
        np.testing.assert_array_equal(a, b)


def test_resumed_run_makes_the_same_update_as_an_uninterrupted_one(ppo, tmp_path):
    """Stopped after update 1 and resumed, a run ends bit-identical to one never stopped
    (one compiled update serves all three runs; the CLI's resume is in the slow tier)."""
    straight = train(ppo, 2, checkpoint_dir=tmp_path / "straight", checkpoint_every=1, log_dir=tmp_path / "tb",
                     progress=False)
    assert [row["update"] for row in straight.history] == [1, 2]
    assert [row["env_steps"] for row in straight.history] == [TINY.steps_per_update, 2 * TINY.steps_per_update]
    assert all(np.isfinite(row["reward_per_step"]) and np.isfinite(row["loss/total_loss"]) for row in straight.history)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    history = tmp_path / "history.jsonl"
    first = train(ppo, 1, checkpoint_dir=tmp_path / "run", progress=False, history_path=history)
    with history.open("a") as rows:
        rows.write(json.dumps({"update": 2}) + "\n")  # what a run killed after update 2, before its checkpoint, leaves
    resumed = train(ppo, 2, checkpoint_dir=tmp_path / "run", progress=False, history_path=history)
    assert [row["update"] for row in resumed.history] == [2]  # only the missing update ran
    assert history.read_text().splitlines() == [json.dumps(row) for row in first.history + resumed.history]
    assert resumed.compile_seconds == 0.0  # the update compiled for the fresh run served the resumed one

    assert all(not np.array_equal(a, b) for a, b in zip(leaves(ppo.init(0).params), leaves(first.state.params)))
    after_two = leaves(straight.state)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(first.state), after_two))  # update 2 changed things
    assert len(leaves(resumed.state)) == len(after_two)
    for a, b in zip(after_two, leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(after_two, leaves(Checkpoints(tmp_path / "run").restore(ppo.init(0)))):
        np.testing.assert_array_equal(a, b)


def test_evaluation_rolls_out_the_mean_action_or_samples_as_in_training(ppo):
    state = ppo.init(0)
    speed, reward, poses = evaluate(ppo, state, 0.01, frame_every=2)  # 10 control steps
    assert np.isfinite(speed) and np.isfinite(reward)
    assert poses.shape == (5, ppo.env.model.nq) and not np.allclose(poses[0], poses[-1])
    assert evaluate(ppo, state, 0.01)[:2] == (speed, reward)  # the mean action: the same episode again
    sampled_speed, sampled_reward, no_poses = evaluate(ppo, state, 0.01, stochastic=True)
    assert sampled_reward != reward and no_poses.shape == (0, ppo.env.model.nq)


@pytest.mark.slow
def test_the_cli_resumes_a_run_then_evaluates_and_films_it(ppo, tmp_path):
    """Stopped after update 1 and resumed by the CLI, a run ends bit-identical to one never
    stopped; the CLI evaluates the policy and films it (three more MJX compiles)."""
    straight = train(ppo, 2, progress=False)
    run_dir = tmp_path / "run"
    train(ppo, 1, checkpoint_dir=run_dir / "checkpoints", progress=False)
    assert train_cli(tmp_path, "run", 2) == 0  # resumes at update 1, evaluates, renders the video
    resumed = leaves(Checkpoints(run_dir / "checkpoints").restore(ppo.init(0)))
    for a, b in zip(leaves(straight.state), resumed):
        np.testing.assert_array_equal(a, b)

    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [row["update"] for row in history] == [2]  # only the missing update ran
    assert np.isfinite(history[0]["reward_per_step"])
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "learning_curve.png").stat().st_size > 10_000
    assert (run_dir / "eval.mp4").stat().st_size > 1_000
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates_done"] == 2 and summary["env_steps"] == 2 * TINY.steps_per_update
    assert np.isfinite(summary["eval_mean_forward_speed_mm_s"])


def test_a_run_cannot_resume_with_another_config(tmp_path):
    check_same_run(tmp_path, {"env": "Walk", "num_envs": 16, "updates": 10})
    check_same_run(tmp_path, {"env": "Walk", "num_envs": 16, "updates": 20})  # more updates: fine
    with pytest.raises(ValueError, match="num_envs: 16 -> 32"):
        check_same_run(tmp_path, {"env": "Walk", "num_envs": 32, "updates": 20})


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="multiple of num_minibatches"):
        PPOConfig(num_envs=6, num_minibatches=4)
    with pytest.raises(ValueError, match="unroll_length=0"):
        PPOConfig(unroll_length=0)
    with pytest.raises(ValueError, match="initial_action_std=0"):
        PPOConfig(initial_action_std=0.0)
    assert main(["train", "--updates", "5", "--eval-seconds", "0"]) == 2


def test_untrained_policy_explores_with_the_configured_std(env):
    ppo = PPO(env, replace(TINY, initial_action_std=0.25))
    state = ppo.init(0)
    obs = np.zeros((3, ppo.observation_size), np.float32)
    logits = ppo.networks.policy_network.apply(state.normalizer, state.params.policy, obs)
    scale = ppo.networks.parametric_action_distribution.create_dist(logits).scale
    np.testing.assert_allclose(scale, 0.25, rtol=1e-5)


@pytest.mark.slow
def test_ppo_raises_the_walk_reward_and_speed_on_cpu():
    """A CPU-sized run of 40 updates: reward per step and forward speed of the last 5 beat updates 2-6.

    Update 1 is left out: its actions come from the untrained observation
    normalizer and cost far more than any later update's.
    """
    ppo = PPO(MjxEnv("walk", duration=0.5), PPOConfig())
    result = train(ppo, 40, seed=0, progress=False)
    reward = np.array([row["reward_per_step"] for row in result.history])
    speed = np.array([row["mean_forward_speed"] for row in result.history])
    assert reward[-5:].mean() > reward[1:6].mean() + 0.2 * abs(reward[1:6].mean()), reward
    assert speed[-5:].mean() > speed[1:6].mean() + 2.0, speed  # mm/s

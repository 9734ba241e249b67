"""PPO of the connectome agent's descending readout: its env observation, its policy, a run."""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.agents.connectome import N_REGIONS, ConnectomeAgent, Readout, dn_target, load_readout, resting_readout
from connectofly.agents.hybrid import HybridAgent, steered
from connectofly.circuits.optic_lobe import read_spec
from connectofly.envs.drive_env import DriveEnv, drive_from_unit
from connectofly.envs.fly_env import FlyEnv
from connectofly.training import ppo_drive
from connectofly.training.ppo import init_params

N_TYPES = len(read_spec().output_types)


def random_readout(seed: int = 0) -> Readout:
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.05, (2, N_TYPES, N_REGIONS)) * (rng.random((2, N_TYPES, N_REGIONS)) < 0.2)
    return Readout(jnp.asarray(weight, jnp.float32), jnp.asarray(0.9, jnp.float32))


def test_unit_from_drive_inverts_drive_from_unit():
    unit = np.linspace(-1, 1, 41)
    np.testing.assert_allclose(np.asarray(ppo_drive.unit_from_drive(jnp.asarray(drive_from_unit(unit)))), unit,
                               atol=1e-6)


def test_readout_policy_mean_is_the_readouts_drive_before_and_after_calibration():
    readout = random_readout()
    networks = ppo_drive.make_readout_networks(readout, ppo_drive.READOUT_PPO)
    params = init_params(networks, jax.random.key(0)).policy
    features = np.random.default_rng(1).gamma(2.0, 0.05, (6, 2, N_TYPES, N_REGIONS)).astype(np.float32)
    obs = jnp.asarray(features.reshape(6, -1))
    # the per-sample reference: the agent's own dn_target, one frame at a time
    expected = np.stack([np.asarray(ppo_drive.unit_from_drive(dn_target(readout, f))) for f in features])
    mean, std = networks.policy_network.apply(None, params, obs)
    np.testing.assert_allclose(np.asarray(mean), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(std), ppo_drive.READOUT_PPO.initial_action_std, rtol=1e-6)

    calibrated = ppo_drive.calibrated(params, obs)
    scale = np.asarray(calibrated["scale"])
    rms = np.sqrt((features.astype(np.float64) ** 2).mean(axis=(0, 1)))
    np.testing.assert_allclose(scale, np.maximum(rms, ppo_drive.LOBE_FEATURE_SCALE_FLOOR) * readout.weight.size,
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(networks.policy_network.apply(None, calibrated, obs)[0]), expected,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ppo_drive.readout_of(calibrated).weight), np.asarray(readout.weight),
                               rtol=1e-5, atol=1e-7)


def test_optic_lobe_observation_is_what_the_connectome_agent_reads():
    """DriveEnv's optic-lobe observation equals the agent's readout features after the same steps."""
    env = DriveEnv("visual_taxis", duration=0.3, observation="optic_lobe")
    assert env.observation_space.shape == (2 * N_TYPES * N_REGIONS,)
    action = np.array([0.3, -0.2])
    env.reset(seed=3)
    for _ in range(2):
        obs, *_ = env.step(action)

    fly = FlyEnv(task="visual_taxis", duration=0.3)
    agent = ConnectomeAgent.for_env(fly, resting_readout(N_TYPES))
    walker = HybridAgent(fly.control_dt)
    vision_obs, _ = fly.reset(seed=3)
    rng = np.random.default_rng(3)  # what the env's np_random is for seed 3
    walker_carry, carry = walker.init(rng), agent.init(rng)
    carry, features = agent.sense(carry, vision_obs["vision"])
    params = steered(walker.default_params(), drive_from_unit(action))
    for _ in range(2 * env.n_steps):
        walker_carry, joints = walker.act(params, walker_carry, vision_obs, rng)
        vision_obs, *_ = fly.step(joints)
        carry, features = agent.sense(carry, vision_obs["vision"])
    np.testing.assert_allclose(obs, np.asarray(features).reshape(-1), atol=1e-6)
    assert np.abs(obs).max() > 1e-3  # the lobes respond to the walk
    env.close()


@pytest.mark.parametrize("start", ["saved", "rest"])
def test_training_writes_a_readout_the_agent_loads(tmp_path, start):
    from connectofly.agents.connectome import readout_lobe, save_readout
    from connectofly.agents.optic_lobe_vision import lobe_parameters

    config = replace(ppo_drive.READOUT_PPO, num_envs=2, unroll_length=3, num_minibatches=2, epochs=2)
    initial = random_readout() if start == "saved" else resting_readout(N_TYPES)
    # a saved start on the untrained lobes keeps them; the resting start reads the trained ones
    lobe = lobe_parameters("untrained" if start == "saved" else "trained")
    save_readout(tmp_path / "start.npz", initial, read_spec().output_types, lobe_parameters("untrained"))
    history = ppo_drive.train([ppo_drive.Stage("visual_taxis", 2)], tmp_path / "run", config, duration=0.1, workers=False,
                              progress=False, policy="connectome",
                              start_readout=tmp_path / "start.npz" if start == "saved" else "rest")
    assert [row["update"] for row in history] == [1, 2]
    assert all(np.isfinite(row["loss/total_loss"]) and row["loss/kl_mean"] > 0 for row in history)
    tuned = load_readout(tmp_path / "run" / "readout.npz", read_spec().output_types)
    assert np.abs(np.asarray(tuned.weight) - np.asarray(initial.weight)).max() > 0  # it learnt
    agent = ConnectomeAgent.for_env(FlyEnv(task="visual_taxis", duration=0.1), readout=tmp_path / "run" / "readout.npz")
    np.testing.assert_array_equal(np.asarray(agent.readout.weight), np.asarray(tuned.weight))
    for a, b in zip(readout_lobe(tmp_path / "run" / "readout.npz"), lobe):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(agent.lobes.params.trainable.bias, lobe.bias)


def test_train_refuses_an_unknown_policy_and_the_cli_a_connectome_policy_on_mjx(tmp_path):
    from connectofly.cli.main import main

    with pytest.raises(ValueError, match="not one of"):
        ppo_drive.train([ppo_drive.Stage("visual_taxis", 1)], tmp_path, policy="transformer")
    assert main(["train", "--env", "Walk", "--policy", "connectome", "--output-dir", str(tmp_path)]) == 2
    assert main(["train", "--env", "VisualTaxis", "--policy", "connectome", "--start-readout", str(tmp_path / "none.npz"),
                 "--output-dir", str(tmp_path), "--run-name", "r"]) == 2
    assert not (tmp_path / "r").exists()  # refused before the run folder is made

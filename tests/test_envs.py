"""The gymnasium environments on the real NeuroMechFly model (MuJoCo C)."""

import os
import signal
import subprocess
import sys

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import connectofly.envs as ce
from connectofly.envs import arena
from connectofly.envs.body import N_ACTIONS, build_model
from connectofly.envs.dm_env_adapter import DmEnvAdapter
from connectofly.envs.fly_env import FlyEnv, substeps_per_control
from connectofly.envs.kinematics import joint_ranges, load_step_kinematics


@pytest.fixture(scope="module")
def walk_env():
    env = FlyEnv(duration=0.5)
    yield env
    env.close()


@pytest.mark.parametrize("env_id", sorted(ce.ENV_IDS))
def test_every_id_passes_the_gymnasium_checker(env_id):
    env = gym.make(env_id, render_mode="rgb_array", render_size=(96, 128), duration=0.05)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_model_matches_neuromechfly_locomotion_layout():
    model = build_model("flat")
    assert model.opt.timestep == pytest.approx(1e-4)
    assert model.nu == N_ACTIONS  # 42 position + 6 adhesion actuators
    position = [i for i in range(model.nu) if mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i).endswith("-position")]
    assert len(position) == 42
    # 6 legs x 11 hinge joints (7 actuated + 4 passive tarsal) + the free joint
    assert model.njnt == 6 * 11 + 1


@pytest.mark.parametrize("terrain", ["gapped", "blocks", "mixed"])
def test_terrains_compile_and_the_fly_stands(terrain):
    env = FlyEnv(terrain=terrain, duration=0.1)
    env.reset(seed=0)
    for _ in range(100):
        _, _, terminated, _, info = env.step(env.neutral_action)
    assert not terminated, info["termination"]


def test_standing_fly_is_carried_by_ground_reaction_equal_to_its_weight(walk_env):
    walk_env.reset(seed=0)
    for _ in range(300):
        obs, *_ = walk_env.step(walk_env.neutral_action)
    model = walk_env.model
    weight = model.body_subtreemass[walk_env.physics.index.thorax_body] * -model.opt.gravity[2]
    vertical = obs["contact_forces"][..., 2].sum()
    # Legs carry the weight; head/abdomen contacts, if any, carry little.
    assert vertical == pytest.approx(weight, rel=0.15)


def test_same_seed_gives_identical_observations_for_1000_steps():
    def trajectory(seed):
        env = FlyEnv(duration=2.0)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        base = env.neutral_action
        out = []
        for _ in range(1000):
            action = base.copy()
            action[:42] += rng.normal(0, 0.05, 42)
            obs, *_ = env.step(action)
            out.append(np.concatenate([v.ravel() for v in obs.values()]))
        return np.array(out)

    first, second = trajectory(3), trajectory(3)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, trajectory(4))


@pytest.mark.parametrize(
    "action, message",
    [
        (np.full(N_ACTIONS, np.nan), "non-finite"),
        (np.full(N_ACTIONS, np.inf), "non-finite"),
        (np.zeros(N_ACTIONS - 1), "shape"),
        (np.zeros((2, N_ACTIONS)), "shape"),
        (np.zeros(N_ACTIONS, dtype=complex), "dtype"),
        (np.array(["a"] * N_ACTIONS), "dtype"),
    ],
)
def test_bad_actions_raise_value_error(walk_env, action, message):
    walk_env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        walk_env.step(action)


def test_out_of_range_targets_are_clipped_and_reported(walk_env):
    walk_env.reset(seed=0)
    action = walk_env.neutral_action
    action[5] = 50.0
    action[45] = 3.0
    _, _, _, _, info = walk_env.step(action)
    assert info["action_clipped"]
    ctrl = walk_env.physics.data.ctrl
    assert ctrl[walk_env.physics.index.joint_actuators[5]] == walk_env.action_space.high[5]
    assert ctrl[walk_env.physics.index.adhesion_actuators[3]] == 1.0
    _, _, _, _, info = walk_env.step(walk_env.neutral_action)
    assert not info["action_clipped"]


def test_flipped_fly_terminates_with_reason(walk_env):
    walk_env.reset(seed=0)
    data = walk_env.physics.data
    free = walk_env.physics.index.free_qpos
    data.qpos[free + 2] += 2.0  # lift, then turn upside down (180 deg about x)
    data.qpos[free + 3 : free + 7] = [0.0, 1.0, 0.0, 0.0]
    _, reward, terminated, truncated, info = walk_env.step(walk_env.neutral_action)
    assert terminated and not truncated
    assert info["termination"] == "flipped"
    assert reward == 0.0


def test_diverged_physics_terminates_and_never_returns_nan(walk_env):
    obs_before, _ = walk_env.reset(seed=0)
    walk_env.physics.data.qvel[10] = np.nan
    obs, _, terminated, _, info = walk_env.step(walk_env.neutral_action)
    assert terminated
    assert info["termination"].startswith("diverged")
    assert all(np.isfinite(v).all() for v in obs.values())


def test_episode_truncates_at_its_duration():
    env = FlyEnv(duration=0.01)
    env.reset(seed=0)
    flags = [env.step(env.neutral_action)[3] for _ in range(10)]
    assert flags == [False] * 9 + [True]


def test_stepping_an_ended_episode_asks_for_a_reset():
    env = FlyEnv(duration=0.002)
    env.reset(seed=0)
    assert [env.step(env.neutral_action)[3] for _ in range(2)] == [False, True]  # truncated
    with pytest.raises(RuntimeError, match=r"ended.*reset\(\)"):
        env.step(env.neutral_action)
    env.reset(seed=0)
    free = env.physics.index.free_qpos
    env.physics.data.qpos[free + 2] += 2.0
    env.physics.data.qpos[free + 3 : free + 7] = [0.0, 1.0, 0.0, 0.0]  # upside down
    assert env.step(env.neutral_action)[2]  # terminated
    with pytest.raises(RuntimeError, match=r"ended.*reset\(\)"):
        env.step(env.neutral_action)
    env.reset(seed=0)
    assert env.step(env.neutral_action)[4]["time"] == pytest.approx(0.001)


def test_control_step_must_be_a_whole_multiple_of_the_physics_step():
    assert substeps_per_control(1e-3) == 10
    assert substeps_per_control(2e-4) == 2
    with pytest.raises(ValueError, match="whole multiple"):
        substeps_per_control(1.5e-4)
    with pytest.raises(ValueError, match="whole multiple"):
        FlyEnv(control_dt=5e-5)


@pytest.mark.parametrize(
    "arguments, named",
    [
        ({"duration": np.nan}, "duration"),  # the episode would never truncate
        ({"duration": np.inf}, "duration"),
        ({"control_dt": np.nan}, "control_dt"),
        ({"reset_noise": -0.01}, "reset_noise"),
        ({"reset_noise": np.nan}, "reset_noise"),
        ({"render_size": (-96, 128)}, "render_size"),
        ({"render_size": (96,)}, "render_size"),
        ({"render_size": (96.5, 128)}, "render_size"),
        ({"vision_hz": np.nan}, "vision_hz"),  # without vision, it was never looked at
        ({"vision": "no"}, "vision"),
        ({"task": ["walk"]}, "task"),
        ({"task": "visual_taxis", "task_options": 123}, "task_options"),
        ({"task": "visual_taxis", "task_options": {"target": "fly"}}, "task_options"),  # follow_object's only
    ],
    ids=lambda value: repr(value) if isinstance(value, dict) else value,
)
def test_bad_constructor_arguments_are_refused_naming_the_argument(arguments, named):
    with pytest.raises(ValueError, match=named):
        FlyEnv(**arguments)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Walk-v0"):
        ce.make("connectofly/Run-v0")
    with pytest.raises(ValueError, match="gapped"):
        FlyEnv(terrain="lava")
    with pytest.raises(ValueError, match="turn"):
        FlyEnv(task="fly")


def test_turn_task_rewards_tracking_the_commanded_yaw_rate():
    env = FlyEnv(task="turn", duration=0.1)
    obs, _ = env.reset(seed=0, options={"command": [1.5]})
    assert obs["command"].tolist() == [1.5]
    _, reward, _, _, info = env.step(env.neutral_action)
    assert reward == pytest.approx(-abs(info["yaw_rate"] - 1.5))
    with pytest.raises(ValueError, match="command"):
        env.reset(options={"command": [np.nan]})


@pytest.mark.parametrize(
    "task, options, named",
    [
        ("turn", 123, "options"),  # was a TypeError from `"command" in 123`
        ("turn", {"comand": [1.0]}, "comand"),  # was ignored
        ("turn", {"command": "fast"}, "command"),
        ("turn", {"command": [1.0, 2.0]}, "command"),  # was refused after the physics had been reset
        ("visual_taxis", {"layout": [[6.0, 4.0]]}, "layout"),
        ("visual_taxis", {"layout": arena.static_trajectory(np.zeros((2, 2)))}, "layout"),
        ("visual_taxis", {"command": [1.0]}, "command"),  # was ignored
    ],
)
def test_a_refused_reset_changes_nothing(task, options, named):
    """After the refused reset the env goes on exactly as its twin, which never saw it."""
    env, twin = (FlyEnv(task=task, duration=0.1, vision_hz=1000.0) for _ in range(2))
    for e in (env, twin):
        e.reset(seed=0)
        e.step(e.neutral_action)
    with pytest.raises(ValueError, match=named):
        env.reset(seed=1, options=options)
    obs, _, _, _, info = env.step(env.neutral_action)
    twin_obs, _, _, _, twin_info = twin.step(twin.neutral_action)
    assert info["time"] == twin_info["time"] == pytest.approx(0.002)
    assert obs.keys() == twin_obs.keys()
    for key in obs:
        np.testing.assert_array_equal(obs[key], twin_obs[key], err_msg=key)
    if task == "visual_taxis":
        np.testing.assert_array_equal(info["object_positions"], twin_info["object_positions"])


def test_render_returns_an_rgb_frame_of_the_fly():
    env = FlyEnv(render_mode="rgb_array", render_size=(120, 160))
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    assert frame.std() > 5  # not a blank image
    env.close()


def test_action_range_holds_the_recorded_gait_and_the_neutral_pose(walk_env):
    low, high = joint_ranges()
    table = load_step_kinematics().table.reshape(-1, 42)
    assert (table >= low).all() and (table <= high).all()
    neutral = walk_env.neutral_action[:42]
    assert (neutral >= low).all() and (neutral <= high).all()
    assert (low >= -np.pi).all() and (high <= np.pi).all()


def test_dm_env_adapter_follows_its_specs():
    env = DmEnvAdapter(FlyEnv(duration=0.003), seed=0)
    timestep = env.reset()
    assert timestep.first()
    for key, spec in env.observation_spec().items():
        spec.validate(timestep.observation[key])
    action = env.action_spec().generate_value() + env.gym_env.neutral_action * 0
    steps = [env.step(np.clip(env.gym_env.neutral_action, env.action_spec().minimum, env.action_spec().maximum)) for _ in range(3)]
    assert [s.step_type.name for s in steps] == ["MID", "MID", "LAST"]
    assert steps[-1].discount == 1.0  # truncation, not termination
    assert action.shape == (N_ACTIONS,)


def test_vision_observation_is_refreshed_at_its_rate_and_passes_the_checker():
    env = FlyEnv(vision=True, vision_hz=250.0, duration=0.05)  # every 4 control steps
    check_env(env)
    obs, _ = env.reset(seed=0)
    frames = [obs["vision"]]
    rng = np.random.default_rng(0)
    for _ in range(8):
        action = env.neutral_action
        action[:42] += rng.normal(0, 0.3, 42)  # move the legs (and the view)
        frames.append(env.step(action)[0]["vision"])
    assert frames[0].shape == (2, 721, 2) and frames[0].min() >= 0 and frames[0].max() <= 1
    changed = [not np.array_equal(a, b) for a, b in zip(frames, frames[1:])]
    assert changed[0:3] == [False] * 3 and changed[4:7] == [False] * 3
    assert changed[3] and changed[7]  # refreshed at 4 ms and 8 ms
    # Sky is bright, the floor dark: the eyes see both.
    yellow_or_pale = frames[0].max(axis=2)
    assert (yellow_or_pale > 0.9).mean() > 0.2 and (yellow_or_pale < 0.5).mean() > 0.2
    with pytest.raises(ValueError, match="vision_hz"):
        FlyEnv(vision=True, vision_hz=0)


# -- vectorised: gymnasium's AsyncVectorEnv forks its workers by default ----------------

VECTOR_SCRIPT = """
import gymnasium as gym
import numpy as np
import connectofly.envs
{before_the_fork}
envs = gym.make_vec("connectofly/VisualTaxis-v0", num_envs=2, vectorization_mode="async", duration=0.05)
obs, info = envs.reset(seed=0)
obs, reward, terminated, truncated, info = envs.step(np.stack(envs.get_attr("neutral_action")))
assert obs["vision"].shape == (2, 2, 721, 2) and not terminated.any(), (obs["vision"].shape, info)
assert info["distance"][0] != info["distance"][1]  # each worker drew its own layout
envs.close()
print("stepped")
"""


def run_python(code: str, timeout: float) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; past ``timeout`` s, kill it and every process it started."""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the forked workers too
        stdout, stderr = process.communicate()
        pytest.fail(f"hung: killed after {timeout} s\n{stdout}\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_vision_envs_step_in_forked_workers():
    done = run_python(VECTOR_SCRIPT.format(before_the_fork=""), timeout=150)
    assert done.returncode == 0 and "stepped" in done.stdout, done.stderr[-3000:]


def test_workers_forked_from_a_process_running_jax_refuse_to_start_it_and_name_spawn():
    jax_first = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    done = run_python(VECTOR_SCRIPT.format(before_the_fork=jax_first), timeout=150)
    assert done.returncode != 0 and "'spawn'" in done.stderr, done.stderr[-3000:]

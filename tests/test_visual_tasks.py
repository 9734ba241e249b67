"""Visual arenas and tasks on the exact NeuroMechFly model, and the vision baseline."""

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.agents.rollout import run_episode
from connectofly.agents.visual_taxis import (
    SEARCH_DRIVE,
    STRAIGHT_DRIVE,
    VisualTaxisAgent,
    escape_drive,
    object_bearing,
    steering_drive,
)
from connectofly.envs import arena, visual_tasks
from connectofly.envs.fly_env import FlyEnv
from connectofly.envs.physics import BodyState
from connectofly.videos.writer import write_video


@pytest.fixture(scope="module")
def taxis_env():
    env = FlyEnv(task="visual_taxis", duration=1.0)
    yield env
    env.close()


def _body_state(position, heading_angle, velocity) -> BodyState:
    c, s = np.cos(heading_angle), np.sin(heading_angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    zeros = np.zeros(42)
    return BodyState(0.0, zeros, zeros, zeros, np.asarray(position, float), np.array([1.0, 0, 0, 0]),
                     np.asarray(velocity, float), np.zeros(3), np.zeros((6, 8, 3)), np.zeros((6, 3)), rotation)


# -- trajectories ---------------------------------------------------------------


def test_circle_passes_through_its_origin_and_keeps_its_radius():
    traj = visual_tasks.sample_follow(jax.random.key(0), "circle")
    times = np.linspace(0.0, 6.0, 61)
    xy = np.array([arena.object_positions(arena.to_numpy(traj), t)[0] for t in times])
    np.testing.assert_allclose(xy[0], [6.0, 0.0], atol=1e-5)
    phase, radius = float(traj.phase[0]), float(traj.radius[0])
    centre = xy[0] - radius * np.array([np.cos(phase), np.sin(phase)])
    np.testing.assert_allclose(np.linalg.norm(xy - centre, axis=1), radius, rtol=1e-4)
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1) / 0.1
    assert step == pytest.approx(visual_tasks.TARGET_SPEED, rel=0.01)


def test_s_path_sways_within_its_amplitude_around_a_straight_line():
    traj = arena.to_numpy(visual_tasks.sample_follow(jax.random.key(1), "s_path"))
    times = np.linspace(0.0, 8.0, 801)
    xy = np.array([arena.object_positions(traj, t)[0] for t in times]) - traj.origin[0]
    direction = traj.direction[0]
    lateral = xy @ np.array([-direction[1], direction[0]])
    assert np.abs(lateral).max() == pytest.approx(traj.amplitude[0], rel=0.01)
    np.testing.assert_allclose(xy @ direction, visual_tasks.TARGET_SPEED * times, rtol=1e-4, atol=1e-4)


def test_random_walk_moves_at_target_speed_and_turns():
    traj = arena.to_numpy(visual_tasks.sample_follow(jax.random.key(2), "random_walk"))
    times = np.arange(0.0, 9.0, visual_tasks.WAYPOINT_INTERVAL)
    xy = np.array([arena.object_positions(traj, t)[0] for t in times])
    steps = np.diff(xy, axis=0)
    speeds = np.linalg.norm(steps, axis=1) / visual_tasks.WAYPOINT_INTERVAL
    np.testing.assert_allclose(speeds, visual_tasks.TARGET_SPEED, rtol=1e-4)
    headings = np.unwrap(np.arctan2(steps[:, 1], steps[:, 0]))
    assert np.ptp(headings) > 0.5


def test_looming_object_rushes_at_the_start_and_stops_short():
    traj = arena.to_numpy(visual_tasks.sample_looming(jax.random.key(3)))
    start = traj.start_time[0]
    assert np.linalg.norm(arena.object_positions(traj, start)[0]) == pytest.approx(40.0, rel=1e-5)
    halfway = arena.object_positions(traj, start + 0.5)[0]
    assert np.linalg.norm(halfway) == pytest.approx(20.0, rel=1e-4)
    assert np.linalg.norm(arena.object_positions(traj, start + 5.0)[0]) == pytest.approx(1.0, rel=1e-3)


def test_trajectories_agree_between_numpy_and_jitted_jax():
    traj = visual_tasks.sample_follow(jax.random.key(4), "random")
    jitted = jax.jit(arena.object_positions)
    for t in (0.0, 0.37, 2.9):
        np.testing.assert_allclose(
            np.asarray(jitted(traj, jnp.float32(t))), arena.object_positions(arena.to_numpy(traj), t), atol=1e-4
        )


def test_object_heading_follows_its_motion():
    traj = arena.to_numpy(visual_tasks.sample_follow(jax.random.key(5), "s_path"))
    yaw = arena.object_yaws(traj, 0.0)[0]
    velocity = (arena.object_positions(traj, 1e-4) - arena.object_positions(traj, 0.0))[0]
    assert yaw == pytest.approx(np.arctan2(velocity[1], velocity[0]), abs=1e-2)


# -- scores ---------------------------------------------------------------------


def test_target_geometry_signs():
    # Fly at the origin heading +y, target 5 mm to its left (-x), walking toward it at 3 mm/s.
    state = _body_state([0, 0, 1], np.pi / 2, [-3.0, 0, 0])
    distance, bearing, approach = visual_tasks.target_geometry(state, np.array([-5.0, 0.0]))
    assert distance == pytest.approx(5.0)
    assert bearing == pytest.approx(np.pi / 2)
    assert approach == pytest.approx(3.0)


def test_follow_score_peaks_at_the_preferred_distance_straight_ahead():
    state = _body_state([0, 0, 1], 0.0, [0, 0, 0])
    ahead = visual_tasks.score_follow(state, np.array([[visual_tasks.FOLLOW_DISTANCE, 0.0]]))
    too_far = visual_tasks.score_follow(state, np.array([[3 * visual_tasks.FOLLOW_DISTANCE, 0.0]]))
    aside = visual_tasks.score_follow(state, np.array([[0.0, visual_tasks.FOLLOW_DISTANCE]]))
    assert ahead.reward == pytest.approx(1.0) and ahead.success
    assert too_far.reward < ahead.reward and not too_far.success
    assert aside.reward == pytest.approx(0.0, abs=1e-9) and not aside.success


# -- environments ---------------------------------------------------------------


def test_the_eye_sees_the_taxis_target_where_it_is(taxis_env):
    agent = VisualTaxisAgent.for_env(taxis_env)
    for seed in range(3):
        obs, _ = taxis_env.reset(seed=seed)
        xy = taxis_env._trajectory.origin[0]
        seen = object_bearing(obs["vision"], agent.azimuths)
        assert seen is not None
        assert seen == pytest.approx(np.arctan2(xy[1], xy[0]), abs=np.deg2rad(8))


def test_without_the_target_the_eye_sees_nothing_dark(taxis_env):
    far = arena.static_trajectory(np.array([[1e4, 0.0]]))  # beyond the eye's 250 mm far plane
    obs, _ = taxis_env.reset(seed=0, options={"layout": far})
    agent = VisualTaxisAgent.for_env(taxis_env)
    assert object_bearing(obs["vision"], agent.azimuths) is None
    np.testing.assert_array_equal(steering_drive(None), SEARCH_DRIVE)


def test_baseline_reaches_a_near_target_and_the_episode_ends_in_success(taxis_env):
    layout = arena.static_trajectory(np.array([[6.0, 4.0]]))
    agent = VisualTaxisAgent.for_env(taxis_env)
    obs, info = taxis_env.reset(seed=0, options={"layout": layout})
    rng = np.random.default_rng(0)
    params, carry = agent.default_params(), agent.init(rng)
    rewards = []
    while True:
        carry, action = agent.act(params, carry, obs, rng)
        obs, reward, terminated, truncated, info = taxis_env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert info["termination"] == "success" and info["success"]
    assert info["distance"] < visual_tasks.SUCCESS_RADIUS
    assert np.mean(rewards) > 3.0  # mm/s toward the target on average


def test_moving_target_moves_in_the_world_and_in_the_eye():
    env = FlyEnv(task="follow_object", task_options={"trajectory": "circle"}, duration=0.5, vision_hz=100)
    obs, _ = env.reset(seed=0)
    first_vision, first_mocap = obs["vision"].copy(), env.physics.data.mocap_pos.copy()
    for _ in range(200):
        obs, _, _, _, info = env.step(env.neutral_action)
    moved = np.linalg.norm(env.physics.data.mocap_pos[0, :2] - first_mocap[0, :2])
    assert moved == pytest.approx(visual_tasks.TARGET_SPEED * 0.2, rel=0.05)
    np.testing.assert_allclose(info["object_positions"][0], env.physics.data.mocap_pos[0, :2])
    assert np.abs(obs["vision"] - first_vision).max() > 0.1


def test_fly_target_is_drawn_from_primitives_and_seen():
    env = FlyEnv(task="follow_object", task_options={"target": "fly"}, duration=0.1)
    obs, _ = env.reset(seed=0)
    target_geoms = [g for g in range(env.model.ngeom) if env.model.geom_bodyid[g] == env.model.nbody - 1]
    assert len(target_geoms) == 5
    assert (obs["vision"].sum(-1) < 0.14).sum() >= 3  # dark body ommatidia


def test_pillars_push_the_fly():
    env = FlyEnv(task="avoid_obstacles", duration=0.2, vision_hz=50)
    # The first pillar stands where the fly's front legs are.
    layout = arena.to_numpy(visual_tasks.sample_obstacles(jax.random.key(0)))
    origin = layout.origin.copy()
    origin[1] = [0.5, 0.0]
    obs, _ = env.reset(seed=0, options={"layout": layout._replace(origin=origin)})
    contacts = []
    for _ in range(50):
        obs, _, terminated, _, info = env.step(env.neutral_action)
        contacts.append(info["obstacle_contact"])
    assert any(contacts)
    assert not terminated, info["termination"]
    away = FlyEnv(task="avoid_obstacles", duration=0.2, vision_hz=50)
    away.reset(seed=0, options={"layout": layout})
    assert not any(away.step(away.neutral_action)[4]["obstacle_contact"] for _ in range(50))


def test_standing_fly_is_caught_by_the_looming_object():
    env = FlyEnv(task="looming", duration=2.0, vision_hz=50)
    obs, _ = env.reset(seed=0)
    darkest = []
    while True:
        obs, reward, terminated, truncated, info = env.step(env.neutral_action)
        darkest.append((obs["vision"].sum(-1) < 0.14).sum())
        if terminated or truncated:
            break
    assert info["termination"] == "caught" and not info["success"]
    assert info["distance"] < visual_tasks.CAUGHT_RADIUS
    assert darkest[-1] > 10 * max(darkest[0], 1)  # the object looms: its image grows


def test_escape_drive_turns_away_from_the_object():
    # drive (left, right): the weaker side is the side the fly turns to
    left_object, right_object = escape_drive(0.5), escape_drive(-0.5)
    assert left_object[1] < left_object[0] and right_object[0] < right_object[1]
    assert escape_drive(0.0)[0] != escape_drive(0.0)[1]  # dead ahead: it still turns, to one side
    np.testing.assert_array_equal(escape_drive(None), STRAIGHT_DRIVE)
    # the object already behind: it walks almost straight on
    assert abs(np.subtract(*escape_drive(np.deg2rad(175.0)))) < 0.5


@pytest.mark.parametrize("steer, caught", [(steering_drive, True), (escape_drive, False)])
def test_the_escape_baseline_flees_a_head_on_looming_sphere_the_taxis_one_meets(steer, caught):
    env = FlyEnv(task="looming", duration=1.5)
    head_on = arena.to_numpy(visual_tasks.looming_layout(0.0, 0.2))  # the worst case of sample_looming
    rollout = run_episode(env, VisualTaxisAgent.for_env(env, steer=steer), options={"layout": head_on})
    assert (rollout.termination == "caught") == caught, rollout.termination
    assert rollout.task_success[-1] != caught


def test_video_frames_show_the_eyes_under_the_camera(tmp_path, taxis_env):
    rollout = run_episode(taxis_env, VisualTaxisAgent.for_env(taxis_env), seed=1, frame_interval=0.05)
    frames = rollout.frames[:3]
    assert all(f.vision is not None for f in frames)
    path = write_video(taxis_env.model, frames, tmp_path / "eyes.mp4", camera=taxis_env.physics.index.camera, size=(96, 128))
    video = iio.imread(path)
    assert video.shape[1] > 96 and video.shape[1] % 16 == 0 and video.shape[2] == 128
    panel = video[0, 100:]
    assert panel.mean() > 30  # the hexagonal eye images, not an empty canvas


def test_bad_visual_task_arguments_are_rejected():
    with pytest.raises(ValueError, match="needs vision=True"):
        FlyEnv(task="visual_taxis", vision=False)
    with pytest.raises(ValueError, match="trajectory"):
        FlyEnv(task="follow_object", task_options={"trajectory": "zigzag"})
    with pytest.raises(ValueError, match="target"):
        FlyEnv(task="follow_object", task_options={"target": "bee"})
    with pytest.raises(ValueError, match="no task_options"):
        FlyEnv(task="walk", task_options={"target": "fly"})
    with pytest.raises(ValueError, match="size"):
        arena.ArenaObject("x", "sphere", size=0.0, height=1.0)
    with pytest.raises(ValueError, match="kind"):
        arena.ArenaObject("x", "cone", size=1.0, height=1.0)
    env = FlyEnv(task="visual_taxis", duration=0.1)
    with pytest.raises(ValueError, match="objects"):
        env.reset(options={"layout": arena.static_trajectory(np.zeros((2, 2)))})
    with pytest.raises(ValueError, match="Trajectory"):
        env.reset(options={"layout": [[1.0, 2.0]]})


@pytest.mark.parametrize("name", visual_tasks.VISUAL_TASKS)
def test_the_episode_table_of_object_poses_is_what_the_trajectory_gives_each_step(name):
    """FlyEnv computes the objects' poses once per episode (envs/fly_env.ObjectPath): bit for bit the
    per-time evaluation of the trajectory, and no pose for a time between control steps."""
    from connectofly.envs.fly_env import ObjectPath

    trajectory = arena.to_numpy(visual_tasks.make_visual_task(name).sample(jax.random.PRNGKey(3)))
    path = ObjectPath.along(trajectory, 1e-3, 2.0)
    assert len(path.xy) == 2001
    for k in (0, 1, 357, 2000):
        np.testing.assert_array_equal(path.positions(k * 1e-3), arena.object_positions(trajectory, k * 1e-3))
        for table, direct in zip(path.mocap_poses(k * 1e-3), arena.mocap_poses(trajectory, k * 1e-3)):
            np.testing.assert_array_equal(table, direct)
    with pytest.raises(ValueError, match="not a control step"):
        path.positions(0.0005)

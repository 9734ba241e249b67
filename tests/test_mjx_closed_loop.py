"""The closed loop on MJX: controllers as JAX functions, paired starts with the C backend, the batched bench."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.agents import mjx_closed_loop as loop
from connectofly.agents.connectome import ConnectomeAgent
from connectofly.agents.hybrid import HybridAgent
from connectofly.agents.ppo_mlp import PPOMLPAgent
from connectofly.agents.registry import make_mjx_controller
from connectofly.agents.visual_taxis import VisualTaxisAgent, env_ommatidium_directions, escape_drive
from connectofly.cli.main import main
from connectofly.envs import arena
from connectofly.envs.fly_env import FlyEnv
from connectofly.training import mjx_bench


@pytest.fixture(scope="module")
def taxis():
    """The visual_taxis scene on MJX and the C env of the same task."""
    return loop.make_scene("visual_taxis"), FlyEnv(task="visual_taxis", duration=0.1)


def _frames(env, seeds=(0, 1, 2, 3), steps=6):
    """Vision frames from C episodes whose layouts put the target at different bearings
    (the C agents and the JAX controllers are fed the same ones)."""
    frames = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        agent = HybridAgent(env.control_dt)
        carry, rng = agent.init(np.random.default_rng(seed)), np.random.default_rng(seed)
        for _ in range(steps):
            frames.append(obs["vision"])
            carry, action = agent.act(agent.default_params(), carry, obs, rng)
            obs, *_ = env.step(action)
    return np.stack(frames).astype(np.float32)


def _drives(controller, frames, steps_per_frame):
    """The controller's drive at every control step, each frame held for ``steps_per_frame``."""
    def frame(carry, vision):
        carry = controller.see(controller.params, carry, vision)
        carry, drives = jax.lax.scan(lambda c, _: controller.drive(controller.params, c), carry, None,
                                     length=steps_per_frame)
        return carry, drives

    _, drives = jax.jit(lambda f: jax.lax.scan(frame, controller.init(controller.params), f))(frames)
    return np.asarray(drives).reshape(-1, 2)


def test_the_mjx_eyes_look_where_the_c_eyes_look(taxis):
    scene, env = taxis
    directions = env_ommatidium_directions(env)
    angle = np.arccos(np.clip(np.sum(scene.directions * directions, axis=-1), -1, 1))
    assert np.degrees(angle).max() < 0.5  # same eye cameras on the primitive and the mesh body


def test_episode_s_starts_on_mjx_where_it_starts_on_the_c_backend(taxis):
    scene, env = taxis
    for seed in (0, 7):
        start = loop.seeded_start(scene, loop.cpg_motor(), seed)
        env.reset(seed=seed)
        c_data = env.unwrapped.physics.data
        joints_c = c_data.qpos[env.unwrapped.physics.index.joint_qpos]
        np.testing.assert_allclose(np.asarray(start.qpos)[scene.body.index.joint_qpos], joints_c, atol=1e-6)
        np.testing.assert_allclose(np.asarray(arena.mocap_poses(start.layout, 0.0)[0]), c_data.mocap_pos, atol=1e-5)
        phases = HybridAgent(env.control_dt).init(np.random.default_rng(seed)).cpg.phases
        np.testing.assert_allclose(np.asarray(start.motor.phases), phases, atol=1e-6)
    cpg = loop.cpg_motor()
    assert not np.allclose(loop.seeded_start(scene, cpg, 0).motor.phases, loop.seeded_start(scene, cpg, 7).motor.phases)


def _vnc_actions(step, carry, drives):
    actions = []
    for drive in drives:
        carry, action = step(carry, drive)
        actions.append(np.asarray(action))
    return np.array(actions)


def test_the_vnc_motor_stage_starts_and_steps_as_the_c_connectome_vnc(taxis):
    scene, env = taxis
    obs, _ = env.reset(seed=3)
    c_motor = ConnectomeAgent.for_env(env, motor="vnc").motor
    motor = make_mjx_controller("connectome_vnc", scene).motor
    c_start = c_motor.init(np.random.default_rng(3))
    start = motor.start(3)
    np.testing.assert_allclose(np.asarray(start.network.premotor), np.asarray(c_start.network.premotor))
    assert not np.allclose(np.asarray(motor.start(4).network.premotor), np.asarray(start.network.premotor))
    # straight, a left turn (weaker left), a right turn, beyond the map's cap: each steers the VNC differently
    drives = np.repeat([[1.0, 1.0], [0.5, 1.0], [1.2, 0.9], [1.2, -0.4]], 15, axis=0).astype(np.float32)
    rng = np.random.default_rng(0)
    expected = _vnc_actions(lambda c, d: c_motor.move(c_motor.default_params(), c, obs, d, rng), c_start, drives)
    actions = _vnc_actions(jax.jit(motor.step), start, jnp.asarray(drives))
    assert actions.shape == (60, 48) and np.ptp(expected[:, :42], axis=0).max() > 0.01  # the legs moved
    np.testing.assert_allclose(actions, expected, atol=1e-5)
    # silenced hemilineages reach the MJX stage
    silenced = make_mjx_controller("connectome_vnc", scene, silence=("19A",)).motor
    assert not np.allclose(_vnc_actions(jax.jit(silenced.step), start, jnp.asarray(drives)), expected, atol=1e-3)


def test_the_bearing_controllers_drive_as_the_c_baselines(taxis):
    scene, env = taxis
    frames = _frames(env)
    for steer, name in ((None, "visual_taxis"), (escape_drive, "visual_escape")):
        agent = VisualTaxisAgent.for_env(env) if steer is None else VisualTaxisAgent.for_env(env, steer=steer)
        expected = np.repeat([agent.drive(f) for f in frames], scene.steps_per_frame, axis=0)
        drives = _drives(make_mjx_controller(name, scene), jnp.asarray(frames), scene.steps_per_frame)
        assert np.ptp(expected[:, 1] - expected[:, 0]) > 0.5  # the frames ask for different turns
        np.testing.assert_allclose(drives, expected, atol=1e-5)


def test_the_ppo_mlp_controller_decides_as_the_c_agent_every_50_ms(taxis):
    scene, env = taxis
    agent = PPOMLPAgent.for_env(env)
    frames = _frames(env, seeds=(1,), steps=60)[::2]  # one per vision frame: 60 control steps
    drives = _drives(make_mjx_controller("ppo_mlp", scene), jnp.asarray(frames), scene.steps_per_frame)
    # decisions at control steps 0 and 50 (frames 0 and 25), held in between
    np.testing.assert_allclose(drives[:50], np.tile(agent.drive(frames[0]), (50, 1)), atol=1e-5)
    np.testing.assert_allclose(drives[50:], np.tile(agent.drive(frames[25]), (10, 1)), atol=1e-5)
    assert not np.allclose(agent.drive(frames[0]), agent.drive(frames[25]))


def test_the_connectome_controller_runs_the_agents_lobes_and_descending_units(taxis):
    scene, env = taxis
    agent = ConnectomeAgent.for_env(env, silence=("T4a",))
    frames = _frames(env, seeds=(2,), steps=20)
    carry = agent.init(np.random.default_rng(0))
    expected = []
    for vision in frames:  # the C loop: one observation per control step, a new frame every other one
        carry, _ = agent.sense(carry, vision)
        expected.append(np.asarray(carry.dn))
    drives = _drives(loop.connectome_controller(agent), jnp.asarray(frames[::2]), scene.steps_per_frame)
    np.testing.assert_allclose(drives, np.array(expected), rtol=1e-4, atol=1e-5)
    assert np.abs(np.diff(drives, axis=0)).max() > 1e-3  # the units moved


def test_termination_is_the_first_event_with_physics_failures_first():
    n = 6
    off = np.zeros(n, bool)

    def records(**flags):
        fields = {"success": off, "failure": off, "flipped": off, "diverged": off} | flags
        return mjx_bench.StepRecord(np.arange(3 * n, dtype=float).reshape(n, 3), *fields.values(), *(None,) * 3)

    at = lambda *i: np.isin(np.arange(n), i)  # noqa: E731
    reasons = mjx_bench.termination(records(success=at(2, 3), flipped=at(2)), ends_on_success=True)
    assert list(reasons[:4]) == ["", "", "flipped", "success"]
    assert mjx_bench.termination(records(success=at(2)), ends_on_success=False)[2] == ""
    # episode_rollout reads only whether the task ends on success and the control step
    scene = type("S", (), {"task": type("T", (), {"ends_on_success": True})(), "control_dt": 1e-3})()
    start = mjx_bench.StepRecord(np.zeros(3), *(None,) * 7)
    rollout = mjx_bench.episode_rollout(start, records(success=at(3), failure=at(4)), scene, 1.0)
    assert rollout.termination == "success" and len(rollout.positions) == 5 and rollout.task_success[-1]
    assert rollout.duration == pytest.approx(4e-3)
    whole = mjx_bench.episode_rollout(start, records(), scene, 1.0)
    assert whole.termination is None and whole.duration == pytest.approx(n * 1e-3)


def test_bench_runs_the_seeds_batched_on_mjx_beside_the_c_backend(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--out", str(out), "--backend", "mujoco,mjx", "--controllers", "visual_taxis",
                 "--tasks", "visual_taxis", "--seeds", "2", "--duration", "0.06", "--workers", "1"]) == 0
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted((r["controller"], r["seed"]) for r in rows) == [("visual_taxis", 0), ("visual_taxis", 1),
                                                                 ("visual_taxis @mjx", 0), ("visual_taxis @mjx", 1)]
    by = {(r["controller"], r["seed"]): r for r in rows}
    for seed in (0, 1):
        c, mjx = by["visual_taxis", seed], by["visual_taxis @mjx", seed]
        assert mjx["termination"] == "time limit" and mjx["duration"] == pytest.approx(0.06)
        # the same start: the spawn point, then both bodies drop onto their legs and walk
        np.testing.assert_allclose(mjx["path"][0], c["path"][0], atol=1e-3)
        assert 0 < mjx["speed"] < 60
    assert "visual_taxis @mjx" in (out / "summary.md").read_text()
    video = out / "videos" / "visual_taxis-visual_taxis-mjx.mp4"
    assert video.stat().st_size > 5_000


@pytest.mark.parametrize("argv, message", [
    (["--controllers", "hybrid"], "no MJX version"),
    (["--controllers", "visual_taxis", "--terrain", "blocks"], "flat ground"),
    (["--controllers", "cpg", "--tasks", "walk"], "visual tasks"),
    (["--controllers", "cpg", "--backend", "warp"], "unknown"),
])
def test_bench_refuses_what_mjx_cannot_run(tmp_path, capsys, argv, message):
    assert main(["bench", "--out", str(tmp_path / "b"), "--backend", "mjx", "--seeds", "1", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()

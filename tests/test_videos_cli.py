"""Videos rendered headless from recorded states, and the command line."""

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from connectofly.agents import make_agent
from connectofly.agents.rollout import run_episode
from connectofly.cli.main import main
from connectofly.envs.fly_env import FlyEnv
from connectofly.videos.writer import draw_overlay, frame_interval, write_video


def test_video_of_a_recorded_rollout_has_one_frame_per_interval(tmp_path):
    env = FlyEnv(duration=0.2)
    interval = frame_interval(fps=25, playback_speed=0.5)  # 20 ms of simulation per frame
    rollout = run_episode(env, make_agent("cpg", env.control_dt), seed=0, frame_interval=interval)
    assert len(rollout.frames) == 10
    path = write_video(env.model, rollout.frames, tmp_path / "v.mp4",
                       camera=env.physics.index.camera, fps=25, size=(96, 128))
    frames = iio.imread(path)
    assert frames.shape == (10, 96, 128, 3)
    assert frames[0].std() > 5
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5  # the legs moved


def test_rendering_from_states_does_not_touch_the_simulation(tmp_path):
    env = FlyEnv(duration=0.05)
    rollout = run_episode(env, make_agent("cpg", env.control_dt), seed=0, frame_interval=0.01)
    qpos_after = env.physics.qpos()
    write_video(env.model, rollout.frames, tmp_path / "v.mp4",
                camera=env.physics.index.camera, size=(64, 64))
    np.testing.assert_array_equal(env.physics.qpos(), qpos_after)


def test_overlay_writes_text_pixels():
    frame = np.full((40, 200, 3), 128, np.uint8)
    assert (draw_overlay(frame, ["t = 0.1 s"]) != 128).any()


def test_video_arguments_are_checked(tmp_path):
    env = FlyEnv()
    with pytest.raises(ValueError, match="no frames"):
        write_video(env.model, [], tmp_path / "v.mp4", camera=0)
    with pytest.raises(ValueError, match="positive"):
        frame_interval(fps=0, playback_speed=0.2)


def test_cli_walk_writes_video_and_summary(tmp_path, capsys):
    code = main(["walk", "--duration", "0.1", "--output-dir", str(tmp_path), "--run-name", "r", "--fps", "10"])
    assert code == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["controller"] == "cpg" and summary["terrain"] == "flat"
    assert summary["physics_steps"] == 1000
    assert summary["steps_per_second"] > 0 and summary["termination"] is None
    assert summary["steady_steps_per_second"] > 0
    assert set(summary) >= {"distance_mm", "mean_forward_speed_mm_s", "steps_per_second", "video"}
    assert iio.imread(tmp_path / "r" / "walk.mp4").shape[0] == 5  # 0.1 s * 10 fps / 0.2 playback


def test_cli_rejects_bad_input_with_the_valid_choices(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "connectofly.cli.main", "walk", "--controller", "ppo"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "cpg" in result.stderr and "hybrid" in result.stderr
    assert main(["walk", "--duration", "-1", "--output-dir", str(tmp_path)]) == 2


def test_the_cli_imports_mjx_quietly():
    """MJX prints "Failed to import warp" on CPU installs; the command line silences it."""
    quiet = "import connectofly.cli.main, brax.training.agents.ppo.losses"
    done = subprocess.run([sys.executable, "-c", quiet], capture_output=True, text=True, check=True)
    assert done.stdout == "" and "warp" not in done.stderr


def test_cli_help_explains_the_commands():
    result = subprocess.run([sys.executable, "-m", "connectofly.cli.main", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "walk" in result.stdout


def test_missing_opengl_names_the_packages_to_install(monkeypatch):
    import mujoco

    from connectofly.videos.frames import make_renderer

    def no_context(*args, **kwargs):
        raise RuntimeError("Failed to initialize OpenGL")

    monkeypatch.setattr(mujoco, "Renderer", no_context)
    with pytest.raises(RuntimeError, match="libegl1.*libosmesa6"):
        make_renderer(FlyEnv().model, (64, 64))


def test_cli_visual_task_video_shows_the_eyes_and_the_terminal_no_warnings(tmp_path):
    """In its own process, as a user runs it: JAX's eyes run before ffmpeg starts, which
    must not fork the process (JAX warns: os.fork() with threads)."""
    done = subprocess.run(
        [sys.executable, "-m", "connectofly.cli.main", "walk", "--task", "visual_taxis", "--controller", "visual_taxis",
         "--duration", "0.05", "--output-dir", str(tmp_path), "--run-name", "v", "--fps", "10",
         "--playback-speed", "0.5"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "warn" not in (done.stderr + done.stdout).lower()
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert summary["task"] == "visual_taxis" and summary["termination"] is None
    frames = iio.imread(tmp_path / "v" / "walk.mp4")
    height = frames.shape[1]
    assert frames.shape[2:] == (640, 3) and height % 16 == 0
    assert height > 480 + 200  # the 480 px camera view, then the eye panel
    assert frames[0, 500:].mean() > 30


def test_cli_refuses_the_vision_controller_without_eyes(tmp_path, capsys):
    code = main(["walk", "--controller", "visual_taxis", "--duration", "0.01", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "needs a visual task" in capsys.readouterr().err


def test_the_steady_rate_leaves_out_the_first_quarter_of_the_control_steps():
    from connectofly.agents.rollout import Rollout

    # a slow first step (compilation), then three of 0.1 s; 10 physics steps each
    rollout = Rollout(physics_steps=40, step_seconds=[2.0, 0.1, 0.1, 0.1])
    assert rollout.steady_steps_per_second() == pytest.approx(100.0)
    assert rollout.steady_steps_per_second(warm_up=0.0) == pytest.approx(40 / 2.3)
    assert np.isnan(Rollout().steady_steps_per_second())

"""Writing MP4 behaviour videos from recorded body states.

Rendering is separate from simulation: a rollout records ``qpos`` snapshots at
the video's frame interval (``frame_interval``), and :func:`write_video`
renders them afterwards, so rendering never slows a rollout and a batch of
recorded rollouts can be rendered later, on any machine with the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import mujoco
import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from connectofly.videos.frames import make_renderer, render_qpos

DEFAULT_FPS = 30
DEFAULT_PLAYBACK_SPEED = 0.2  # video seconds are 5x slower than simulated time


def frame_interval(fps: float, playback_speed: float) -> float:
    """Simulated seconds between two video frames."""
    if fps <= 0 or playback_speed <= 0:
        raise ValueError(f"fps={fps} and playback_speed={playback_speed} must be positive")
    return playback_speed / fps


def draw_overlay(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The frame with ``lines`` of text in its top-left corner."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        x, y = 8, 6 + 14 * i
        draw.text((x + 1, y + 1), line, fill=(0, 0, 0))
        draw.text((x, y), line, fill=(255, 255, 255))
    return np.asarray(image)


def frame_speeds(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Horizontal thorax speed at each frame (mm/s), by finite differences."""
    if len(times) < 2:
        return np.zeros(len(times))
    velocity = np.gradient(positions[:, :2], times, axis=0)
    return np.linalg.norm(velocity, axis=1)


def write_video(
    model: mujoco.MjModel,
    frame_qpos: Sequence[np.ndarray],
    frame_times: Sequence[float],
    path: str | Path,
    *,
    camera: int,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = (480, 640),
    thorax_qpos: slice = slice(0, 3),
    progress: bool = False,
) -> Path:
    """Render recorded states to an H.264 MP4 with a time/speed overlay.

    Args:
        frame_qpos: qpos at each frame (taken every ``frame_interval(fps, playback)``).
        frame_times: simulated time of each frame, s.
        camera: camera id to render from (the fly's tracking camera).
        thorax_qpos: where the thorax position sits in qpos, for the speed overlay.
    """
    if len(frame_qpos) == 0:
        raise ValueError("no frames to render: record the rollout with a frame_interval")
    if len(frame_qpos) != len(frame_times):
        raise ValueError(f"{len(frame_qpos)} frames but {len(frame_times)} frame times")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    times = np.asarray(frame_times)
    speeds = frame_speeds(times, np.array([q[thorax_qpos] for q in frame_qpos]))
    renderer = make_renderer(model, size)
    data = mujoco.MjData(model)
    try:
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
            for qpos, t, speed in tqdm(
                list(zip(frame_qpos, times, speeds)), desc="rendering", unit="frame", disable=not progress, leave=False
            ):
                frame = render_qpos(renderer, model, data, qpos, camera)
                writer.append_data(draw_overlay(frame, [f"t = {t:6.3f} s", f"speed = {speed:5.1f} mm/s"]))
    finally:
        renderer.close()
    return path

"""Writing MP4 behaviour videos from recorded body states.

Rendering is separate from simulation: a rollout records snapshots of the
world (:class:`~connectofly.videos.frames.FrameState`) at the video's frame interval (``frame_interval``), and :func:`write_video`
renders them afterwards, so rendering never slows a rollout and a batch of
recorded rollouts can be rendered later, on any machine with the same model.
Under the 3-D view go the eye images (frames with ``vision``) and the neural
activity panel (frames with ``activity``, :mod:`connectofly.videos.panels`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import mujoco
import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from connectofly.envs.eye_image import eye_image, hexagon_index_map
from connectofly.videos.frames import FrameState, make_renderer, render_frame
from connectofly.videos.panels import activity_panel

# imageio-ffmpeg starts ffmpeg with a Python pre-exec hook (its own process group,
# so Ctrl-C reaches only us), which makes subprocess fork the whole process; with
# JAX's threads running that is unsafe and JAX warns. Without the hook Python
# spawns ffmpeg with vfork/exec. A user who set the variable keeps their choice.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")

DEFAULT_FPS = 30
DEFAULT_PLAYBACK_SPEED = 0.2  # video seconds are 5x slower than simulated time


def frame_interval(fps: float, playback_speed: float) -> float:
    """Simulated seconds between two video frames."""
    if fps <= 0 or playback_speed <= 0:
        raise ValueError(f"fps={fps} and playback_speed={playback_speed} must be positive")
    return playback_speed / fps


def draw_text(frame: np.ndarray, labels: Sequence[tuple[int, int, str]]) -> np.ndarray:
    """The frame with each ``(x, y, text)`` label drawn white on a dark drop shadow."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    for x, y, text in labels:
        draw.text((x + 1, y + 1), text, fill=(0, 0, 0))
        draw.text((x, y), text, fill=(255, 255, 255))
    return np.asarray(image)


def draw_overlay(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The frame with ``lines`` of text in its top-left corner."""
    return draw_text(frame, [(8, 6 + 14 * i, line) for i, line in enumerate(lines)])


def frame_speeds(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Horizontal thorax speed at each frame (mm/s), by finite differences."""
    if len(times) < 2:
        return np.zeros(len(times))
    velocity = np.gradient(positions[:, :2], times, axis=0)
    return np.linalg.norm(velocity, axis=1)


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` centred horizontally on a black canvas of (height, width)."""
    canvas = np.zeros((height, width, 3), np.uint8)
    left = (width - image.shape[1]) // 2
    canvas[: image.shape[0], left : left + image.shape[1]] = image
    return canvas


def _stack(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """``top`` above ``bottom`` (centred, of at most ``top``'s width), on a black
    canvas whose height is a multiple of 16 (what H.264 encoders want)."""
    width = top.shape[1]
    height = int(np.ceil((top.shape[0] + bottom.shape[0]) / 16) * 16)
    canvas = _pad_to(top, height, width)
    canvas[top.shape[0] :] = _pad_to(bottom, height - top.shape[0], width)
    return canvas


def with_eye_panel(frame: np.ndarray, vision: np.ndarray) -> np.ndarray:
    """The 3-D frame with both eyes' hexagonal images below it (left eye on the left).

    The eye images are scaled to fill the frame's width; the result's height
    is a multiple of 16 (what H.264 encoders want).
    """
    width, gap = frame.shape[1], 8
    eye_width_per_unit = hexagon_index_map(1.0).shape[1]  # one eye's picture width per px of radius
    pixels_per_unit = 0.95 * (width - gap) / (2 * eye_width_per_unit)
    eyes = eye_image(vision, pixels_per_unit=pixels_per_unit, gap=gap)
    eyes = draw_text(eyes, [(4, 4, "left eye"), (eyes.shape[1] // 2 + 4, 4, "right eye")])
    return _stack(frame, eyes)


def with_activity_panel(frame: np.ndarray, history: list[dict]) -> np.ndarray:
    """The frame with :func:`~connectofly.videos.panels.activity_panel` of
    ``history`` (the activity of the frames so far, the current one last) below
    it; the result's height is a multiple of 16."""
    return _stack(frame, activity_panel(history, frame.shape[1]))


def write_video(
    model: mujoco.MjModel,
    frames: Sequence[FrameState],
    path: str | Path,
    *,
    camera: int,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = (480, 640),
    thorax_qpos: slice = slice(0, 3),
    progress: bool = False,
) -> Path:
    """Render recorded states to an H.264 MP4 with a time/speed overlay.

    Frames that carry a compound-eye readout get the two hexagonal eye images
    under the 3-D view (:func:`with_eye_panel`); frames that carry neural
    activity then get the activity panel (:func:`with_activity_panel`), its
    traces spanning the activity of the frames rendered so far.

    Args:
        frames: the world at each frame (taken every ``frame_interval(fps, playback)``).
        camera: camera id to render from (the fly's tracking camera).
        size: (height, width) of the 3-D view, px.
        thorax_qpos: where the thorax position sits in qpos, for the speed overlay.
    """
    if len(frames) == 0:
        raise ValueError("no frames to render: record the rollout with a frame_interval")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    times = np.array([f.time for f in frames])
    speeds = frame_speeds(times, np.array([f.qpos[thorax_qpos] for f in frames]))
    renderer = make_renderer(model, size)
    data = mujoco.MjData(model)
    history = []  # activity of the frames rendered so far
    try:
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
            for frame, speed in tqdm(
                list(zip(frames, speeds)), desc="rendering", unit="frame", disable=not progress, leave=False
            ):
                image = render_frame(renderer, model, data, frame, camera)
                image = draw_overlay(image, [f"t = {frame.time:6.3f} s", f"speed = {speed:5.1f} mm/s"])
                if frame.vision is not None:
                    image = with_eye_panel(image, frame.vision)
                if frame.activity is not None:
                    history.append(frame.activity)
                    image = with_activity_panel(image, history)
                writer.append_data(image)
    finally:
        renderer.close()
    return path

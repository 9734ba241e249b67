"""Neural activity panels under the video's 3-D view."""

import imageio.v3 as iio
import numpy as np
import pytest

from connectofly.agents.rollout import run_episode
from connectofly.agents.visual_taxis import VisualTaxisAgent
from connectofly.envs.eye_image import hexagon_index_map
from connectofly.envs.fly_env import FlyEnv
from connectofly.videos.panels import WINDOW, activity_panel, lattice_image
from connectofly.videos.writer import write_video


def activity(t: int, types=("T4a", "T5b"), mn: bool = False) -> dict:
    """A synthetic activity dict of frame ``t``."""
    rng = np.random.default_rng(t)
    recorded = {
        "lobe": {name: rng.normal(size=(2, 721)) * (k + 1) for k, name in enumerate(types)},
        "dn": np.array([np.sin(0.1 * t), 0.5 + np.cos(0.1 * t)]),
    }
    if mn:
        recorded["mn"] = np.abs(rng.normal(size=(6, 5)))
    return recorded


def test_lattice_image_colours_positive_red_negative_blue_and_outside_black():
    values = np.zeros(721)
    values[0], values[1] = 1.0, -1.0
    image = lattice_image(values, pixels_per_unit=4.0, limit=1.0)
    index = hexagon_index_map(4.0)
    assert image.shape == (*index.shape, 3) and image.dtype == np.uint8
    red = image[index == 0].astype(int).mean(axis=0)
    blue = image[index == 1].astype(int).mean(axis=0)
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50
    assert (image[index < 0] == 0).all()
    with pytest.raises(ValueError, match="721"):
        lattice_image(np.zeros(720), 4.0, 1.0)


@pytest.mark.parametrize("mn", [False, True])
def test_activity_panel_has_the_width_and_a_constant_height(mn):
    history = [activity(t, mn=mn) for t in range(WINDOW + 10)]
    panels = [activity_panel(history[: n + 1], 640) for n in (0, 1, 50, WINDOW + 9)]
    assert {p.shape for p in panels} == {panels[0].shape}
    assert panels[0].shape[1:] == (640, 3) and panels[0].dtype == np.uint8
    assert panels[-1].std() > 10


def test_activity_panel_grows_with_the_cell_types_and_the_motor_raster():
    height = activity_panel([activity(0)], 320).shape[0]
    assert activity_panel([activity(0, types=("T4a", "T5b", "Mi1"))], 320).shape[0] > height
    assert activity_panel([activity(0, mn=True)], 320).shape[0] > height
    assert activity_panel([{"lobe": activity(0)["lobe"]}], 320).shape[0] < height


def test_video_of_a_rollout_with_activity(tmp_path):
    env = FlyEnv(task="visual_taxis", duration=0.02)
    rollout = run_episode(env, VisualTaxisAgent.for_env(env), seed=0, frame_interval=0.01)
    frames = [f._replace(activity=activity(t, mn=True)) for t, f in enumerate(rollout.frames)]
    path = write_video(env.model, frames, tmp_path / "v.mp4", camera=env.physics.index.camera, fps=10)
    first = iio.imread(path, index=0)
    assert first.shape[1] == 640 and first.shape[0] % 16 == 0
    assert first.shape[0] > 480 + 200 + activity_panel([activity(0, mn=True)], 640).shape[0]

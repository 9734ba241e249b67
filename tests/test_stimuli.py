"""Stimuli on the hex lattice and the tuning indices (FRI, DSI)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from connectofly.circuits import hex_lattice, stimuli, tuning
from connectofly.circuits import optic_lobe as ol

ANGLES = np.arange(0, 360, 30)


# -- Lattice and stimuli ---------------------------------------------------------


@pytest.mark.parametrize("radius", [0, 1, 2, 4])
def test_hex_disc_holds_a_hexagon_of_columns(radius):
    assert stimuli.hex_disc(6, radius).sum() == 3 * radius * (radius + 1) + 1
    assert stimuli.hex_disc(6, -1).sum() == hex_lattice.n_columns(6)


def test_neighbouring_columns_are_one_column_apart():
    x, y = stimuli.column_positions(1)
    u, v = hex_lattice.columns(1)
    centre = (u == 0) & (v == 0)
    distance = np.hypot(x - x[centre], y - y[centre])
    np.testing.assert_allclose(np.sort(distance), [0, 1, 1, 1, 1, 1, 1], atol=1e-12)


def test_flash_timing_and_values():
    movie = stimuli.flash(4, 1.0, dt=0.1, radius=1, t_pre=0.3, t_stim=0.2, t_post=0.1)
    assert movie.shape == (6, hex_lattice.n_columns(4)) and movie.dtype == np.float32
    disc = stimuli.hex_disc(4, 1)
    np.testing.assert_array_equal(movie[:3], 0.5)
    np.testing.assert_array_equal(movie[3:5][:, disc], 1.0)
    np.testing.assert_array_equal(movie[3:5][:, ~disc], 0.5)
    np.testing.assert_array_equal(movie[5], 0.5)
    off = stimuli.flash(4, 0.0, dt=0.1, radius=-1, t_pre=0.1, t_stim=0.1, t_post=0.0)
    np.testing.assert_array_equal(off[1], 0.0)


def test_moving_edge_sweeps_forward_and_reaches_centre_on_time():
    speed, dt = 5.0, 0.01
    movie = stimuli.moving_edge(5, angle=0, speed=speed, intensity=1.0, dt=dt, height=None)
    lit = movie == 1.0
    # the lit region only grows, from nothing to everything the sweep passed
    assert not lit[0].any() or lit[0].sum() < lit[-1].sum()
    assert (lit[1:] >= lit[:-1]).all()
    # sweep from start to end at `speed`
    expected_frames = round((stimuli.EDGE_END - stimuli.EDGE_START) / speed / dt)
    assert len(movie) == expected_frames
    centre = hex_lattice.columns(5)[0].size // 2
    k = stimuli.edge_crossing_frame(speed, dt)
    assert lit[k, centre] and not lit[k - 1, centre]
    assert k == pytest.approx(-stimuli.EDGE_START / speed / dt, abs=1)
    # angle 0 moves towards +x: at the crossing, columns at x > 0.5 are still dark
    x, _ = stimuli.column_positions(5)
    assert not lit[k][x > 0.5].any() and lit[k][x < -0.5].all()
    reverse = stimuli.moving_edge(5, 180, speed, 1.0, dt, height=None) == 1.0
    assert not reverse[k][x < -0.5].any() and reverse[k][x > 0.5].all()


def test_moving_edge_band_height():
    """flyvis's edges light a band across the motion: 90 deg moves along +y,
    so the band is |x| <= height / 2 and the lit part lies at y <= front."""
    movie = stimuli.moving_edge(6, 90, 10.0, 1.0, 0.01, height=2.0)
    x, y = stimuli.column_positions(6)
    lit = movie[-1] == 1.0
    assert lit.any()
    assert (np.abs(x[lit]) <= 1.0).all() and not lit[np.abs(x) > 1.0].any()
    np.testing.assert_array_equal(lit, (np.abs(x) <= 1.0) & (y <= stimuli.EDGE_END + 1e-9))


def test_off_edge_and_padding():
    movie = stimuli.moving_edge(3, 90, 10.0, 0.0, 0.02, t_pre=0.1, t_post=0.06)
    np.testing.assert_array_equal(movie[:5], 0.5)
    np.testing.assert_array_equal(movie[-3:], np.tile(movie[-4], (3, 1)))
    assert set(np.unique(movie)) == {0.0, 0.5}


def test_grating_period_and_mean():
    wavelength, speed, dt = 4.0, 2.0, 0.05  # temporal period 2 s = 40 frames
    movie = stimuli.grating(6, 30.0, wavelength, speed, dt, duration=3.0, contrast=0.8)
    np.testing.assert_allclose(movie[40], movie[0], atol=1e-5)
    assert np.abs(movie[20] - movie[0]).max() > 0.5  # half a period later: inverted
    assert movie.min() >= 0.5 * (1 - 0.8) - 1e-6 and movie.max() <= 0.5 * (1 + 0.8) + 1e-6
    assert movie.mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: stimuli.flash(3, 1.5, 0.01), "intensity"),
        (lambda: stimuli.flash(3, 1.0, 0.01, radius=-2), "radius"),
        (lambda: stimuli.flash(3, 1.0, 0.0), "dt"),
        (lambda: stimuli.moving_edge(3, 0, 0.0, 1.0, 0.01), "speed"),
        (lambda: stimuli.moving_edge(3, 0, 1.0, 1.0, 0.01, start=2, end=1), "end"),
        (lambda: stimuli.moving_edge(3, 0, 1.0, 1.0, 0.01, height=0.0), "height"),
        (lambda: stimuli.grating(3, 0, 0.0, 1.0, 0.01, 1.0), "wavelength"),
        (lambda: stimuli.grating(3, 0, 2.0, 1.0, 0.01, 1.0, contrast=1.0, mean=0.7), "exceeds"),
    ],
)
def test_bad_stimulus_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- Indices -------------------------------------------------------------------------


def test_flash_response_index_by_hand():
    on = np.array([0.0, 1.0, 2.0])
    off = np.array([0.0, -1.0, 0.5])
    # joint minimum -1 -> shift 1: on peak 3, off peak 1.5 -> (3 - 1.5) / 4.5
    assert tuning.flash_response_index(on, off) == pytest.approx(1 / 3)
    assert tuning.flash_response_index(off, on) == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="differ in shape"):
        tuning.flash_response_index(on, off[:2])


def test_direction_selectivity_of_known_tunings():
    cosine = 1 + np.cos(np.deg2rad(ANGLES - 90))  # vector sum 6 at 90 deg, total 12
    flat = np.ones(12)
    single = np.where(ANGLES == 210, 2.0, 0.0)
    peaks = np.stack([cosine, flat, single], axis=-1)  # (angles, 3 cells)
    dsi = tuning.direction_selectivity_index(np.stack([peaks, np.zeros_like(peaks)]), ANGLES)
    np.testing.assert_allclose(dsi[0], [0.5, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(dsi[1], 0.0)
    np.testing.assert_allclose(tuning.preferred_direction(peaks[:, [0, 2]], ANGLES), [90, 210])
    # ON and OFF share the larger denominator
    shared = tuning.direction_selectivity_index(np.stack([single, 2 * flat])[..., None], ANGLES)
    np.testing.assert_allclose(shared[:, 0], [2 / 24, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="n_intensities"):
        tuning.direction_selectivity_index(peaks, ANGLES)


def test_angular_difference_wraps_and_known_directions_pair_opposite_subtypes():
    np.testing.assert_allclose(tuning.angular_difference([350.0, 10.0, 90.0, 0.0], [10.0, 350.0, 270.0, 180.0]),
                               [20.0, 20.0, 180.0, 180.0])
    known = tuning.KNOWN_PREFERRED_DIRECTION
    for kind in ("T4", "T5"):  # a/b and c/d prefer opposite directions, at right angles to each other
        assert tuning.angular_difference(known[f"{kind}a"], known[f"{kind}b"]) == 180.0
        assert tuning.angular_difference(known[f"{kind}c"], known[f"{kind}d"]) == 180.0
        assert tuning.angular_difference(known[f"{kind}a"], known[f"{kind}c"]) == 90.0


def test_peak_responses_are_rectified():
    responses = np.array([[-3.0, 0.2], [-1.0, 0.7], [-2.0, 0.1]])
    np.testing.assert_allclose(tuning.peak_responses(responses), [0.0, 0.7])


# -- Running the protocols on the network --------------------------------------------


@pytest.fixture(scope="module")
def network():
    connectome = ol.load_connectome(3)
    return connectome, ol.init(jax.random.PRNGKey(0), connectome)


def test_photoreceptors_are_on_and_lamina_cells_off(network):
    connectome, params = network
    flashes = tuning.flash_responses(params, connectome, dt=0.02, t_pre=0.2, t_stim=0.4)
    fri = flashes.index()
    types = list(ol.spec_of(connectome).cell_types)
    # luminance depolarizes R1-R8, which inhibit L1-L3 (sign -1 in the connectome)
    assert all(fri[types.index(f"R{i}")] > 0.05 for i in range(1, 9))
    assert all(fri[types.index(name)] < 0 for name in ("L1", "L2", "L3"))
    assert flashes.on.shape == flashes.off.shape == (30, len(types))
    assert flashes.time[10] == 0.0 and flashes.window == slice(9, 31)


def test_edge_tuning_shapes_and_ranges(network):
    connectome, params = network
    result = tuning.edge_tuning(
        params, connectome, dt=0.02, angles=(0, 90, 180, 270), speeds=(13.0, 25.0)
    )
    assert result.peaks.shape == result.peaks_from_grey.shape == (2, 4, 2, 65)
    assert (result.peaks >= 0).all() and (result.peaks_from_grey >= 0).all()
    dsi = result.dsi()
    assert dsi.shape == (2, 65) and (dsi >= 0).all() and (dsi <= 1).all()
    assert result.preferred_direction().shape == (2, 65)
    # from grey: the same runs minus the grey level, so never above the flyvis
    # peak of a cell resting above 0, and the photoreceptors' ON response shows
    grey = np.asarray(ol.steady_state(params, 0.02).voltage)[ol.central_neurons(connectome)]
    resting_above = grey > 0
    assert (result.peaks_from_grey[..., resting_above] <= result.peaks[..., resting_above] + 1e-6).all()
    assert result.peaks_from_grey[0, :, :, types_index(connectome, "R1")].min() > 0.05
    from_grey = result.from_grey()
    silent = from_grey.silent()
    assert silent.any() and not silent.all()  # some types do not rise above grey for some edge
    np.testing.assert_array_equal(np.isnan(from_grey.dsi()), silent)
    np.testing.assert_array_equal(np.isnan(from_grey.preferred_direction()), silent)
    np.testing.assert_array_equal(from_grey.dsi()[~silent],
                                  tuning.direction_selectivity_index(result.peaks_from_grey, result.angles).mean(1)[~silent])
    assert result.dt == 0.02


def types_index(connectome, name):
    return ol.spec_of(connectome).cell_types.index(name)


def test_polarity_table_counts_matches_and_silent_types():
    types = ("R1", "L1", "T4a", "T5a", "Mi2")
    fri = np.array([0.2, 0.3, -5e-4, -2e-4, 0.4])  # R1 right, L1 wrong, T4a silent, T5a right (small), Mi2 unknown
    rows = tuning.polarity_table(fri, types, silent=np.array([False, False, True, False, False]))
    assert [r["predicted"] for r in rows] == ["ON", "ON", "none", "OFF", "ON"]
    assert [r["match"] for r in rows] == [True, False, False, True, None]
    text = tuning.polarity_markdown({"net": rows}, dt=0.02)
    assert "net: 2 of 4 types with a measured polarity match" in text
    assert "| Mi2 | unknown |" in text and "dt = 20 ms" in text


def test_flash_silence_is_the_size_of_the_response_not_of_the_fri():
    time = np.arange(6) * 0.1
    grey = np.full((6, 3), 0.8)  # three types resting at 0.8: flyvis's shift makes their FRIs small
    on, off = grey.copy(), grey.copy()
    on[2:, 0] += 0.01  # type 0: ON, by 0.01
    off[2:, 1] += 0.01  # type 1: OFF, by 0.01
    on[2:, 2] += 1e-5  # type 2: moves by less than SILENT_PEAK
    flashes = tuning.FlashResponses(time, on, off, slice(1, 6), dt=0.1)
    fri = flashes.index()
    assert abs(fri[0]) < 1e-2 and fri[0] > 0 and fri[1] < 0  # small, but a clear sign
    np.testing.assert_array_equal(flashes.silent(), [False, False, True])
    rows = tuning.polarity_table(fri, ("Mi1", "Tm1", "Tm2"), flashes.silent())
    assert [r["predicted"] for r in rows] == ["ON", "OFF", "none"]


def test_every_type_of_flyvis_ground_truth_has_its_polarity():
    # flyvis 1.2.0's groundtruth_utils.polarity: 32 types with a known preference, L4 OFF and L5 ON among them
    assert len(tuning.KNOWN_POLARITY) == 32
    assert tuning.KNOWN_POLARITY["L4"] == -1 and tuning.KNOWN_POLARITY["L5"] == +1
    assert set(tuning.KNOWN_POLARITY) <= set(ol.read_spec().cell_types)


def _edges_with(peaks_by_type: dict[str, np.ndarray], types: tuple[str, ...]) -> tuning.EdgeTuning:
    """EdgeTuning whose ON and OFF peaks of each named type are the given (angles,) curve at one speed."""
    peaks = np.zeros((2, len(ANGLES), 1, len(types)))
    for name, curve in peaks_by_type.items():
        peaks[:, :, 0, types.index(name)] = curve
    return tuning.EdgeTuning(ANGLES.astype(float), np.array([13.0]), np.array([1.0, 0.0]), peaks, peaks, dt=0.01)


def test_a_silent_type_has_no_direction_and_a_tuned_one_passes_or_fails_on_both_criteria():
    types = tuning.T4_T5
    near = 1 + np.cos(np.deg2rad(ANGLES - 180))  # T4a's measured 180 deg; DSI 0.5
    off_by_30 = 1 + np.cos(np.deg2rad(ANGLES - 330))  # 30 deg from T4b's measured 0 deg
    weak = 1 + 0.2 * np.cos(np.deg2rad(ANGLES - 90))  # DSI 0.1 at T4c's measured 90 deg
    wrong = 1 + np.cos(np.deg2rad(ANGLES - 0))  # T4d tuned, but 90 deg from its measured 270 deg
    noise = 1e-5 * (1 + np.cos(np.deg2rad(ANGLES - 180)))  # T5a: tuned noise, below SILENT_PEAK
    edges = _edges_with({"T4a": near, "T4b": off_by_30, "T4c": weak, "T4d": wrong, "T5a": noise}, types)
    rows = {r["cell_type"]: r for r in tuning.motion_table(edges, types)}
    assert rows["T4a"]["dsi"] == pytest.approx(0.5) and rows["T4a"]["direction_error"] == pytest.approx(0.0, abs=1e-9)
    assert rows["T4a"]["passes"] and rows["T4b"]["passes"]  # 30 deg off is within 45
    assert rows["T4c"]["dsi"] == pytest.approx(0.1) and not rows["T4c"]["passes"]
    assert rows["T4d"]["direction_error"] == pytest.approx(90.0) and not rows["T4d"]["passes"]
    for name in ("T5a", "T5b"):  # tuned noise and exact zeros alike: silent, no DSI, no direction, never 0 deg
        assert rows[name]["silent"] and not rows[name]["passes"]
        assert np.isnan(rows[name]["dsi"]) and np.isnan(rows[name]["preferred_direction"])
        assert np.isnan(rows[name]["direction_error"])
    assert rows["T5a"]["peak"] == pytest.approx(2e-5)
    text = tuning.motion_markdown(list(rows.values()), edges)
    assert "flyvis DSI), dt = 10 ms" in text and "2 of 8 types with DSI ≥ 0.3" in text
    assert "| T5b | OFF | — | —° | 0° | —° | 0 | silent |" in text
    assert edges.from_grey().definition == "from grey" and edges.definition == "flyvis"
    with pytest.raises(ValueError, match="lack the OFF edge"):
        tuning.motion_table(tuning.EdgeTuning(edges.angles, edges.speeds, np.array([1.0]), edges.peaks[:1],
                                              edges.peaks[:1], dt=0.01), types)


def test_plots_render(network, tmp_path):
    connectome, params = network
    types = ol.spec_of(connectome).cell_types
    flashes = tuning.flash_responses(params, connectome, dt=0.05, t_pre=0.1, t_stim=0.2)
    fig = tuning.plot_flash_responses(flashes, types)
    assert sum(ax.has_data() for ax in fig.axes) == 65
    fig.savefig(tmp_path / "flash.png", dpi=40)
    fig = tuning.plot_flash_response_indices(flashes.index(), types)
    fig.savefig(tmp_path / "fri.png")
    edges = tuning.edge_tuning(params, connectome, dt=0.05, angles=tuple(ANGLES), speeds=(25.0,))
    fig = tuning.plot_polar_tuning(edges, types)
    assert len(fig.axes) == 8 and all(ax.name == "polar" for ax in fig.axes)
    fig.savefig(tmp_path / "polar.png")
    for name in ("flash.png", "fri.png", "polar.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_tuning_command_prints_and_writes_the_tables_and_refuses_bad_input_before_writing(tmp_path, capsys):
    import json

    from connectofly.cli.main import main

    out = tmp_path / "tuning"
    argv = ["tuning", "--lobe", "untrained", "--extent", "2", "--dt", "0.02", "--speeds", "13", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "untrained: " in printed and "of 32 types with a measured polarity match" in printed
    assert "T4/T5 direction selectivity (flyvis DSI), dt = 20 ms, edges at 13 columns/s" in printed
    summary = json.loads((out / "tuning.json").read_text())
    assert summary["lobe"] == "untrained" and summary["extent"] == 2 and summary["dt_s"] == 0.02
    assert [r["cell_type"] for r in summary["motion"]] == list(tuning.T4_T5)
    for png in ("fri.png", "flash_responses.png", "t4_t5_tuning.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "polarity.md").read_text().strip() in printed
    bad_lobe = tmp_path / "lobe.npz"
    bad_lobe.write_text("not an npz")
    for bad in (["--lobe", str(bad_lobe)], ["--lobe", str(tmp_path / "missing.npz")], ["--speeds", "0"],
                ["--speeds", ","], ["--dt", "-1"], ["--out", str(bad_lobe)]):
        refused = tmp_path / "refused"
        assert main([*argv[:-2], *bad] + ([] if "--out" in bad else ["--out", str(refused)])) == 2
        assert not refused.exists()

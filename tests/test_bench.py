"""The controller registry and the benchmark suite (statistics, tables, plots, CLI)."""

import csv
import math
import shutil

import numpy as np
import pytest

from connectofly.agents.registry import CONTROLLERS, make_controller, register
from connectofly.agents.rollout import Rollout
from connectofly.cli.main import main
from connectofly.envs.fly_env import FlyEnv
from connectofly.training import bench


def test_wilson_interval_matches_the_textbook_values():
    # 10 of 20: 0.5 [0.299, 0.701] (Wilson 1927; e.g. Newcombe 1998, table I method 3)
    rate, low, high = bench.wilson_interval(10, 20)
    assert rate == 0.5 and low == pytest.approx(0.2993, abs=1e-3) and high == pytest.approx(0.7007, abs=1e-3)
    rate, low, high = bench.wilson_interval(0, 20)
    assert rate == 0 and low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.1611, abs=1e-3)


def test_mean_interval_stays_in_the_values_range_and_needs_five_values():
    """Two quick successes and three slow ones: a Student-t interval would reach below 0 s."""
    times = [0.05, 0.1, 2.4, 2.6, 2.9, math.nan]
    mean, low, high = bench.mean_interval(times)
    assert mean == pytest.approx(1.61) and 0.05 <= low < mean < high <= 2.9
    assert bench.mean_interval(times) == (mean, low, high)  # seeded: the same summary each time
    mean, low, high = bench.mean_interval([0.3, 0.5])  # below five values: the mean alone
    assert mean == pytest.approx(0.4) and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in bench.mean_interval([math.nan]))


def test_mean_interval_agrees_with_student_t_on_a_large_normal_sample():
    values = np.random.default_rng(1).normal(10.0, 2.0, 400)
    half = 1.966 * values.std(ddof=1) / np.sqrt(400)  # t(0.975, 399) = 1.966
    mean, low, high = bench.mean_interval(values)
    assert low == pytest.approx(mean - half, abs=0.05 * half) and high == pytest.approx(mean + half, abs=0.05 * half)


def test_registry_builds_controllers_and_refuses_bad_requests():
    env = FlyEnv(duration=0.01)
    assert make_controller("hybrid", env).control_dt == env.control_dt
    with pytest.raises(ValueError, match="unknown controller"):
        make_controller("nope", env)
    with pytest.raises(ValueError, match="needs a visual task"):
        make_controller("connectome", env)
    with pytest.raises(ValueError, match="already registered"):
        register("hybrid", lambda env: None, "again")
    assert {"cpg", "hybrid", "visual_taxis", "connectome", "connectome_vnc"} <= set(CONTROLLERS)


def test_suite_runs_every_controller_on_every_seed_and_writes_tables_and_plots(tmp_path):
    entries = [bench.Entry("hybrid"), bench.Entry("visual_taxis")]
    jobs = bench.jobs_for(entries, ["visual_taxis"], [0, 1], "flat", 0.1, None)
    rows = bench.run_suite(jobs, workers=1, progress=False)
    assert [(r["controller"], r["seed"]) for r in rows] == [("hybrid", 0), ("hybrid", 1), ("visual_taxis", 0),
                                                           ("visual_taxis", 1)]
    for row in rows:
        assert row["duration"] == pytest.approx(0.1) and not row["success"] and not row["fell"]
        assert 0 < row["speed"] < 50 and row["termination"] == "time limit"
    # same seed, same layout and pose: the first step of both controllers starts at the same point
    assert rows[0]["path"][0] == rows[2]["path"][0]
    summary = bench.summarize(rows)
    assert [(s["controller"], s["n"]) for s in summary] == [("hybrid", 2), ("visual_taxis", 2)]
    bench.write_results(rows, summary, tmp_path)
    bench.plot_summary(summary, tmp_path / "bench.png")
    bench.plot_paths(rows, tmp_path / "paths.png")
    table = (tmp_path / "summary.md").read_text()
    assert "| visual_taxis | hybrid | 2 | 0% [0, 66] |" in table
    assert (tmp_path / "bench.png").stat().st_size > 10_000 and (tmp_path / "episodes.csv").read_text().count("\n") == 5


def test_follow_success_is_the_fraction_of_time_tracking():
    rollout = Rollout(times=[0.0, 1.0], positions=[np.zeros(3), np.ones(3)], task_success=[True, True, False, False])
    job = bench.Job(bench.Entry("x"), "follow_object", "flat", 0, 1.0)
    row = bench.episode_row(job, rollout)
    assert row["tracking"] == 0.5 and row["success"] == (0.5 >= bench.FOLLOW_SUCCESS)
    fallen = bench.episode_row(job, Rollout(times=[0.0, 1.0], positions=[np.zeros(3)] * 2, task_success=[True],
                                              termination="flipped"))
    assert fallen["tracking"] == 1.0 and fallen["fell"] and not fallen["success"]
    assert row["speed"] == pytest.approx(np.sqrt(2))


@pytest.mark.parametrize("argv, message", [
    (["--controllers", "hybrid,nope"], "unknown"),
    (["--tasks", "walk", "--controllers", "connectome"], "has no vision"),
    (["--controllers", "connectome", "--silence", "Tm99"], "cannot silence"),
    (["--controllers", "connectome", "--silence", "19A"], "connectome_vnc"),
    (["--controllers", "connectome", "--adapted"], "--adapted needs --silence"),
    (["--controllers", "connectome_vnc", "--silence", "19A", "--adapted"], "optic-lobe cell types"),
    (["--seeds", "0"], "must be"),
    (["--controllers", "hybrid,visual_taxis", "--readout", "readout.npz"], "needs a connectome controller"),
    (["--controllers", "connectome", "--readout", "missing/readout.npz"], "no such file"),
])
def test_bench_cli_refuses_bad_arguments_before_running(tmp_path, capsys, argv, message):
    assert main(["bench", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_bench_cli_reuses_the_episodes_it_already_holds(tmp_path):
    args = ["bench", "--out", str(tmp_path), "--controllers", "hybrid", "--tasks", "walk", "--seeds", "1",
            "--duration", "0.05", "--workers", "1", "--no-video"]
    assert main(args) == 0
    first = (tmp_path / "episodes.csv").read_text()
    assert main([*args[:-1], "--seeds", "2", "--no-video"]) == 0  # seed 0 reused, seed 1 run
    rows = (tmp_path / "episodes.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1] == first.splitlines()[1]  # the wall time too: not run again
    assert (tmp_path / "summary.md").exists() and (tmp_path / "paths.png").exists()
    assert main(args[:-1]) == 0  # a video asked for: seed 0 runs again to film it
    assert (tmp_path / "videos" / "walk-hybrid.mp4").stat().st_size > 0
    filmed = (tmp_path / "episodes.csv").read_text().splitlines()[1]
    assert filmed != rows[1]  # run again (its wall time differs)
    assert main(args[:-1]) == 0  # filmed now: reused
    assert (tmp_path / "episodes.csv").read_text().splitlines()[1] == filmed


def test_bench_cli_benches_another_readout_beside_the_embedded_one(tmp_path):
    from connectofly.agents.connectome import embedded_readout

    run = tmp_path / "my-run"
    run.mkdir()
    shutil.copy(embedded_readout("follow_object"), run / "readout.npz")
    assert main(["bench", "--out", str(tmp_path / "bench"), "--controllers", "connectome", "--tasks", "visual_taxis",
                 "--seeds", "1", "--duration", "0.02", "--workers", "1", "--no-video",
                 "--readout", str(run / "readout.npz")]) == 0
    summary = (tmp_path / "bench" / "summary.md").read_text()
    assert "| connectome |" in summary and "| connectome [my-run] |" in summary
    rows = {row["controller"]: row for row in csv.DictReader((tmp_path / "bench" / "episodes.csv").open())}
    assert rows["connectome"]["speed"] != rows["connectome [my-run]"]["speed"]  # the other readout steered


def test_bench_cli_refuses_a_readout_that_does_not_fit(tmp_path, capsys):
    path = tmp_path / "readout.npz"
    np.savez(path, weight=np.zeros((2, 3, 24)), bias=np.float32(1), cell_types=np.array(["T4a", "T4b", "T4c"]),
             n_regions=24)
    assert main(["bench", "--out", str(tmp_path), "--controllers", "connectome", "--readout", str(path)]) == 2
    assert "does not fit" in capsys.readouterr().err

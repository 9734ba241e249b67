"""Bad command-line input: one line on stderr naming the argument, exit code 2, and nothing written.

Every refusal here comes before a command simulates or trains anything; Ctrl-C
during training ends in one line and code 130.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from connectofly.cli.main import main


@pytest.fixture
def inputs(tmp_path):
    """A file where a folder is expected, a truncated .npz and a text file named .npz, under tmp_path/in."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "file").write_text("not a folder\n")
    np.savez(folder / "whole.npz", weight=np.arange(2000.0))
    (folder / "cut.npz").write_bytes((folder / "whole.npz").read_bytes()[:1500])
    (folder / "text.npz").write_text("weight = 1\n")
    return folder


def everything_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refuse(argv: list[str], tmp_path, capsys) -> str:
    """Run the CLI; check that it refused with code 2 and one line, writing nothing; return the line."""
    before = everything_under(tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("connectofly: error: "), err
    assert everything_under(tmp_path) == before
    return err


OUT = "{tmp}/out"
FILE = "{tmp}/in/file"
CUT = "{tmp}/in/cut.npz"
TEXT = "{tmp}/in/text.npz"
QUICK_WALK = ["walk", "--duration", "0.01", "--no-video"]
QUICK_FLOW = ["optic-flow", "--extent", "2", "--n-frames", "8", "--warmup-frames", "2", "--batch", "2",
              "--texture-pixels", "32", "--steps", "1"]


@pytest.mark.parametrize("argv, named", [
    # an output folder that is a file, or lies under one
    ([*QUICK_WALK, "--output-dir", FILE], "--output-dir"),
    ([*QUICK_WALK, "--output-dir", FILE + "/runs"], "--output-dir"),
    (["train", "--updates", "1", "--output-dir", FILE], "--output-dir"),
    ([*QUICK_FLOW, "--out", FILE], "--out"),
    (["vnc", "--init", "embedded", "--steps", "0", "--out", FILE], "--out"),
    (["bench", "--controllers", "hybrid", "--tasks", "walk", "--seeds", "1", "--out", FILE + "/bench"], "--out"),
    (["dn-readout", "--out", FILE], "--out"),
    # truncated .npz files
    (["vnc", "--out", OUT, "--init", CUT, "--steps", "0"], "--init"),
    (["bench", "--out", OUT, "--controllers", "connectome", "--readout", CUT], "--readout"),
    (["dn-readout", "--out", OUT, "--lobe", CUT], "--lobe"),
    ([*QUICK_WALK, "--task", "visual_taxis", "--controller", "connectome", "--lobe", CUT, "--output-dir", OUT],
     "--lobe"),
    ([*QUICK_WALK, "--lobe", "untrained", "--output-dir", OUT], "--lobe"),  # the CPG has no optic lobes
    (["lobe-import", TEXT, "--out", OUT + "/lobe.npz"], "text.npz: not a torch checkpoint"),
    (["lobe-import", "{tmp}/in", "--out", OUT + "/lobe.npz"], "no flyvis checkpoint"),
    (["lobe-import", "{tmp}/in", "--out", FILE + "/lobe.npz"], "--out"),
    (["train", "--env", "VisualTaxis", "--policy", "connectome", "--start-readout", CUT, "--output-dir", OUT],
     "--start-readout"),
    # numbers out of range
    (["train", "--learning-rate", "-1", "--output-dir", OUT], "--learning-rate"),
    (["train", "--learning-rate", "nan", "--output-dir", OUT], "--learning-rate"),
    (["train", "--learning-rate", "inf", "--output-dir", OUT], "--learning-rate"),
    (["train", "--num-envs", "0", "--output-dir", OUT], "--num-envs"),
    (["train", "--episode-duration", "-0.5", "--output-dir", OUT], "--episode-duration"),
    (["train", "--control-dt", "0.00015", "--output-dir", OUT], "--control-dt"),
    ([*QUICK_WALK, "--seed", "-5", "--output-dir", OUT], "--seed"),
    (["train", "--seed", "-5", "--output-dir", OUT], "--seed"),
    (["vnc", "--seed", "-5", "--out", OUT], "--seed"),
    ([*QUICK_FLOW, "--seed", "-5", "--out", OUT], "--seed"),
    # run names that leave the output folder
    ([*QUICK_WALK, "--output-dir", OUT + "/a", "--run-name", "../../escaped"], "--run-name"),
    (["train", "--output-dir", OUT + "/a", "--run-name", "../../escaped"], "--run-name"),
    (["train", "--output-dir", OUT, "--run-name", "sub/run"], "--run-name"),
    # refused by the command after parsing: no empty run folder is left
    ([*QUICK_WALK, "--controller", "visual_taxis", "--output-dir", OUT, "--run-name", "r"], "--task"),
])
def test_bad_input_is_refused_in_one_line_naming_it_and_nothing_is_written(argv, named, inputs, tmp_path, capsys):
    line = refuse([arg.format(tmp=tmp_path) for arg in argv], tmp_path, capsys)
    assert named in line


def test_a_text_file_given_as_an_npz_is_called_that(inputs, tmp_path, capsys):
    line = refuse(["bench", "--out", str(tmp_path / "out"), "--controllers", "connectome", "--readout",
                   str(inputs / "text.npz")], tmp_path, capsys)
    assert "--readout" in line and "not an .npz" in line and "pickle" not in line


def test_ctrl_c_while_training_ends_in_one_line_and_code_130(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "connectofly.cli.main", *QUICK_FLOW[:-1], "100000", "--checkpoint-every", "2",
               "--out", str(out)]
    training = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 80
    while not (out / "checkpoints" / "2").exists() and training.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    training.send_signal(signal.SIGINT)  # as Ctrl-C does
    err = training.communicate(timeout=60)[1]
    assert training.returncode == 130, err
    assert err.splitlines()[-1] == "connectofly: interrupted" and "Traceback" not in err


def test_ctrl_c_reaches_the_bench_workers_too_and_still_ends_in_one_line(tmp_path):
    """A terminal's Ctrl-C signals the whole process group: the workers must leave it to
    the command (no traceback of their own), and the episodes not yet started are dropped."""
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "connectofly.cli.main", "bench", "--controllers", "cpg", "--tasks", "walk",
               "--seeds", "20", "--duration", "0.5", "--workers", "2", "--no-video", "--out", str(out)]
    bench = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # its own process group, as a terminal gives it
    deadline = time.monotonic() + 80
    while not (out / "episodes.jsonl").exists() and bench.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(bench.pid, signal.SIGINT)
    err = bench.communicate(timeout=60)[1]
    assert bench.returncode == 130, err
    assert err.splitlines()[-1] == "connectofly: interrupted" and "Traceback" not in err, err
    assert len((out / "episodes.jsonl").read_text().splitlines()) < 20


def test_verbose_shows_the_traceback_of_a_refused_command(tmp_path):
    """One line by default; with --verbose the exception itself, for a bug report."""
    bad = ["walk", "--output-dir", str(tmp_path / "f"), "--duration", "0.01"]
    (tmp_path / "f").write_text("a file, not a folder")
    assert main(bad) == 2
    with pytest.raises((ValueError, OSError)):
        main(["--verbose", *bad])

"""Shared test set-up: connectome tables from ../shared/data when present, one XLA
cache per run, and the fast tier's per-test time limit."""

import atexit
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pytest

# One persistent XLA compilation cache per test run, shared by the pytest-xdist
# workers (they inherit this environment): tests (and in-process CLI runs) that
# compile the same MJX programs load them instead of compiling again, tens of
# seconds each on a CPU. Set before anything imports JAX, which reads it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = tempfile.mkdtemp(prefix="connectofly-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
    atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "connectomes"
if "CONNECTOFLY_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["CONNECTOFLY_DATA_DIR"] = str(_SHARED)

# Before any test module imports MuJoCo, which reads MUJOCO_GL once.
from connectofly.videos.gl import select_headless_gl  # noqa: E402

select_headless_gl()


# -- the fast tier's guard ---------------------------------------------------------
# A test outside the slow tier may take at most this long, set-up and tear-down
# included, so that a slow test is caught in the change that adds it. It fails
# only when both its wall time and its CPU time (this process's threads and its
# waited-for subprocesses) exceed the limit: on a loaded machine wall time
# stretches while the work done, the CPU time, does not.
TEST_LIMIT_S = float(os.environ.get("CONNECTOFLY_TEST_LIMIT_S", "90"))
_START = pytest.StashKey[tuple[float, float]]()  # wall and CPU seconds when set-up began


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_START] = (time.perf_counter(), _cpu_seconds())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "teardown" or _START not in item.stash or item.get_closest_marker("slow"):
        return
    wall_start, cpu_start = item.stash[_START]
    wall, cpu = time.perf_counter() - wall_start, _cpu_seconds() - cpu_start
    report.user_properties.append(("seconds", (wall, cpu)))  # for the summary, across xdist workers
    if wall > TEST_LIMIT_S and cpu > TEST_LIMIT_S and report.passed:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} took {wall:.0f} s ({cpu:.0f} s of CPU), over the fast tier's "
                           f"{TEST_LIMIT_S:.0f} s per test (set-up and tear-down included): make it smaller, "
                           "or mark it slow and keep a fast sibling that checks the same property on a smaller case")



_SECONDS: dict[str, tuple[float, float]] = {}


def pytest_runtest_logreport(report):
    for name, value in report.user_properties:
        if name == "seconds":
            _SECONDS[report.nodeid] = value


def pytest_terminal_summary(terminalreporter):
    if not _SECONDS:
        return
    closest = sorted(_SECONDS.items(), key=lambda kv: -max(kv[1]))[:10]
    terminalreporter.section(f"closest to the {TEST_LIMIT_S:.0f} s limit (wall, CPU; set-up and tear-down included)")
    for nodeid, (wall, cpu) in closest:
        terminalreporter.write_line(f"{wall:7.1f} s {cpu:7.1f} s  {nodeid}")
    wall = sum(w for w, _ in _SECONDS.values())
    terminalreporter.write_line(f"{len(_SECONDS)} tests outside the slow tier, {wall:.0f} s of test time in all")

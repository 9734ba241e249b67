"""Shared test set-up: connectome tables from ../shared/data when present."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# One persistent XLA compilation cache per test session: tests (and in-process
# CLI runs) that compile the same MJX programs load them instead of compiling
# again, minutes each on a CPU. Set before anything imports JAX, which reads it.
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

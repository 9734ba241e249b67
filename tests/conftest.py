"""Shared test set-up: connectome tables from ../shared/data when present."""

import os
import tempfile
from pathlib import Path

# One persistent XLA compilation cache per test session: tests (and in-process
# CLI runs) that compile the same MJX programs load them instead of compiling
# again, minutes each on a CPU. Set before anything imports JAX, which reads it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="connectofly-xla-cache-"))

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "connectomes"
if "CONNECTOFLY_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["CONNECTOFLY_DATA_DIR"] = str(_SHARED)

# Before any test module imports MuJoCo, which reads MUJOCO_GL once.
from connectofly.videos.gl import select_headless_gl  # noqa: E402

select_headless_gl()

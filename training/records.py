"""Per-step training records (``loss.csv``, ``history.jsonl``) that always agree with the checkpoint.

A row goes to disk as soon as it is written (the file is line-buffered), so a
run killed between checkpoints keeps every row it made. The steps after its
last checkpoint are then made again when it resumes, so :func:`open_record`
first drops their rows: after a resume the record holds each step once, in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TextIO


def open_record(path: Path, steps_done: int, steps_of: Callable[[str], int]) -> TextIO:
    """``path`` opened to append one line per step, after keeping only the rows of the first ``steps_done`` steps.

    Args:
        path: the record; made if missing.
        steps_done: the step the run starts from (its checkpoint's; 0 for a fresh run).
        steps_of: how many steps were done when a line's row was written.

    A last line without its newline (cut off by a kill) is dropped too. Close the file when done.
    """
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    path.write_text("".join(line for line in lines if line.endswith("\n") and steps_of(line) <= steps_done))
    return path.open("a", buffering=1)  # line-buffered: each row is flushed when its newline is written

"""Pools of worker processes that leave Ctrl-C to the process that started them.

Ctrl-C signals the terminal's whole process group, workers included; a worker
that handled it would print its own traceback beside the command's one line.
Workers here ignore SIGINT; the parent, on Ctrl-C (or any error), cancels the
jobs not yet started and lets the running ones end. Workers are spawned, not
forked: JAX does not survive a fork.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context


def _start_worker(initializer: Callable | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def worker_pool(workers: int, initializer: Callable | None = None, initargs: tuple = ()) -> Iterator[ProcessPoolExecutor]:
    """``workers`` spawned processes, each first running ``initializer(*initargs)``."""
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                               initargs=(initializer, initargs))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)

"""Orbax checkpoint directories of training states (any PyTree), keyed by step.

Shared by PPO (:mod:`connectofly.training.ppo`, keyed by update) and the BPTT
trainers (keyed by optimizer step). Orbax stores plain arrays only, so typed
PRNG keys, zero-size arrays and Python scalars are converted on the way in and
restored from a template of the same structure on the way out.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def _is_key(x) -> bool:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(tree):
    """What orbax can store: typed PRNG keys as raw uint32 data, empty arrays as one zero.

    Python scalars (constants such as the normalizer's ``std_eps``) are stored
    as arrays and restored from the template.
    """

    def convert(x):
        if not hasattr(x, "dtype"):
            return np.asarray(x)
        if _is_key(x):
            return jax.random.key_data(x)
        return np.zeros(1, x.dtype) if x.size == 0 else x

    return jax.tree.map(convert, tree)


def _from_storable(tree, like):
    """Undo :func:`_storable`, with ``like`` (same structure) telling keys and empty arrays apart."""

    def restore(x, ref):
        if not hasattr(ref, "dtype"):
            return ref
        if _is_key(ref):
            return jax.random.wrap_key_data(x)
        return ref if ref.size == 0 else x

    return jax.tree.map(restore, tree, like)


@contextlib.contextmanager
def _ctrl_c_deferred():
    """Hold SIGINT back until the block ends, then raise KeyboardInterrupt.

    A KeyboardInterrupt inside an orbax save leaves its writer threads running
    into interpreter shutdown, where the process could hang (seen once in CI:
    ``cannot schedule new futures after interpreter shutdown``). Only the main
    thread can install a handler; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


class Checkpoints:
    """An orbax checkpoint directory of one kind of training state, keyed by step."""

    def __init__(self, directory: str | Path, max_to_keep: int = 3) -> None:
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.manager = ocp.CheckpointManager(
            Path(directory).absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep)
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        """Write ``state`` at ``step`` and wait for it; a Ctrl-C meanwhile takes effect once it is written."""
        with _ctrl_c_deferred():
            self.manager.save(step, args=self._ocp.args.StandardSave(_storable(state)))
            self.manager.wait_until_finished()

    def restore(self, like, step: int | None = None):
        """The checkpoint at ``step`` (default: latest), shaped like ``like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
        restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(_storable(like)))
        return _from_storable(restored, like)

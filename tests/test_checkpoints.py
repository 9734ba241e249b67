"""training/checkpoints.py: a Ctrl-C during a save does not cut it short."""

import os
import signal

import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.training.checkpoints import Checkpoints


def test_a_ctrl_c_during_a_save_takes_effect_once_the_checkpoint_is_written(tmp_path):
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    state = {"weights": jnp.arange(3.0), "step": jnp.asarray(7)}
    wait = checkpoints.manager.wait_until_finished

    def interrupted_while_writing():
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C does, while orbax writes
        wait()

    checkpoints.manager.wait_until_finished = interrupted_while_writing
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(1, state)
    assert checkpoints.latest_step() == 1
    restored = checkpoints.restore(state)
    np.testing.assert_array_equal(restored["weights"], state["weights"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back

"""The ``connectofly`` command line (:mod:`connectofly.cli.main`)."""

import contextlib
import io

# MJX prints "Failed to import warp" on every install without NVIDIA Warp (every
# CPU install) when it is first imported, by brax or by us. The command line
# imports it once, quietly, so a terminal shows only what connectofly says;
# asking for impl="warp" without Warp still fails with MJX's own error.
with contextlib.redirect_stdout(io.StringIO()):
    import mujoco.mjx  # noqa: F401

"""Reverse-mode gradients through MJX physics.

MJX's constraint solver iterates in a ``jax.lax.while_loop`` (until converged
or ``opt.iterations``), and JAX cannot reverse-differentiate a while loop.
Inside :func:`differentiable_solver`, the solver's loop is traced as a
``lax.scan`` of ``opt.iterations`` steps that turn into no-ops once the
solver's own stopping test is met: the same iterates, and reverse mode works.
The scan always has ``opt.iterations`` slots, so :func:`differentiable_model`
caps them at ``SOLVER_ITERATIONS``; at dt = 0.1 ms, warm-started Newton
needs no more (measured: CPG speeds over 0.3 s within 4 % of 100 iterations;
one iteration diverges, two tip the fly over).

This swaps the module-level ``jax`` seen by ``mujoco.mjx._src.solver`` while a
function is traced; it relies on mujoco-mjx 3.16's internals (pinned in
``pyproject.toml``), is not thread-safe, and is checked by the
finite-difference test in ``tests/test_gradients.py``.
"""

from __future__ import annotations

import contextlib
import copy

import jax
import mujoco
from mujoco.mjx._src import solver as _mjx_solver

SOLVER_ITERATIONS = 4


def differentiable_model(model: mujoco.MjModel, iterations: int = SOLVER_ITERATIONS) -> mujoco.MjModel:
    """A copy of ``model`` with at most ``iterations`` constraint-solver iterations per step."""
    if iterations < 1:
        raise ValueError(f"iterations={iterations} must be >= 1")
    capped = copy.copy(model)
    capped.opt.iterations = iterations
    return capped


def _scan_while_loop(cond_fun, body_fun, init_val, max_iterations: int):
    return _mjx_solver._while_loop_scan(cond_fun, body_fun, init_val, max_iterations)


class _Proxy:
    """``target`` with some attributes replaced."""

    def __init__(self, target, **overrides) -> None:
        self._target = target
        self.__dict__.update(overrides)

    def __getattr__(self, name: str):
        return getattr(self._target, name)


@contextlib.contextmanager
def differentiable_solver(max_iterations: int = SOLVER_ITERATIONS):
    """While active, MJX steps traced here have a reverse-differentiable solver loop.

    ``max_iterations`` should be at least the model's ``opt.iterations``
    (:func:`differentiable_model`). Use it around the code that *traces* (the
    body of the function given to ``jax.grad``/``jax.jit``)::

        def loss(params):
            with differentiable_solver():
                return rollout(params)
    """
    scan_loop = lambda cond, body, init: _scan_while_loop(cond, body, init, max_iterations)  # noqa: E731
    original = _mjx_solver.jax
    _mjx_solver.jax = _Proxy(jax, lax=_Proxy(jax.lax, while_loop=scan_loop))
    try:
        yield
    finally:
        _mjx_solver.jax = original

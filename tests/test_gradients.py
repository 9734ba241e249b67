"""Gradients through MJX physics against finite differences, and the BPTT gait's pieces."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.agents.cpg import TRIPOD, tripod_params
from connectofly.envs.body import build_primitive_model
from connectofly.envs.mjx_grad import SOLVER_ITERATIONS, differentiable_model
from connectofly.training.bptt_cpg import AMPLITUDE_RANGE, FREQUENCY_RANGE, initial_gait, to_cpg_params

# In float64 (the subprocess turns on jax_enable_x64) central differences
# with a step small enough not to cross a contact event agree with reverse
# mode to many digits; larger steps jump across contacts.
_GRADIENT_CHECK = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from connectofly.envs import mjx_physics
    from connectofly.envs.body import build_primitive_model
    from connectofly.envs.mjx_grad import differentiable_model
    from connectofly.training.bptt_cpg import initial_gait, loss

    model = differentiable_model(build_primitive_model())
    body = mjx_physics.load(model)
    gait = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), initial_gait())
    phases = jnp.asarray(np.random.default_rng(0).uniform(0, 2 * np.pi, (1, 6)))
    objective = jax.jit(lambda g: loss(g, body, model, phases, 20))
    gradient = jax.jit(jax.grad(lambda g: loss(g, body, model, phases, 20)))(gait)
    flat_gradient = np.concatenate([np.ravel(x) for x in jax.tree.leaves(gradient)])
    rng = np.random.default_rng(1)
    eps = 1e-5
    for _ in range(2):
        direction = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), gait)
        flat_direction = np.concatenate([np.ravel(x) for x in jax.tree.leaves(direction)])
        shifted = lambda s: jax.tree.map(lambda x, d: x + s * eps * d, gait, direction)
        finite = (float(objective(shifted(1))) - float(objective(shifted(-1)))) / (2 * eps)
        print("check", float(flat_gradient @ flat_direction), finite)
    """
)


@pytest.fixture(scope="module")
def gradient_check():
    result = subprocess.run([sys.executable, "-c", _GRADIENT_CHECK], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    # MJX may print import notices on stdout; the results are the "check" lines.
    return [tuple(map(float, line.split()[1:])) for line in result.stdout.splitlines() if line.startswith("check ")]


def test_reverse_mode_gradient_through_mjx_matches_finite_differences(gradient_check):
    assert len(gradient_check) == 2
    for reverse, finite in gradient_check:
        assert abs(reverse) > 1e-2  # the loss depends on the gait over 20 ms
        assert reverse == pytest.approx(finite, rel=1e-3)


def test_differentiable_model_is_a_copy_with_capped_solver_iterations():
    model = build_primitive_model()
    capped = differentiable_model(model)
    assert capped.opt.iterations == SOLVER_ITERATIONS < model.opt.iterations
    np.testing.assert_array_equal(capped.body_mass, model.body_mass)
    with pytest.raises(ValueError, match="iterations"):
        differentiable_model(model, 0)


def test_initial_gait_is_the_tripod():
    params = to_cpg_params(initial_gait())
    tripod = tripod_params()
    np.testing.assert_allclose(params.frequencies, tripod.frequencies, rtol=1e-5)
    np.testing.assert_allclose(params.amplitudes, tripod.amplitudes, rtol=1e-5)
    # Biases ψ_j - ψ_i equal the tripod's π between tripods, modulo 2π.
    np.testing.assert_allclose(np.cos(params.phase_biases), np.cos(tripod.phase_biases), atol=1e-6)
    assert TRIPOD.shape == (6,)


def test_gait_parameters_stay_in_their_ranges_for_any_logits():
    gait = initial_gait()
    extreme = jax.tree.map(lambda x: jnp.full_like(x, 1e3), gait)
    params = to_cpg_params(extreme)
    assert float(params.frequencies.max()) <= FREQUENCY_RANGE[1]
    assert float(params.amplitudes.max()) <= AMPLITUDE_RANGE[1]
    params = to_cpg_params(jax.tree.map(lambda x: -x, extreme))
    assert float(params.frequencies.min()) >= FREQUENCY_RANGE[0]
    assert float(params.amplitudes.min()) >= AMPLITUDE_RANGE[0]


def test_the_solver_patch_is_undone_after_tracing():
    from mujoco.mjx._src import solver

    from connectofly.envs.mjx_grad import differentiable_solver

    with differentiable_solver():
        assert solver.jax is not jax and solver.jax.lax.while_loop is not jax.lax.while_loop
        assert solver.jax.numpy is jax.numpy  # everything else is the real jax
    assert solver.jax is jax

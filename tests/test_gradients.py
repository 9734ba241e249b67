"""Gradients through MJX physics against finite differences, and the BPTT gait's pieces.

Reverse mode through MJX needs :func:`~connectofly.envs.mjx_grad.differentiable_solver`
(the solver's while loop traced as a scan). The fast tier checks it on a small
contact scene, a leg on a hinge and a sliding box; the slow tier on the fly's
primitive body under the BPTT gait's loss (three minutes of compiling on 2 cores).
"""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from connectofly.agents.cpg import TRIPOD, tripod_params
from connectofly.envs.body import build_primitive_model
from connectofly.envs.mjx_grad import SOLVER_ITERATIONS, differentiable_model, differentiable_solver
from connectofly.training.bptt_cpg import AMPLITUDE_RANGE, FREQUENCY_RANGE, initial_gait, to_cpg_params

# In float64 central differences with a step small enough not to cross a
# contact event agree with reverse mode to many digits; larger steps jump
# across contacts.
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
def gradient_check():  # slow: the fly's step under jax.grad compiles for minutes
    result = subprocess.run([sys.executable, "-c", _GRADIENT_CHECK], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    # MJX may print import notices on stdout; the results are the "check" lines.
    return [tuple(map(float, line.split()[1:])) for line in result.stdout.splitlines() if line.startswith("check ")]


@pytest.mark.slow
def test_reverse_mode_gradient_through_mjx_matches_finite_differences(gradient_check):
    assert len(gradient_check) == 2
    for reverse, finite in gradient_check:
        assert abs(reverse) > 1e-2  # the loss depends on the gait over 20 ms
        assert reverse == pytest.approx(finite, rel=1e-3)


# A position-controlled leg whose capsule touches the floor, and a box sliding on
# it (four corner contacts): pyramidal friction cones and MJX's Newton solver, as
# on the fly.
_CONTACT_SCENE = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <geom type="plane" size="1 1 0.1"/>
    <body pos="0 0 0.1">
      <joint name="hip" type="hinge" axis="0 1 0" damping="0.01"/>
      <geom type="capsule" fromto="0 0 0 0.08 0 -0.095" size="0.01" mass="0.05"/>
    </body>
    <body pos="0.3 0 0.022">
      <freejoint/>
      <geom type="box" size="0.02 0.02 0.02" mass="0.1"/>
    </body>
  </worldbody>
  <actuator><position joint="hip" kp="2"/></actuator>
</mujoco>
"""


def test_reverse_mode_through_the_contact_solver_matches_finite_differences():
    """20 steps with 5 contacts: d(weighted final state)/d(hip target, box's initial velocity)."""
    with jax.enable_x64(True):
        model = differentiable_model(mujoco.MjModel.from_xml_string(_CONTACT_SCENE))
        assert model.opt.solver == mujoco.mjtSolver.mjSOL_NEWTON and model.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL
        mjx_model = mjx.put_model(model)
        initial = mjx.make_data(mjx_model)

        def objective(p):
            data = initial.replace(qvel=initial.qvel.at[1:3].set(p[1:]))
            step = lambda d, _: (mjx.step(mjx_model, d.replace(ctrl=p[:1])), d._impl.ncon)  # noqa: E731
            with differentiable_solver():
                data, contacts = jax.lax.scan(step, data, None, length=20)
            weights = jnp.arange(1, model.nq + 1)
            return jnp.sum(data.qpos * weights) + jnp.sum(data.qvel), contacts

        value_and_gradient = jax.jit(jax.value_and_grad(objective, has_aux=True))
        p = jnp.array([0.4, 0.3, -0.2])
        (_, contacts), gradient = value_and_gradient(p)
        assert np.asarray(contacts)[1:].min() >= 5  # the leg's tip and the box's corners
        rng, eps = np.random.default_rng(1), 1e-6
        for _ in range(2):
            u = rng.normal(size=3)
            finite = (float(value_and_gradient(p + eps * u)[0][0]) - float(value_and_gradient(p - eps * u)[0][0])) / (2 * eps)
            reverse = float(np.asarray(gradient) @ u)
            assert abs(reverse) > 1e-2
            assert reverse == pytest.approx(finite, rel=1e-6)


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

    with differentiable_solver():
        assert solver.jax is not jax and solver.jax.lax.while_loop is not jax.lax.while_loop
        assert solver.jax.numpy is jax.numpy  # everything else is the real jax
    assert solver.jax is jax

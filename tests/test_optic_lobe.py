"""The optic lobe against flyvis 1.2.0's own responses, and its error paths.

The reference values come from flyvis itself, never from the code under test:
``tests/data/flyvis_extent2.npz`` (a small fixture written by
``benchmarks/optic_lobe_vs_flyvis.py --fixture``, always present) and, where it is
beside the checkout, ``shared/data/flyvis_reference`` at extent 15 (see its README).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from connectofly.circuits import dynamics, hex_lattice
from connectofly.circuits import optic_lobe as ol
from connectofly.circuits.data import DATA_DIR_ENV, connectome_path

PARITY_TOLERANCE = 1e-4  # the target; flyvis float32 round-off is ~1e-6


def _reference_dir() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / "flyvis_reference"]
    if os.environ.get(DATA_DIR_ENV):
        candidates.insert(0, Path(os.environ[DATA_DIR_ENV]).parent / "flyvis_reference")
    return next((c for c in candidates if (c / "reference_traces_untrained.npz").is_file()), None)


REFERENCE_DIR = _reference_dir()
needs_reference = pytest.mark.skipif(
    REFERENCE_DIR is None, reason="shared/data/flyvis_reference not found"
)


@pytest.fixture(scope="module")
def spec() -> ol.OpticLobeSpec:
    return ol.read_spec()


@pytest.fixture(scope="module")
def full(spec):
    """The extent-15 connectome and its default-initialized parameters."""
    connectome = ol.load_connectome(15, spec)
    return connectome, ol.init(jax.random.PRNGKey(0), connectome)


@pytest.fixture(scope="module")
def reference_params():
    with open(REFERENCE_DIR / "untrained_default_params.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def traces():
    return dict(np.load(REFERENCE_DIR / "reference_traces_untrained.npz"))


@pytest.fixture(scope="module", params=ol.SUM_METHODS)
def small(spec, request):
    """The extent-2 network, with the recurrent sum run each way (ol.build_graph's method)."""
    connectome = ol.load_connectome(2, spec)
    graph = ol.build_graph(connectome, method=request.param)
    return connectome, ol.OpticLobeParams(ol.init_trainable(jax.random.PRNGKey(1), spec), graph)


# -- Connectome ----------------------------------------------------------------


def test_lattice_sizes_match_flyvis(full):
    connectome, _ = full
    assert hex_lattice.n_columns(15) == 721
    assert connectome.n_nodes == 45_669
    types = connectome.node_type
    assert (types == "T4a").sum() == 721
    assert (types == "Lawf1").sum() == 123 and (types == "Lawf2").sum() == 123


def test_central_neuron_is_middle_of_each_type_block(full):
    connectome, _ = full
    central = ol.central_neurons(connectome)
    type_id = connectome.node_attrs["type_id"]
    _, first, counts = np.unique(type_id, return_index=True, return_counts=True)
    np.testing.assert_array_equal(central, first + counts // 2)


def test_convex_hull_fill_keeps_upper_and_side_boundary_drops_lower():
    corners = np.array([[0, 0], [2, 0], [0, 2], [2, 2]])
    offsets, n_syn = ol.fill_convex_hull(corners, np.array([5.0, 6.0, 7.0, 8.0]), 1.0)
    filled = {tuple(o) for o in offsets[4:].tolist()}
    assert filled == {(0, 1), (1, 1), (2, 1), (1, 2)}
    np.testing.assert_array_equal(n_syn, [5, 6, 7, 8, 1, 1, 1, 1])


def test_collinear_offsets_are_not_filled():
    line = np.array([[0, 0], [1, 0], [3, 0]])
    offsets, _ = ol.fill_convex_hull(line, np.ones(3), 1.0)
    np.testing.assert_array_equal(offsets, line)


@needs_reference
def test_edges_and_synapse_counts_match_flyvis(full, reference_params):
    connectome, _ = full
    expected = {(s, t, du, dv): n for s, t, du, dv, n in reference_params["syn_count"]}
    types = connectome.node_type
    realized = {}
    for s, t, du, dv, n in zip(
        types[connectome.edge_src].tolist(),
        types[connectome.edge_dst].tolist(),
        connectome.edge_attrs["du"].tolist(),
        connectome.edge_attrs["dv"].tolist(),
        connectome.edge_count.tolist(),
    ):
        realized[(s, t, du, dv)] = n
    assert set(realized) == set(expected)
    for key, n in expected.items():
        assert realized[key] == pytest.approx(n, rel=1e-6)


@needs_reference
def test_initial_synaptic_strengths_match_flyvis(spec, full, reference_params):
    _, params = full
    expected = {(s, t): v for s, t, v in reference_params["syn_strength"]}
    ours = np.asarray(params.trainable.syn_strength)
    compared = 0
    for k, edge in enumerate(spec.edge_types):
        if (edge.source, edge.target) in expected:
            assert ours[k] == pytest.approx(expected[(edge.source, edge.target)], rel=1e-6)
            compared += 1
    assert compared == len(expected) == 604


def test_parameters_do_not_depend_on_extent(spec, small):
    connectome, params = small
    big = ol.init(jax.random.PRNGKey(1), ol.load_connectome(4, spec))
    for a, b in zip(params.trainable, big.trainable):
        np.testing.assert_array_equal(a, b)
    assert params.trainable.syn_strength.shape == (len(spec.edge_types),) == (605,)
    assert params.trainable.bias.shape == (65,)


# -- Parity with flyvis ----------------------------------------------------------

FIXTURE = Path(__file__).parent / "data" / "flyvis_extent2.npz"


@pytest.mark.parametrize("method", ol.SUM_METHODS)
def test_responses_match_the_flyvis_fixture(spec, method):
    """Every neuron, every frame: steady state and four stimuli at extent 2."""
    fixture = dict(np.load(FIXTURE))
    dt = float(fixture["dt"])
    connectome = ol.load_connectome(int(fixture["extent"]), spec)
    params = ol.OpticLobeParams(ol.init_trainable(jax.random.PRNGKey(0), spec), ol.build_graph(connectome, method))
    params = params._replace(
        trainable=ol.with_flyvis_parameters(params.trainable, spec, fixture)
    )
    steady = ol.steady_state(params, dt)
    simulate = jax.vmap(ol.simulate, in_axes=(None, None, 0, None))
    _, responses = simulate(params, steady, jnp.asarray(fixture["stimulus"]), dt)
    assert responses.shape == fixture["responses"].shape == (4, 25, connectome.n_nodes)
    np.testing.assert_allclose(steady.voltage, fixture["steady"], rtol=0, atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(responses, fixture["responses"], rtol=0, atol=PARITY_TOLERANCE)
    # the stimuli drive the network: responses are far from the steady state
    assert np.abs(fixture["responses"] - fixture["steady"]).max() > 0.1



@pytest.fixture(scope="module")
def parity_params(spec, full, reference_params):
    connectome, params = full
    trainable = params.trainable
    for name in ("bias", "time_const"):
        trainable = ol.with_values(trainable, spec, name, reference_params[name])
    strengths = {(s, t): v for s, t, v in reference_params["syn_strength"]}
    strengths.update({(e.source, e.target): 0.0 for e in spec.edge_types
                      if (e.source, e.target) not in strengths})  # the edge-less type
    trainable = ol.with_values(trainable, spec, "syn_strength", strengths)
    return connectome, params._replace(trainable=trainable)


@needs_reference
@pytest.mark.parametrize("tag, n_steps", [("dt50", 50), ("dt100", 100)])
def test_responses_match_flyvis(parity_params, traces, tag, n_steps):
    connectome, params = parity_params
    dt = 1.0 / n_steps
    central = ol.central_neurons(connectome)
    simulate = jax.jit(ol.simulate)
    n_cols = ol.n_columns(params)

    grey = jnp.full((n_steps, n_cols), 0.5, jnp.float32)
    steady, grey_v = simulate(params, ol.resting_state(params), grey, dt)
    half = n_steps // 2
    flash = jnp.concatenate([jnp.ones((half, n_cols)), jnp.zeros((half, n_cols))])
    flash_last, flash_v = simulate(params, steady, flash, dt)
    noise = jnp.asarray(traces[f"{tag}_random_input"])
    noise_last, noise_v = simulate(params, steady, noise, dt)

    deltas = {
        "grey_central": np.asarray(grey_v)[:, central] - traces[f"{tag}_grey_central"],
        "steady_full": np.asarray(steady.voltage) - traces[f"{tag}_steady_full"],
        "flash_central": np.asarray(flash_v)[:, central] - traces[f"{tag}_flash_central"],
        "flash_full_last": np.asarray(flash_last.voltage) - traces[f"{tag}_flash_full_last"],
        "random_central": np.asarray(noise_v)[:, central] - traces[f"{tag}_random_central"],
        "random_full_last": np.asarray(noise_last.voltage) - traces[f"{tag}_random_full_last"],
    }
    worst = {k: float(np.abs(d).max()) for k, d in deltas.items()}
    assert max(worst.values()) < PARITY_TOLERANCE, worst
    # the responses are not trivially flat: the flash moves the central cells
    assert np.ptp(traces[f"{tag}_flash_central"], axis=0).max() > 0.1


def test_steady_state_is_grey_relaxation(small):
    _, params = small
    state = ol.steady_state(params, dt=0.02, duration=0.2)
    grey = jnp.full((10, ol.n_columns(params)), 0.5)
    expected, _ = ol.simulate(params, ol.resting_state(params), grey, 0.02)
    np.testing.assert_allclose(state.voltage, expected.voltage, atol=1e-6)


@pytest.mark.parametrize("target", [0.0, 0.1])
def test_at_grey_voltage_rests_every_type_but_the_photoreceptors_at_the_target(spec, small, target):
    connectome, params = small
    shifted = params._replace(trainable=ol.at_grey_voltage(params, connectome, dt=0.02, voltage=target))
    grey = np.asarray(ol.steady_state(shifted, dt=0.02, duration=2.0).voltage[ol.central_neurons(connectome)])
    photoreceptor = np.isin(spec.cell_types, spec.input_types)
    np.testing.assert_allclose(grey[~photoreceptor], target, atol=1e-5)
    # flyvis's initialization rests them well above threshold; the photoreceptors keep theirs
    before = np.asarray(ol.steady_state(params, dt=0.02, duration=2.0).voltage[ol.central_neurons(connectome)])
    assert np.abs(before[~photoreceptor] - target).min() > 0.05
    np.testing.assert_array_equal(shifted.trainable.bias[photoreceptor], params.trainable.bias[photoreceptor])
    np.testing.assert_array_equal(shifted.trainable.syn_strength, params.trainable.syn_strength)


def test_at_grey_voltage_says_when_it_does_not_converge(small):
    connectome, params = small
    with pytest.raises(RuntimeError, match="after 1 iterations"):
        ol.at_grey_voltage(params, connectome, dt=0.02, max_iterations=1)


# -- Step, batching, gradients -----------------------------------------------------


def test_step_matches_simulate_and_input_reaches_photoreceptors_only(small):
    connectome, params = small
    stimulus = jax.random.uniform(jax.random.PRNGKey(2), (3, ol.n_columns(params)))
    state = ol.resting_state(params)
    outputs = []
    step = jax.jit(ol.step)
    for frame in stimulus:
        state, out = step(params, state, frame, 0.01)
        outputs.append(out)
    _, expected = ol.simulate(params, ol.resting_state(params), stimulus, 0.01)
    np.testing.assert_allclose(jnp.stack(outputs), expected, atol=1e-6)

    # one step from rest: only R1-R8 see the luminance directly
    _, lit = ol.step(params, ol.resting_state(params), jnp.ones(ol.n_columns(params)), 0.01)
    _, dark = ol.step(params, ol.resting_state(params), jnp.zeros(ol.n_columns(params)), 0.01)
    moved = np.flatnonzero(np.abs(np.asarray(lit - dark)) > 0)
    receptors = np.isin(connectome.node_type, [f"R{i}" for i in range(1, 9)])
    np.testing.assert_array_equal(moved, np.flatnonzero(receptors))
    # tau_eff = max(0.05, 0.01): one unit of luminance moves V by dt / tau = 0.2
    np.testing.assert_allclose(np.asarray(lit - dark)[moved], 0.2, rtol=1e-5)


def test_advance_steps_the_voltages_in_cells_as_step_does_per_neuron(small):
    connectome, params = small
    stimulus = jax.random.uniform(jax.random.PRNGKey(6), (3, ol.n_columns(params)))
    state, cells = ol.resting_state(params), ol.to_cells(params.graph, ol.resting_state(params).voltage)
    advance = jax.jit(ol.advance, static_argnums=3)
    for frame in stimulus:
        state, _ = ol.step(params, state, frame, 0.01)
        cells = advance(params, cells, frame, 0.01)
    assert float(jnp.abs(state.voltage - ol.resting_state(params).voltage).max()) > 1e-3
    np.testing.assert_allclose(ol.from_cells(params.graph, cells), state.voltage, atol=1e-6)


def test_type_blocks_hold_each_types_neurons_at_the_columns_they_name(small):
    connectome, params = small
    graph = params.graph
    if graph.layout is None:
        with pytest.raises(ValueError, match="needs a grid graph"):
            ol.type_blocks(graph)
        return
    blocks = ol.type_blocks(graph)
    neuron_of_cell = np.asarray(graph.neuron_of_cell)
    has_column = blocks.column < ol.n_columns(params)
    for t, cell_type in enumerate(ol.spec_of(connectome).cell_types):
        in_block = neuron_of_cell[blocks.first[t] + np.arange(blocks.length)]
        neurons = ol.neurons_of_type(connectome, cell_type)  # in column order
        assert set(in_block[in_block < connectome.n_nodes]) == set(neurons)
        if len(neurons) == ol.n_columns(params):  # a type in every column: the k-th neuron at column k
            np.testing.assert_array_equal(in_block[has_column], neurons[blocks.column[has_column]])


def test_vmap_batch_equals_single_runs(small):
    _, params = small
    stimuli = jax.random.uniform(jax.random.PRNGKey(3), (3, 5, ol.n_columns(params)))
    states = jax.vmap(lambda _: ol.resting_state(params))(jnp.arange(3))
    batched = jax.jit(jax.vmap(ol.simulate, in_axes=(None, 0, 0, None)))
    _, out = batched(params, states, stimuli, 0.02)
    for i in range(3):
        _, single = ol.simulate(params, ol.resting_state(params), stimuli[i], 0.02)
        np.testing.assert_allclose(out[i], single, atol=1e-6)
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-3  # different stimuli, different runs


def test_batched_gradients_and_nested_batches_equal_single_runs(small):
    """The custom batching rules of the grid sum: gradients of a batch (the
    weights' gradient loops over it), a batch of batches (two lobes per fly,
    many flies) and a batch of parameter sets (JAX's own rule) give what one
    network at a time gives."""
    _, params = small
    stimuli = jax.random.uniform(jax.random.PRNGKey(5), (2, 3, 6, ol.n_columns(params)))
    start = ol.steady_state(params, 0.02)

    def loss(trainable, stimulus):
        p = params._replace(trainable=trainable)
        return jnp.mean(ol.simulate(p, start, stimulus, 0.02)[1] ** 2)

    batch_grad = jax.jit(jax.grad(lambda t: jnp.sum(jax.vmap(lambda s: loss(t, s))(stimuli[0]))))(params.trainable)
    single_grads = [jax.grad(loss)(params.trainable, s) for s in stimuli[0]]
    for name in ol.Trainable._fields:
        expected = sum(getattr(g, name) for g in single_grads)
        assert float(jnp.abs(expected).max()) > 0, name
        np.testing.assert_allclose(getattr(batch_grad, name), expected, rtol=1e-5, atol=1e-7, err_msg=name)

    nested = jax.jit(jax.vmap(jax.vmap(lambda s: ol.simulate(params, start, s, 0.02)[1])))(stimuli)
    for i, j in np.ndindex(2, 3):
        np.testing.assert_allclose(nested[i, j], ol.simulate(params, start, stimuli[i, j], 0.02)[1], atol=1e-6)

    scaled = jax.tree.map(lambda x: jnp.stack([x, 1.5 * x]), params.trainable)
    per_set = jax.jit(jax.vmap(lambda t: ol.simulate(params._replace(trainable=t), start, stimuli[0, 0], 0.02)[1]))
    out = per_set(scaled)
    for k in range(2):
        one = params._replace(trainable=jax.tree.map(lambda x: x[k], scaled))
        np.testing.assert_allclose(out[k], ol.simulate(one, start, stimuli[0, 0], 0.02)[1], atol=1e-6)


def test_build_graph_refuses_edges_that_are_not_the_lattice_repetition(small):
    connectome, _ = small
    cut = dataclasses.replace(
        connectome, edge_src=connectome.edge_src[1:], edge_dst=connectome.edge_dst[1:],
        edge_count=connectome.edge_count[1:], edge_sign=connectome.edge_sign[1:],
        edge_attrs={k: v[1:] for k, v in connectome.edge_attrs.items()},
    )
    with pytest.raises(ValueError, match="build it with load_connectome"):
        ol.build_graph(cut, method="grid")
    with pytest.raises(ValueError, match=r"method: got 'dense'; allowed: \('grid', 'edges'\)"):
        ol.build_graph(connectome, method="dense")


def test_the_default_sum_is_the_grid_from_its_minimum_extent(spec):
    assert ol.build_graph(ol.load_connectome(ol.GRID_MIN_EXTENT - 1, spec)).layout is None
    assert ol.build_graph(ol.load_connectome(ol.GRID_MIN_EXTENT, spec)).layout is not None


def test_hold_ends_where_simulating_the_still_image_ends(small):
    _, params = small
    image = jax.random.uniform(jax.random.PRNGKey(4), (ol.n_columns(params),))
    start = ol.steady_state(params, 0.02)
    # 4 steps: mid-transient, where one step more or less shows (by 30 it has settled)
    held = ol.hold(params, start, image, 0.02, n_steps=4)
    simulated, _ = ol.simulate(params, start, jnp.tile(image, (4, 1)), 0.02)
    np.testing.assert_allclose(held.voltage, simulated.voltage, atol=1e-6)
    assert float(jnp.abs(held.voltage - start.voltage).max()) > 1e-3  # the image moved it


def test_gradients_equal_autodiff_of_plain_segment_sum(small):
    """The grid sum's hand-written VJP against autodiff of segment_sum."""
    connectome, params = small
    stimulus = jax.random.uniform(jax.random.PRNGKey(4), (15, ol.n_columns(params)))
    src, dst = jnp.asarray(connectome.edge_src), jnp.asarray(connectome.edge_dst)
    g = params.graph

    def plain_loss(trainable):
        p = params._replace(trainable=trainable)
        weight = ol.edge_weights(p)

        def body(v, frame):
            external = jnp.zeros_like(v).at[g.input_index].add(frame[None])
            rec = dynamics.synaptic_input(dynamics.relu(v), src, dst, weight, v.shape[0])
            tau, bias = trainable.time_const[g.node_type], trainable.bias[g.node_type]
            v = dynamics.euler_step(v, tau, bias, rec, external, 0.02)
            return v, v

        _, v = jax.lax.scan(body, ol.resting_state(p).voltage, stimulus)
        return jnp.mean(v**2)

    def loss(trainable):
        p = params._replace(trainable=trainable)
        _, v = ol.simulate(p, ol.resting_state(p), stimulus, 0.02)
        return jnp.mean(v**2)

    assert loss(params.trainable) == pytest.approx(float(plain_loss(params.trainable)), rel=1e-6)
    ours = jax.jit(jax.grad(loss))(params.trainable)
    expected = jax.jit(jax.grad(plain_loss))(params.trainable)
    for name, a, b in zip(ours._fields, ours, expected):
        assert float(jnp.abs(b).max()) > 0, name
        np.testing.assert_allclose(a, b, atol=1e-6 * float(jnp.abs(b).max()) + 1e-9, err_msg=name)


def test_clamp_keeps_strengths_non_negative(small):
    _, params = small
    negative = params.trainable._replace(syn_strength=-params.trainable.syn_strength)
    assert float(ol.clamp(negative).syn_strength.max()) == 0.0
    unchanged = ol.clamp(params.trainable).syn_strength
    np.testing.assert_array_equal(unchanged, params.trainable.syn_strength)


# -- Bad input -------------------------------------------------------------------


def _raw_spec() -> dict:
    with open(connectome_path(ol.CONNECTOME_FILE)) as f:
        return json.load(f)


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "connectome.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("key", ["nodes", "edges", "input_units", "output_units"])
def test_missing_top_level_key(tmp_path, key):
    raw = _raw_spec()
    del raw[key]
    with pytest.raises(ValueError, match=f"missing key '{key}'"):
        ol.read_spec(_write(tmp_path, raw))


def test_missing_edge_key(tmp_path):
    raw = _raw_spec()
    del raw["edges"][7]["offsets"]
    with pytest.raises(ValueError, match=r"edges\[7\].*missing key 'offsets'"):
        ol.read_spec(_write(tmp_path, raw))


def test_unknown_cell_type(tmp_path):
    raw = _raw_spec()
    raw["edges"][3]["tar"] = "T99"
    with pytest.raises(ValueError, match=r"edges\[3\]\.tar: unknown cell type 'T99'"):
        ol.read_spec(_write(tmp_path, raw))
    raw = _raw_spec()
    raw["input_units"][0] = "R0"
    with pytest.raises(ValueError, match="input_units: unknown cell type 'R0'"):
        ol.read_spec(_write(tmp_path, raw))


def test_bad_sign_and_pattern(tmp_path):
    raw = _raw_spec()
    raw["edges"][0]["alpha"] = 0
    with pytest.raises(ValueError, match=r"edges\[0\]\.alpha"):
        ol.read_spec(_write(tmp_path, raw))
    raw = _raw_spec()
    raw["nodes"][5]["pattern"] = ["spiral", 3]
    with pytest.raises(ValueError, match=r"nodes\[5\]\.pattern"):
        ol.read_spec(_write(tmp_path, raw))


def test_corrupted_connectome_file_fails_its_hash(tmp_path, monkeypatch):
    copy = tmp_path / ol.CONNECTOME_FILE
    shutil.copy(connectome_path(ol.CONNECTOME_FILE), copy)
    with open(copy, "a") as f:
        f.write(" ")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        ol.read_spec()


def test_unknown_cell_type_lookup(small):
    connectome, _ = small
    with pytest.raises(ValueError, match="unknown cell type 'T6'"):
        ol.neurons_of_type(connectome, "T6")
    assert len(ol.neurons_of_type(connectome, "T4c")) == hex_lattice.n_columns(2)


@pytest.mark.parametrize("shape", [(18,), (20, 18), (19, 1), (19,)])
def test_wrong_stimulus_shape(small, shape):
    _, params = small  # extent 2: 19 columns
    state = ol.resting_state(params)
    with pytest.raises(ValueError, match="stimulus: got shape"):
        if shape == (19,):
            ol.simulate(params, state, jnp.zeros(shape), 0.01)  # one frame, not a sequence
        elif len(shape) == 1:
            ol.step(params, state, jnp.zeros(shape), 0.01)
        else:
            ol.simulate(params, state, jnp.zeros(shape), 0.01)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_stimulus(small, bad):
    _, params = small
    stimulus = np.full((4, 19), 0.5, np.float32)
    stimulus[2, 7] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        ol.simulate(params, ol.resting_state(params), stimulus, 0.01)
    with pytest.raises(ValueError, match="NaN or inf"):
        ol.step(params, ol.resting_state(params), stimulus[2], 0.01)
    with pytest.raises(ValueError, match="NaN or inf"):
        ol.hold(params, ol.resting_state(params), stimulus[2], 0.01, n_steps=3)


def test_with_values_requires_every_key(spec, small):
    _, params = small
    with pytest.raises(ValueError, match="bias: no value"):
        ol.with_values(params.trainable, spec, "bias", {"R1": 0.1})
    with pytest.raises(ValueError, match="field: got 'weights'"):
        ol.with_values(params.trainable, spec, "weights", {})


def test_saved_parameters_load_back_by_name_at_any_extent(spec, tmp_path):
    n_types, n_edge_types = len(spec.cell_types), len(spec.edge_types)
    # distinct values everywhere, so a shuffled or misaligned load cannot pass
    trainable = ol.Trainable(jnp.arange(n_types) * 0.01 - 0.3, 0.02 + jnp.arange(n_types) * 1e-3,
                             jnp.arange(n_edge_types) * 1e-4 + 1e-3)
    ol.save_trainable(tmp_path / "t.npz", trainable, spec)
    loaded = ol.load_trainable(tmp_path / "t.npz", spec)
    for a, b in zip(loaded, trainable):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # file order does not matter, names do
    named = ol.named_trainable(trainable, spec)
    order, edge_order = np.arange(n_types)[::-1], np.arange(n_edge_types)[::-1]
    shuffled = {"cell_types": named["cell_types"][order], "bias": named["bias"][order],
                "time_const": named["time_const"][order], "edge_types": named["edge_types"][edge_order],
                "syn_strength": named["syn_strength"][edge_order]}
    for a, b in zip(ol.trainable_from_named(shuffled, spec, "shuffled"), trainable):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # the same values run the network at another extent
    other = ol.load_connectome(3)
    ol.steady_state(ol.OpticLobeParams(loaded, ol.build_graph(other)), 0.02)
    with pytest.raises(ValueError, match=r"no optic-lobe parameters \['syn_strength'\]"):
        ol.trainable_from_named({k: v for k, v in named.items() if k != "syn_strength"}, spec, "cut")
    renamed = {**named, "edge_types": np.array(["R1>Nowhere", *named["edge_types"][1:]])}
    with pytest.raises(ValueError, match=r"renamed: edge_types are not this connectome's .*unknown \['R1>Nowhere'\]"):
        ol.trainable_from_named(renamed, spec, "renamed")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda n: {**n, "cell_types": n["cell_types"][:-1], "bias": n["bias"][:-1], "time_const": n["time_const"][:-1]},
         r"cell_types are not this connectome's \(64 given, 65 expected; missing \['TmY18'\]"),
        (lambda n: {**n, "cell_types": np.array([*n["cell_types"][:-1], "R1"])}, "cell_types .* some repeated"),
        (lambda n: {**n, "bias": n["bias"][:-1]}, r"bias has shape \(64,\); expected one value per entry of cell_types"),
        (lambda n: {**n, "syn_strength": np.append(n["syn_strength"], 0.1)}, "syn_strength has shape"),
        (lambda n: {**n, "time_const": np.where(np.arange(65) == 3, np.nan, n["time_const"])}, "time_const holds NaN"),
        (lambda n: {**n, "syn_strength": np.full_like(n["syn_strength"], np.inf)}, "syn_strength holds NaN or inf"),
    ],
    ids=["missing-type", "repeated-type", "short-bias", "long-strengths", "nan", "inf"],
)
def test_a_lobe_file_of_another_network_or_with_bad_values_is_refused_naming_the_field(spec, change, match):
    named = ol.named_trainable(ol.init_trainable(jax.random.PRNGKey(0), spec), spec)
    with pytest.raises(ValueError, match=match):
        ol.trainable_from_named(change(named), spec, "lobe.npz")


def test_chunked_sum_and_its_gradient_equal_the_segment_sum():
    """Random graph: rows with no edge, and rows longer than one chunk."""
    rng = np.random.default_rng(0)
    n, e = 30, 200
    src, dst = rng.integers(0, n, e), rng.integers(0, 25, e)  # rows 25..29: no input
    dst[:20] = 3  # one row spans several chunks of width 4
    weight = jnp.asarray(rng.normal(size=e), jnp.float32)
    rate = jnp.asarray(rng.random(n), jnp.float32)
    incoming = dynamics.chunked_adjacency(dst, src, n, width=4)
    outgoing = dynamics.chunked_adjacency(src, dst, n, width=4)
    dense = np.zeros((n, n))
    np.add.at(dense, (dst, src), np.asarray(weight))

    def chunked(rate, weight):
        return dynamics.chunked_synaptic_input(
            rate,
            dynamics.chunked_weights(incoming, weight),
            dynamics.chunked_weights(outgoing, weight),
            incoming,
            outgoing,
        )

    def plain(rate, weight):
        return dynamics.synaptic_input(rate, jnp.asarray(src), jnp.asarray(dst), weight, n)

    np.testing.assert_allclose(chunked(rate, weight), dense @ np.asarray(rate), atol=1e-5)
    probe = jnp.asarray(rng.normal(size=n), jnp.float32)
    grads = jax.grad(lambda r, w: jnp.dot(probe, chunked(r, w)), argnums=(0, 1))(rate, weight)
    expected = jax.grad(lambda r, w: jnp.dot(probe, plain(r, w)), argnums=(0, 1))(rate, weight)
    np.testing.assert_allclose(grads[0], dense.T @ np.asarray(probe), atol=1e-5)
    np.testing.assert_allclose(grads[1], expected[1], atol=1e-5)


def test_init_rejects_a_connectome_without_its_spec(small):
    connectome, _ = small
    foreign = dataclasses.replace(connectome, meta={})
    with pytest.raises(ValueError, match=r"meta\['spec'\]"):
        ol.init(jax.random.PRNGKey(0), foreign)

"""The VNC network: grouping, dynamics, Dale's law under updates, sparsity budget."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from connectofly.circuits import motor_map, vnc, vnc_connectome
from connectofly.envs.body import LEGS


@pytest.fixture(scope="module")
def connectome():
    return vnc_connectome.load_fanc_t1l_premotor_to_mn()


@pytest.fixture(scope="module")
def spec(connectome):
    return vnc.build_leg_spec(connectome)


@pytest.fixture(scope="module")
def params(connectome):
    return vnc.init(jax.random.PRNGKey(0), connectome)


def test_grouping_keeps_every_synapse_and_sign(spec):
    # All 212,190 premotor → MN synapses (data README) survive the grouping.
    assert spec.edge_count.sum() == 212190
    assert spec.n_motor == 69
    assert spec.n_premotor < 200  # small enough for a CPU
    for name, sign in zip(spec.premotor_names, spec.premotor_sign):
        assert name.endswith("+") == (sign > 0)
        if name.startswith(("13A", "13B", "19A", "16B", "21A")):
            assert sign == -1, name
        if name.startswith(("03A", "17A", "22A", "sensory")):
            assert sign == 1, name
    assert set(spec.sensory_names) >= {"claw_flx", "claw_ext", "hook_flx", "hook_ext", "hairplate"}


def test_leg_adjacency():
    adj = vnc.leg_adjacency(LEGS)  # [relation, post, pre]
    i = {leg: k for k, leg in enumerate(LEGS)}
    assert adj[0, i["lm"], i["lf"]] == 1 and adj[0, i["rh"], i["rm"]] == 1
    assert adj[1, i["lf"], i["lm"]] == 1 and adj[1, i["lf"], i["lh"]] == 0
    assert adj[2, i["rf"], i["lf"]] == 1 and adj[2, i["rm"], i["lf"]] == 0
    assert adj.sum(axis=(1, 2)).tolist() == [4, 4, 6]


def _inputs(params, descending):
    n_legs = params.graph.coupling.shape[1]
    n_sensory = params.trainable["sensory_to_premotor"].shape[1]
    return vnc.VNCInput(jnp.asarray(descending, dtype=jnp.float32), jnp.zeros((n_legs, n_sensory)))


def _run(params, descending, n_steps=100, state=None):
    state = vnc.init_state(params) if state is None else state
    step = jax.jit(lambda s: vnc.step(params, s, _inputs(params, descending), 1e-3))
    for _ in range(n_steps):
        state, out = step(state)
    return state, out


def test_step_shapes_finite_and_mirror_symmetric(params):
    state, out = _run(params, [1.0, 0.0, 0.0, 0.0])
    assert out.mn_rate.shape == (6, 69)
    assert np.isfinite(np.asarray(out.mn_rate)).all()
    assert float(out.mn_rate.max()) > 0.0
    # Forward drive only: left and right legs of a segment stay identical.
    np.testing.assert_allclose(np.asarray(out.mn_rate[0]), np.asarray(out.mn_rate[3]), atol=1e-6)
    # Steering drive breaks the symmetry, in opposite ways on the two sides.
    _, steer = _run(params, [1.0, 1.0, 0.0, 0.0])
    assert float(jnp.abs(steer.premotor_rate[0] - steer.premotor_rate[3]).max()) > 1e-3


def test_descending_channels_are_mirrored():
    graph = vnc.init(jax.random.PRNGKey(0), vnc_connectome.load_fanc_t1l_premotor_to_mn()).graph
    per_leg = np.asarray(vnc.descending_per_leg(graph, jnp.array([1.0, 2.0, 3.0, 4.0])))
    assert per_leg[LEGS.index("lm")].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert per_leg[LEGS.index("rm")].tolist() == [1.0, 3.0, 2.0, 4.0]


def test_intersegmental_coupling_reaches_neighbours_only(params):
    coupled = params._replace(trainable={**params.trainable, "coupling": jnp.full_like(params.trainable["coupling"], 1.0)})
    state = vnc.init_state(coupled)
    kicked = state._replace(premotor=state.premotor.at[LEGS.index("lf")].set(1.0))
    zero = _inputs(coupled, [0.0, 0.0, 0.0, 0.0])
    after, _ = jax.jit(vnc.step, static_argnums=3)(coupled, kicked, zero, 1e-3)
    moved = np.abs(np.asarray(after.premotor)).max(axis=1)
    assert moved[LEGS.index("lm")] > 0 and moved[LEGS.index("rf")] > 0
    assert moved[LEGS.index("lh")] == 0 and moved[LEGS.index("rm")] == 0


def test_jit_and_vmap_over_a_batch(params):
    batch = jnp.stack([jnp.array([d, 0.0, 0.0, 0.0]) for d in (0.5, 1.0, 2.0)])
    state = jax.tree_util.tree_map(lambda x: jnp.stack([x] * 3), vnc.init_state(params))
    n_sensory = params.trainable["sensory_to_premotor"].shape[1]

    def one(s, d):
        return vnc.step(params, s, vnc.VNCInput(d, jnp.zeros((6, n_sensory))), 1e-3)

    new_state, out = jax.jit(jax.vmap(one))(state, batch)
    assert out.mn_rate.shape == (3, 6, 69)


def test_dale_law_and_fixed_counts_survive_optimizer_updates(connectome):
    """Large Adam steps push many magnitudes toward zero; no weight may flip sign."""
    params = vnc.init(jax.random.PRNGKey(0), connectome, vnc.VNCConfig(legs=("lf", "lm")))
    counts_before = np.asarray(params.graph.pm_count).copy()
    signs = np.asarray(params.graph.premotor_sign)
    trainable = params.trainable
    optimizer = optax.adam(2.0)
    opt_state = optimizer.init(trainable)

    def loss(tr):
        p = params._replace(trainable=tr)
        _, out = jax.lax.scan(lambda s, _: vnc.step(p, s, _inputs(p, [1.0, 0.5, 0.0, 0.2]), 1e-3),
                              vnc.init_state(p), None, length=5)
        # Reward inhibition everywhere and excitation nowhere: pressure to flip signs.
        return jnp.sum(vnc.recurrent_weights(p) * signs[None, :]) + jnp.sum(out.mn_rate)

    @jax.jit
    def update(trainable, opt_state):
        updates, opt_state = optimizer.update(jax.grad(loss)(trainable), opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state

    for _ in range(5):
        trainable, opt_state = update(trainable, opt_state)
    updated = params._replace(trainable=trainable)
    assert float(jnp.median(params.trainable["recurrent"] - trainable["recurrent"])) > 1.0  # pushed to ~0
    assert vnc.sign_violations(updated) == {k: 0 for k in vnc.sign_violations(updated)}
    w = np.asarray(vnc.recurrent_weights(updated))
    assert ((w == 0) | (np.sign(w) == signs[None, :])).all()
    np.testing.assert_array_equal(np.asarray(updated.graph.pm_count), counts_before)


def test_sign_violations_detects_a_flip(params):
    flipped_graph = params.graph._replace(premotor_sign=-params.graph.premotor_sign)
    # Weights computed with flipped transmitter signs disagree with the originals.
    w_flipped = np.asarray(vnc.recurrent_weights(params._replace(graph=flipped_graph)))
    assert (w_flipped * np.asarray(params.graph.premotor_sign)[None, :] < 0).any()


def test_prune_to_budget_keeps_k_hemilineage_pairs(params):
    pruned = vnc.prune_to_budget(params, 10)
    norms = np.asarray(vnc.hemilineage_block_norms(pruned))
    assert int((norms > 1e-5).sum()) == 10
    assert float(vnc.sparsity_penalty(pruned)) < float(vnc.sparsity_penalty(params))
    with pytest.raises(ValueError, match="budget"):
        vnc.prune_to_budget(params, -1)


def test_proprioceptive_encoding(spec):
    neutral = jnp.zeros(42)
    angles = jnp.zeros(42).at[5].set(0.3)  # lf tibia pitch +0.3 rad: flexion (motor_map table)
    velocities = jnp.zeros(42).at[5].set(-20.0)  # extending
    rates = vnc.proprioceptive_rates(tuple(spec.sensory_names), angles, velocities, jnp.zeros(6), neutral)
    names = list(spec.sensory_names)
    assert rates.shape == (6, len(names))
    assert float(rates[0, names.index("claw_flx")]) == pytest.approx(0.3)
    assert float(rates[0, names.index("claw_ext")]) == 0.0
    assert float(rates[0, names.index("hook_ext")]) == pytest.approx(2.0)
    assert float(rates[1].sum()) == 0.0


def test_seeded_core_is_rhythmic_before_training():
    from connectofly.training import vnc_rhythm as vr

    params, mmap, spec = vr.build(seed=0)
    rows = vr.frequency_vs_drive(params, mmap, [1.0], spec.n_sensory, duration=1.5, transient=0.5)
    assert 5.0 <= rows[0]["fti_flexion_hz"] <= 20.0
    assert rows[0]["fti_flexion_amp"] > 0.005


def test_motor_map_covers_the_leg_mns(spec):
    mmap = motor_map.build_motor_map(list(spec.mn_module), spec.mn_size)
    slots = np.asarray(mmap.slot)
    assert len(slots) == 69
    # Every channel side named in the table has MNs, except the missing antagonists.
    for k, channel in enumerate(motor_map.CHANNELS):
        assert (slots == 2 * k).any(), channel.name
        assert (slots == 2 * k + 1).any() == bool(channel.antagonists), channel.name


@pytest.mark.slow
def test_short_training_makes_flexors_and_extensors_alternate():
    """~2 min: 150 BPTT steps turn the in-phase seeded rhythm into alternation."""
    from connectofly.training import vnc_rhythm as vr

    params, mmap, spec = vr.build(seed=0)
    before = vr.frequency_vs_drive(params, mmap, [1.5], spec.n_sensory)[0]
    assert before["fti_flexion_corr"] > 0.3  # seeded core: flexor and extensor in phase
    trained, _ = vr.train(params, mmap, spec.n_sensory, 150, progress=False)
    after = vr.frequency_vs_drive(trained, mmap, [1.0, 1.5], spec.n_sensory)
    for row in after:
        assert row["fti_flexion_corr"] < -0.5
        assert 5.0 <= row["fti_flexion_hz"] <= 15.0

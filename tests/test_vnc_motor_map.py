"""Motor map: module table, muscle stage, and sign calibration on the body."""

import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from connectofly.circuits import motor_map as mm
from connectofly.envs.body import FLY_NAME, LEGS

FANC_MODULES = [
    "coxa_promote", "coxa_rotate_adduct", "coxa_posterior", "trochanter_flex", "trochanter_extend",
    "femur_reduct", "tibia_ta_flex_A", "tibia_ta_flex_B", "tibia_ta_flex_C", "tibia_extend",
    "tarsus_depress_medial", "tarsus_depress_ventralU", "ltm_A", "ltm_B",
]


def test_every_fanc_module_has_a_role_and_aliases_agree():
    for module in FANC_MODULES:
        mm.module_role(module)
    assert mm.canonical_module("coxa_promotion") == "coxa_promote"
    assert mm.module_role("femur/tr flex") == mm.module_role("trochanter_flex")
    assert mm.module_role("coxa stance")[1] == 1  # antagonist of protraction
    with pytest.raises(ValueError, match="unknown motor module"):
        mm.canonical_module("wing_depressor")


def test_protraction_dof_differs_between_front_and_hind_legs():
    protraction = mm.CHANNELS[mm.CHANNEL_NAMES.index("thc_protraction")]
    assert mm.dof_index("lf", protraction) == 1  # coxa pitch of leg 0
    assert mm.dof_index("lh", protraction) == 2 * 7 + 2  # coxa roll of leg 2
    assert mm.dof_index("rm", protraction) == 4 * 7 + 2


def test_recruitment_is_size_ordered():
    # Two tibia flexors, sizes 1 and 3: at a low rate only the small one is recruited.
    motor_map = mm.build_motor_map(["tibia_ta_flex_A", "tibia_ta_flex_A"], np.array([1.0, 3.0]),
                                   recruitment_threshold=0.3)
    channel = mm.CHANNEL_NAMES.index("fti_flexion")
    low = mm.recruit(motor_map, jnp.array([0.2, 0.2]))[channel, 0]
    assert float(low) == pytest.approx(0.25 * (0.2 - 0.1))
    high = mm.recruit(motor_map, jnp.array([1.0, 1.0]))[channel, 0]
    assert float(high) == pytest.approx(0.25 * 0.9 + 0.75 * 0.7)


def test_activation_is_first_order_and_bounded():
    a = jnp.zeros(())
    for _ in range(1000):
        a = mm.activation_step(a, jnp.asarray(50.0), dt=1e-3, tau_act=0.02)
    assert 0.99 < float(a) < 1.0
    half = mm.activation_step(jnp.zeros(()), jnp.asarray(50.0), dt=0.01, tau_act=0.02)
    assert float(half) == pytest.approx(0.5, abs=1e-6)


def _segment_distance(env, leg, a, b):
    model, data = env.model, env.physics.data
    pa = data.xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"{FLY_NAME}/{leg}_{a}")]
    pb = data.xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"{FLY_NAME}/{leg}_{b}")]
    return float(np.linalg.norm(pa - pb))


def _claw_in_thorax(env, leg):
    state = env.physics.read()
    return state.thorax_rotation.T @ (state.claw_positions[LEGS.index(leg)] - state.thorax_position)


def _drive(env, motor_map, modules, module, leg, steps=80):
    """Run the body for ``steps`` ms with only ``module`` MNs of ``leg`` active."""
    rate = np.zeros((6, len(modules)))
    rate[LEGS.index(leg)] = [3.0 if m == module else 0.0 for m in modules]
    neutral = jnp.asarray(env.neutral_action)
    activation = mm.initial_activation()
    env.reset(seed=0)
    for _ in range(steps):
        activation, action = mm.muscle_step(motor_map, activation, jnp.asarray(rate), neutral, 1e-3)
        env.step(np.asarray(action))


@pytest.fixture(scope="module")
def env():
    from connectofly.envs.fly_env import FlyEnv

    env = FlyEnv(reset_noise=0.0, duration=1.0)
    yield env
    env.close()


@pytest.fixture(scope="module")
def motor_map():
    return mm.build_motor_map(FANC_MODULES, np.ones(len(FANC_MODULES)))


def test_tibia_flexor_flexes_the_tibia_on_the_body(env, motor_map):
    """Flexion shortens the femur → tarsus distance (a geometric definition)."""
    tibia = 0 * 7 + 5
    _drive(env, motor_map, FANC_MODULES, "tibia_extend", "lf")
    extended_angle = env.physics.read().joint_angles[tibia]
    extended = _segment_distance(env, "lf", "trochanterfemur", "tarsus1")
    _drive(env, motor_map, FANC_MODULES, "tibia_ta_flex_A", "lf")
    flexed_angle = env.physics.read().joint_angles[tibia]
    flexed = _segment_distance(env, "lf", "trochanterfemur", "tarsus1")
    assert flexed < extended - 0.05
    assert flexed_angle > extended_angle + 0.3  # documented: tibia pitch increases with flexion


def test_trochanter_flexor_folds_femur_toward_coxa(env, motor_map):
    _drive(env, motor_map, FANC_MODULES, "trochanter_extend", "rm")
    extended = _segment_distance(env, "rm", "coxa", "tibia")
    _drive(env, motor_map, FANC_MODULES, "trochanter_flex", "rm")
    flexed = _segment_distance(env, "rm", "coxa", "tibia")
    assert flexed < extended - 0.02


@pytest.mark.parametrize("leg", ["lf", "lh"])
def test_swing_modules_protract_the_leg(env, motor_map, leg):
    """Protraction moves the claw anterior (thorax x) on front and hind legs."""
    _drive(env, motor_map, FANC_MODULES, "coxa_posterior", leg, steps=60)
    back = _claw_in_thorax(env, leg)[0]
    _drive(env, motor_map, FANC_MODULES, "coxa_promote", leg, steps=60)
    front = _claw_in_thorax(env, leg)[0]
    assert front > back + 0.1


def test_tarsus_depression_turns_like_tibia_flexion():
    """tarsus1 and tibia pitch axes are parallel and equally oriented, so a
    positive direction for both channels means the same rotational sense."""
    from connectofly.envs.body import actuated_joint_names, build_model

    model = build_model("flat")
    data = mujoco.MjData(model)
    data.qpos[:] = model.key_qpos[0]
    mujoco.mj_kinematics(model, data)
    names = actuated_joint_names()
    for leg_i in range(6):
        tibia, tarsus = (mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, names[leg_i * 7 + k]) for k in (5, 6))
        assert float(data.xaxis[tibia] @ data.xaxis[tarsus]) > 0.99
    channels = {c.name: c for c in mm.CHANNELS}
    assert channels["tita_depression"].direction == channels["fti_flexion"].direction

"""Closed-loop visual episodes on the MJX backend, as pure JAX functions that jit, vmap and grad.

Every vision frame (2 ms) the compound eyes are ray-cast from ``mjx.Data``
(:func:`connectofly.envs.raycast.render_from_data`) and a :class:`Controller`
sees the frame; every control step (1 ms) it sets the descending drive
(left, right), which its :class:`Motor` turns into the joint action held for
the physics substeps: NeuroMechFly v2's CPG steered by the drive
(:func:`cpg_motor`) or the connectome VNC (:func:`vnc_motor`). The arena objects move along the episode's layout.
One frame is :func:`frame_step`; :func:`run_frames` scans it, so a batch of
flies is one ``vmap`` of it (``connectofly bench --backend mjx``,
:mod:`connectofly.training.mjx_bench`) and a readout's gradient is one
``jax.grad`` through it (:mod:`connectofly.training.bptt_readout`).

The controllers are the C backend's, as JAX functions of the same parameters:

| builder | the C controller | what it does each frame |
|---|---|---|
| :func:`blind_controller` | ``cpg`` | nothing: walks straight |
| :func:`bearing_controller` | ``visual_taxis``, ``visual_escape`` | the dark object's bearing (:func:`~connectofly.agents.visual_taxis.dark_bearing`) → drive |
| :func:`ppo_mlp_controller` | ``ppo_mlp`` | every 50 ms: photoreceptor regions → MLP → drive |
| :func:`connectome_controller` | ``connectome``, ``connectome_vnc`` | both optic lobes take a step; the readout's features set the descending units' target |

Two things differ from the C backend: where a C controller walks with the
hybrid walker, its MJX version walks with the plain CPG (the hybrid walker's
reflexes, NumPy code, are for rough terrain, which the MJX body has not); and
the body is the mesh-free primitive NeuroMechFly on flat ground
(:func:`~connectofly.envs.body.build_primitive_model`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from gymnasium.utils import seeding
from mujoco import mjx

from connectofly.agents.cpg import CPGState, initial_state, tripod_params, with_descending_drive
from connectofly.agents.mjx_rollout import cpg_action
from connectofly.agents.visual_taxis import (
    DRIVE_RANGE,
    STRAIGHT_DRIVE,
    dark_bearing,
    ommatidium_azimuths,
    ommatidium_directions,
)
from connectofly.envs import arena, mjx_physics, raycast
from connectofly.envs.body import BodyIndex, build_primitive_model
from connectofly.envs.fly_env import (
    DEFAULT_CONTROL_DT,
    DEFAULT_RESET_NOISE,
    DEFAULT_VISION_HZ,
    draw_joint_noise,
    draw_layout_key,
    substeps_per_control,
)
from connectofly.envs.kinematics import load_step_kinematics
from connectofly.envs.visual_tasks import VisualTask, make_visual_task


@dataclass(frozen=True)
class Scene:
    """A visual task's world on MJX: the primitive body with the task's objects, and its eyes."""

    task: VisualTask
    model: mujoco.MjModel
    body: mjx_physics.MjxBody
    eye: tuple  # (rays, scene selection, eye camera ids) for raycast.render_from_data
    directions: np.ndarray  # (2, 721, 3) ommatidium viewing directions, thorax frame
    control_dt: float = DEFAULT_CONTROL_DT
    vision_hz: float = DEFAULT_VISION_HZ

    @property
    def steps_per_frame(self) -> int:
        return int(round(1.0 / (self.vision_hz * self.control_dt)))


def make_scene(task: str, model: Callable[[mujoco.MjModel], mujoco.MjModel] = lambda m: m) -> Scene:
    """The visual ``task`` on the primitive body; ``model`` adapts the MuJoCo model first
    (e.g. :func:`~connectofly.envs.mjx_grad.differentiable_model` for gradients)."""
    visual_task = make_visual_task(task)
    mj_model = model(build_primitive_model(visual_task.objects))
    arena.check_mocap_layout(mj_model, visual_task.objects)
    data = mujoco.MjData(mj_model)
    data.qpos[:] = mj_model.key_qpos[0]
    mujoco.mj_forward(mj_model, data)
    directions = ommatidium_directions(mj_model, data, BodyIndex.from_model(mj_model).thorax_body)
    eye = (raycast.make_eye_rays(), raycast.select_scene_geoms(mj_model), raycast.eye_camera_ids(mj_model))
    return Scene(visual_task, mj_model, mjx_physics.load(mj_model), eye, directions)


# -- motor stages ---------------------------------------------------------------


@dataclass(frozen=True)
class Motor:
    """Descending drive → joint action, as pure JAX functions.

    ``start(seed) -> carry``: the state the C backend's episode ``seed`` starts the same stage
    in (its ``init(np.random.default_rng(seed))``); ``step(carry, (2,) drive) -> (carry, (48,)
    action)`` once per control step of ``control_dt`` seconds.
    """

    control_dt: float
    start: Callable[[int], Any]
    step: Callable[[Any, jax.Array], tuple[Any, jax.Array]]


def cpg_motor(control_dt: float = DEFAULT_CONTROL_DT) -> Motor:
    """NeuroMechFly v2's tripod CPG, steered by the drive
    (:func:`~connectofly.agents.cpg.with_descending_drive`), from the C agents' initial phases."""
    params, kinematics = tripod_params(), load_step_kinematics()

    def start(seed: int) -> CPGState:
        return CPGState(jnp.asarray(initial_state(np.random.default_rng(seed)).phases, jnp.float32),
                        jnp.zeros(6, jnp.float32))

    def step(cpg: CPGState, drive):
        return cpg_action(with_descending_drive(params, drive), cpg, kinematics, control_dt)

    return Motor(control_dt, start, step)


def vnc_motor(stage) -> Motor:
    """The connectome VNC of a :class:`~connectofly.agents.connectome.VNCMotor` (its weights and
    silenced hemilineages), the drive on its descending channels
    (:func:`~connectofly.agents.connectome.vnc_descending`), without proprioception, as shipped."""
    from connectofly.agents.connectome import vnc_descending

    agent = stage.agent
    if agent.proprioception:
        raise ValueError("the MJX VNC motor stage runs without proprioception (the primitive body has no "
                         "contact sensors); build the VNC agent with proprioception=False")

    def step(carry, drive):  # no sensors: the stage runs without proprioception
        return agent.step(agent.params, carry, None, None, None, vnc_descending(drive))

    return Motor(agent.control_dt, lambda seed: stage.init(np.random.default_rng(seed)), step)


# -- controllers ----------------------------------------------------------------


@dataclass(frozen=True)
class Controller:
    """Vision → descending drive → joint action, as pure JAX functions of explicit ``params``.

    ``init(params) -> carry``; ``see(params, carry, vision (2, 721, 2)) -> carry`` once per
    vision frame; ``drive(params, carry) -> (carry, (2,) drive)`` once per control step, which
    ``motor`` turns into the action. ``params`` is what a trainer may differentiate (the
    connectome's readout).
    """

    init: Callable[[Any], Any]
    see: Callable[[Any, Any, jax.Array], Any]
    drive: Callable[[Any, Any], tuple[Any, jax.Array]]
    params: Any = None
    motor: Motor = field(default_factory=cpg_motor)


def _hold(params, carry):
    """A drive set when the frame was seen, held over its control steps."""
    return carry, carry


def blind_controller() -> Controller:
    """Walks straight, whatever it sees (the C backend's ``cpg``)."""
    straight = jnp.asarray(STRAIGHT_DRIVE, jnp.float32)
    return Controller(lambda params: straight, lambda params, carry, vision: carry, _hold)


def bearing_controller(directions: np.ndarray, steer: Callable) -> Controller:
    """The simple vision baseline: ``steer`` (:func:`~connectofly.agents.visual_taxis.steering_drive`
    or :func:`~connectofly.agents.visual_taxis.escape_drive`) of the dark object's bearing."""
    azimuths = jnp.asarray(ommatidium_azimuths(directions), jnp.float32)

    def see(params, carry, vision):
        return steer(dark_bearing(vision, azimuths)).astype(jnp.float32)

    return Controller(lambda params: jnp.asarray(STRAIGHT_DRIVE, jnp.float32), see, _hold)


class DecisionCarry(NamedTuple):
    drive: jax.Array  # (2,) set at the last decision
    frames: jax.Array  # int32, frames seen


def ppo_mlp_controller(policy, scene: Scene) -> Controller:
    """The PPO-MLP: every ``policy.decision_dt`` its mean action on the photoreceptor regions
    sets the drive (:class:`~connectofly.agents.ppo_mlp.PPOMLPAgent`)."""
    from connectofly.agents.connectome import visual_regions
    from connectofly.envs.drive_env import drive_from_unit, photoreceptor_features, steps_per_decision

    decision_steps = steps_per_decision(scene.control_dt, policy.decision_dt)
    if decision_steps % scene.steps_per_frame:
        raise ValueError(f"the policy decides every {decision_steps} control steps, not a whole number of vision "
                         f"frames of {scene.steps_per_frame}")
    frames_per_decision = decision_steps // scene.steps_per_frame
    regions = jnp.asarray(visual_regions(scene.directions))

    def see(params, carry, vision):
        drive = drive_from_unit(policy.mean_action(photoreceptor_features(vision, regions)))
        decide = carry.frames % frames_per_decision == 0
        return DecisionCarry(jnp.where(decide, drive, carry.drive).astype(jnp.float32), carry.frames + 1)

    return Controller(lambda params: DecisionCarry(drive_from_unit(jnp.zeros(2, jnp.float32)), jnp.int32(0)),
                      see, lambda params, carry: (carry, carry.drive))


class ConnectomeLoopCarry(NamedTuple):
    cells: jax.Array  # (2, n_cells) both optic lobes (LobeCarry)
    features: jax.Array  # (2, n_types, N_REGIONS) the readout's input, set each frame
    dn: jax.Array  # (2,) descending units


def connectome_controller(agent) -> Controller:
    """A :class:`~connectofly.agents.connectome.ConnectomeAgent`'s eyes → optic lobes →
    descending units → motor stage, with its readout as ``params`` (silenced types included);
    the connectome VNC if the agent walks with it, else the CPG."""
    from connectofly.agents.connectome import REST_DRIVE, VNCMotor, dn_step, output_gain, readout_features

    gain = output_gain(agent.cell_types, agent.silenced_types)
    lobes, fmap, dt = agent.lobes, agent.fmap, agent.lobes.control_dt

    def init(readout):
        cells = lobes.init().cells
        features = jnp.zeros((2, len(agent.cell_types), fmap.regions.shape[1]), cells.dtype)
        return ConnectomeLoopCarry(cells, features, jnp.full(2, REST_DRIVE, cells.dtype))

    def see(readout, carry, vision):
        cells = lobes.frame(carry.cells, vision)
        return carry._replace(cells=cells, features=readout_features(fmap, cells, gain))

    def drive(readout, carry):
        dn = dn_step(readout, carry.dn, carry.features, dt)
        return carry._replace(dn=dn), dn

    motor = vnc_motor(agent.motor) if isinstance(agent.motor, VNCMotor) else cpg_motor(dt)
    return Controller(init, see, drive, agent.readout, motor)


# -- the loop -------------------------------------------------------------------


class EpisodeStart(NamedTuple):
    """What differs between episodes: the pose, the arena layout, the motor stage's state."""

    qpos: jax.Array  # (nq,)
    layout: arena.Trajectory
    motor: Any  # Motor.start(seed)


class LoopState(NamedTuple):
    data: mjx.Data
    controller: Any
    motor: Any


def seeded_start(scene: Scene, motor: Motor, seed: int, reset_noise: float = DEFAULT_RESET_NOISE) -> EpisodeStart:
    """The start of the C backend's episode ``seed`` (``FlyEnv.reset(seed=seed)`` then
    ``agent.init(np.random.default_rng(seed))``, as :func:`~connectofly.agents.rollout.run_episode`
    does): the same joint noise, layout and motor state (CPG phases, VNC voltages), so the two
    backends run paired episodes."""
    env_rng, _ = seeding.np_random(seed)
    qpos = scene.model.key_qpos[0].copy()
    qpos[scene.body.index.joint_qpos] += draw_joint_noise(env_rng, reset_noise)
    layout = scene.task.sample(draw_layout_key(env_rng))
    return EpisodeStart(jnp.asarray(qpos, jnp.float32), layout, motor.start(seed))


def _place_objects(data: mjx.Data, layout: arena.Trajectory, time) -> mjx.Data:
    pos, quat = arena.mocap_poses(layout, time)
    return data.replace(mocap_pos=pos.astype(data.mocap_pos.dtype), mocap_quat=quat.astype(data.mocap_quat.dtype))


def start_state(scene: Scene, controller: Controller, params, start: EpisodeStart) -> LoopState:
    """The loop at time 0: the body at rest at ``start.qpos``, the objects placed, the controller's init."""
    data = mjx.make_data(scene.model)
    data = data.replace(qpos=start.qpos.astype(data.qpos.dtype), ctrl=jnp.asarray(scene.model.key_ctrl[0],
                                                                                     data.ctrl.dtype))
    # Poses only (what the eyes need before the first step, which computes the rest):
    # a full mjx.forward here took 30 s more to compile on a 2-core CPU.
    data = _place_objects(data, start.layout, 0.0)
    data = mjx.camlight(scene.body.model, mjx.kinematics(scene.body.model, data))
    dtype = data.qpos.dtype  # float32, or float64 with jax_enable_x64
    motor = jax.tree.map(lambda x: jnp.asarray(x, dtype), start.motor)
    return LoopState(data, controller.init(params), motor)


def frame_step(scene: Scene, controller: Controller, params, layout: arena.Trajectory,
               record: Callable[[mjx.Data], Any], window: int | None = None):
    """``(state, frame index) -> (state, records)``: render the eyes, let the controller see,
    then ``scene.steps_per_frame`` control steps; ``record(data)`` after each (stacked).

    With ``window``, reverse mode does not follow the body's state back across every
    ``window``-th frame (truncated backprop through the physics; the controller's and the
    motor stage's states still carry the gradient across).
    """
    body, dt, motor = scene.body, scene.control_dt, controller.motor
    if not np.isclose(motor.control_dt, dt):
        raise ValueError(f"the motor stage steps every {motor.control_dt} s, the scene every {dt} s")
    n_substeps = substeps_per_control(dt)

    def control_step(state: LoopState, _):
        carry, drive = controller.drive(params, state.controller)
        motor_state, action = motor.step(state.motor, jnp.clip(drive, *DRIVE_RANGE))
        # objects move once per control step, to where they are at its end (as FlyEnv.step)
        data = _place_objects(state.data, layout, state.data.time + dt)
        data = mjx_physics.step(body, data, action, n_substeps)
        return LoopState(data, carry, motor_state), record(data)

    def frame(state: LoopState, index):
        data = state.data
        if window is not None:
            cut = index % window == 0
            data = jax.tree.map(lambda x: jnp.where(cut, jax.lax.stop_gradient(x), x), data)
        vision = raycast.render_from_data(*scene.eye, data)
        state = LoopState(data, controller.see(params, state.controller, vision), state.motor)
        # a scan, not a Python loop: the physics step is traced (and compiled) once per frame body
        return jax.lax.scan(control_step, state, None, length=scene.steps_per_frame)

    return frame


def run_frames(scene: Scene, controller: Controller, params, layout: arena.Trajectory, state: LoopState,
               n_frames: int, record: Callable[[mjx.Data], Any], first_frame=0, window: int | None = None):
    """``n_frames`` of :func:`frame_step` from ``state``: the final state and the records,
    ``(n_frames, steps_per_frame, ...)``. Frames are checkpointed, so reverse mode stores
    one state per frame and memory grows with the number of frames only."""
    frame = jax.checkpoint(frame_step(scene, controller, params, layout, record, window))
    return jax.lax.scan(frame, state, first_frame + jnp.arange(n_frames))

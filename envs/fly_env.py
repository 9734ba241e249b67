"""The gymnasium environment: one NeuroMechFly on the MuJoCo C backend.

Action (``Box``, shape (48,), float64):

| index | meaning | range | unit |
|---|---|---|---|
| 0-41 | joint position targets, leg-major (lf lm lh rf rm rh), per leg: coxa yaw, coxa pitch, coxa roll, femur pitch, femur roll, tibia pitch, tarsus1 pitch | recorded walking envelope ± 90°, within [-π, π] (``kinematics.joint_ranges``) | rad |
| 42-47 | adhesion per leg (lf lm lh rf rm rh) | [0, 1] | fraction of max |

Out-of-range values are clipped to the range (``info["action_clipped"]``
says so); NaN, inf, a wrong shape or a non-numeric dtype raise ``ValueError``.

Observation (``Dict``, all float64; world frame unless stated):

| key | shape | unit | what |
|---|---|---|---|
| ``joint_angles`` | (42,) | rad | actuated joint angles, action order |
| ``joint_velocities`` | (42,) | rad/s | |
| ``actuator_forces`` | (42,) | µN·mm | position-actuator torques |
| ``thorax_position`` | (3,) | mm | |
| ``thorax_velocity`` | (3,) | mm/s | |
| ``thorax_orientation`` | (4,) | - | quaternion (w, x, y, z), thorax → world |
| ``thorax_angular_velocity`` | (3,) | rad/s | z = yaw rate |
| ``contact_forces`` | (6, 8, 3) | µN | ground reaction on each leg segment (coxa, trochanterfemur, tibia, tarsus1-5) |
| ``claw_positions`` | (6, 3) | mm | tarsus5 positions |
| ``command`` | (k,) | task | ``turn``: commanded yaw rate ω* (rad/s); ``walk``: empty |
| ``vision`` | (2, 721, 2) | [0, 1] | with ``vision=True`` (the default for visual tasks): compound-eye readout (left, right eye; ommatidia in flyvis lattice order; column 0 yellow, column 1 pale ommatidia, the other column 0), refreshed every 1/``vision_hz`` s and held in between |

Visual tasks (:mod:`connectofly.envs.visual_tasks`) add arena objects and
report in ``info``: ``object_positions`` (n, 2) mm, ``distance`` (mm) and
``bearing`` (rad, + left) of the task's main object, ``success`` (the task's
success flag this step) and ``obstacle_contact`` (a body segment touches a
pillar). An episode that ends on success has ``info["termination"] ==
"success"``; one the looming object catches, ``"caught"``.
``reset(options={"layout": trajectory})`` replaces the drawn layout by an
:class:`~connectofly.envs.arena.Trajectory` of your own; for the locomotion
tasks, ``reset(options={"command": [...]})`` replaces the drawn command (``turn``:
ω*). Any other key, or a value of the wrong kind, raises ``ValueError`` before
anything is reset (``FlyEnv.reset_options`` lists the keys).

The reward is the task's reward minus the action-rate cost; ``info`` holds
both parts (``task_reward``, ``action_rate_cost``). The step that ends in a
flip or divergence earns 0 (reward and ``task_reward``).

The control step is ``control_dt`` (default 1 ms), a whole multiple of the
physics step (0.1 ms); the action is held for the substeps in between. As in
gymnasium, an episode that has ended (``terminated`` or ``truncated``) takes no
more steps: ``step()`` raises ``RuntimeError`` until ``reset()``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import jax
import mujoco
import numpy as np
from jax._src import xla_bridge  # no public API says whether JAX has started

from connectofly.envs import arena
from connectofly.envs.body import N_ACTIONS, N_ADHESION, N_JOINTS, PHYSICS_DT, build_spec
from connectofly.envs.kinematics import joint_ranges
from connectofly.envs.physics import BodyState, MujocoPhysics
from connectofly.envs.tasks import TASKS, Task, action_rate_cost, forward_speed, get_task, is_flipped, yaw_rate
from connectofly.envs.visual_tasks import TASK_OPTIONS, VISUAL_TASKS, VisualTask, make_visual_task

DEFAULT_CONTROL_DT = 1e-3
DEFAULT_DURATION = 2.0
DEFAULT_RESET_NOISE = 0.01  # rad, uniform noise on the initial joint angles
DEFAULT_VISION_HZ = 500.0  # refresh rate of the eyes, as flygym 1.x


def substeps_per_control(control_dt: float) -> int:
    """Physics steps per control step; control_dt must be a whole multiple of PHYSICS_DT."""
    ratio = control_dt / PHYSICS_DT
    n = int(round(ratio)) if math.isfinite(ratio) else 0
    if n < 1 or abs(ratio - n) > 1e-6:
        raise ValueError(
            f"control_dt={control_dt} s must be a positive whole multiple of the "
            f"physics step {PHYSICS_DT} s"
        )
    return n


def is_finite_real(value: Any) -> bool:
    """A finite real number (Python or NumPy); bools are not numbers here."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(name: str, value: Any, unit: str) -> None:
    if not (is_finite_real(value) and value > 0):
        raise ValueError(f"{name}={value!r} must be a positive, finite number ({unit})")


def check_non_negative(name: str, value: Any, unit: str) -> None:
    if not (is_finite_real(value) and value >= 0):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0 ({unit})")


def check_render_size(render_size: Any) -> None:
    def is_pixels(n: Any) -> bool:
        return isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0

    if not (isinstance(render_size, (tuple, list)) and len(render_size) == 2 and all(map(is_pixels, render_size))):
        raise ValueError(f"render_size={render_size!r} must be (height, width): two positive whole numbers of px")


def check_task(task: Any, task_options: Any) -> None:
    """``task`` is a known task and ``task_options`` holds only keyword arguments it uses."""
    if task not in (*TASKS, *VISUAL_TASKS):
        raise ValueError(f"unknown task {task!r}; valid tasks: {(*TASKS, *VISUAL_TASKS)}")
    if task_options is None:
        return
    if not isinstance(task_options, Mapping):
        raise ValueError(f"task_options must be a dict (or None), got {type(task_options).__name__}")
    valid = TASK_OPTIONS.get(task, ())
    unknown = [key for key in task_options if key not in valid]
    if unknown:
        takes = f"takes only {valid}" if valid else "takes no task_options"
        raise ValueError(f"task {task!r} {takes}; task_options has {unknown}")


def draw_joint_noise(rng: np.random.Generator, reset_noise: float) -> np.ndarray:
    """An episode's (N_JOINTS,) initial joint-angle offsets: the first draw of a reset."""
    return rng.uniform(-reset_noise, reset_noise, N_JOINTS)


def draw_layout_key(rng: np.random.Generator) -> jax.Array:
    """The key a visual task's layout is sampled from: the draw after :func:`draw_joint_noise`.
    (The MJX benchmark repeats both draws to start the C backend's episodes.)"""
    return jax.random.key(rng.integers(2**31))


def action_bounds() -> tuple[np.ndarray, np.ndarray]:
    joint_low, joint_high = joint_ranges()
    low = np.concatenate([joint_low, np.zeros(N_ADHESION)])
    high = np.concatenate([joint_high, np.ones(N_ADHESION)])
    return low, high


def validate_action(action: Any, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, bool]:
    """Check an action and clip it into [low, high]; returns (action, was_clipped)."""
    array = np.asarray(action)
    if array.dtype.kind not in "fiu":
        raise ValueError(
            f"action dtype {array.dtype} is not a real number type; expected float (or int)"
        )
    if array.shape != (N_ACTIONS,):
        raise ValueError(
            f"action shape {array.shape} is wrong; expected ({N_ACTIONS},): "
            f"{N_JOINTS} joint targets then {N_ADHESION} adhesion values"
        )
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"action has non-finite values (NaN/inf) at indices {np.flatnonzero(bad).tolist()}")
    clipped = np.clip(array, low, high)
    return clipped, bool((clipped != array).any())


def observation_space(command_size: int, vision: bool) -> gym.spaces.Dict:
    def box(*shape: int) -> gym.spaces.Box:
        return gym.spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float64)

    eyes = {"vision": gym.spaces.Box(0.0, 1.0, shape=(2, 721, 2), dtype=np.float64)} if vision else {}
    return gym.spaces.Dict(
        {
            **eyes,
            "joint_angles": box(N_JOINTS),
            "joint_velocities": box(N_JOINTS),
            "actuator_forces": box(N_JOINTS),
            "thorax_position": box(3),
            "thorax_velocity": box(3),
            "thorax_orientation": box(4),
            "thorax_angular_velocity": box(3),
            "contact_forces": box(6, 8, 3),
            "claw_positions": box(6, 3),
            "command": box(command_size),
        }
    )


def observe(state: BodyState, command: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "joint_angles": state.joint_angles,
        "joint_velocities": state.joint_velocities,
        "actuator_forces": state.actuator_forces,
        "thorax_position": state.thorax_position,
        "thorax_velocity": state.thorax_velocity,
        "thorax_orientation": state.thorax_orientation,
        "thorax_angular_velocity": state.thorax_angular_velocity,
        "contact_forces": state.contact_forces,
        "claw_positions": state.claw_positions,
        "command": command.astype(np.float64),
    }


# JAX's threads do not survive a fork: JAX deadlocks in a child forked while it was
# running. The id of the process that forked with JAX running, for its children to see.
_forked_with_jax_by: int | None = None


def _note_jax_before_fork() -> None:
    global _forked_with_jax_by
    if xla_bridge.backends_are_initialized():
        _forked_with_jax_by = os.getpid()


os.register_at_fork(before=_note_jax_before_fork)


def refuse_jax_in_forked_child() -> None:
    """Raise, rather than deadlock, before JAX runs in a child forked while JAX was running."""
    if _forked_with_jax_by not in (None, os.getpid()):
        raise RuntimeError(
            f"this process was forked from process {_forked_with_jax_by} while JAX was running there, and JAX "
            "deadlocks in a forked child (the eyes and the visual tasks run JAX): start the workers with 'spawn', "
            "e.g. gym.make_vec(env_id, num_envs, vectorization_mode='async', vector_kwargs={'context': 'spawn'}), "
            "or make the vector env before the parent runs JAX"
        )


def ray_caster(model: mujoco.MjModel) -> Callable[[mujoco.MjData], jax.Array]:
    """``data -> (2, 721, 2)`` readout of both eyes in ``model`` (:mod:`connectofly.envs.raycast`)."""
    from connectofly.envs import raycast  # starts JAX

    rays, selection = raycast.make_eye_rays(), raycast.select_scene_geoms(model)
    return partial(raycast.render_from_data, rays, selection, raycast.eye_camera_ids(model))


class CompoundEye:
    """Renders the compound eye from the MuJoCo state.

    The ray caster is set up on the first frame, not here, so that a new env has
    not started JAX: gymnasium's AsyncVectorEnv makes one in the parent before it
    forks its workers.
    """

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self._render: Callable[[mujoco.MjData], jax.Array] | None = None

    def __call__(self, data: mujoco.MjData) -> np.ndarray:
        if self._render is None:
            self._render = ray_caster(self.model)
        return np.clip(np.asarray(self._render(data), dtype=np.float64), 0.0, 1.0)


def build_arena_model(terrain: str, objects: tuple[arena.ArenaObject, ...] = ()) -> mujoco.MjModel:
    """The exact NeuroMechFly in ``terrain`` with ``objects`` as mocap bodies."""
    spec = build_spec(terrain)
    arena.add_objects(spec, objects)
    return spec.compile()


def touches(data: mujoco.MjData, geom_ids: np.ndarray) -> bool:
    """Whether any active contact involves one of ``geom_ids``."""
    contacts = data.contact
    return bool(len(geom_ids)) and bool(np.isin(contacts.geom[: data.ncon], geom_ids).any())


@dataclass(frozen=True)
class ObjectPath:
    """The arena objects' poses at every control step of an episode, computed once at reset.

    A trajectory is a function of time alone, and evaluating it three times a
    control step (the mocap poses, the score) cost about a tenth of the
    physics; the episode's table costs about one step's worth per second
    simulated. The values are those :mod:`~connectofly.envs.arena` computes
    at each time (vectorised over the times, bit for bit the same).
    """

    control_dt: float
    xy: np.ndarray  # (n_steps + 1, n_objects, 2) positions at k * control_dt
    mocap_pos: np.ndarray  # (n_steps + 1, n_objects, 3)
    mocap_quat: np.ndarray  # (n_steps + 1, n_objects, 4)

    @classmethod
    def along(cls, trajectory: arena.Trajectory, control_dt: float, duration: float) -> "ObjectPath":
        times = np.arange(int(np.ceil(duration / control_dt - 1e-9)) + 1) * control_dt
        return cls(control_dt, arena.object_positions(trajectory, times), *arena.mocap_poses(trajectory, times))

    def _step(self, time: float) -> int:
        k = int(round(time / self.control_dt))
        if not (0 <= k < len(self.xy) and abs(k * self.control_dt - time) < 1e-9):
            raise ValueError(f"time {time} s is not a control step of this episode")
        return k

    def positions(self, time: float) -> np.ndarray:
        return self.xy[self._step(time)]

    def mocap_poses(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        k = self._step(time)
        return self.mocap_pos[k], self.mocap_quat[k]


class FlyEnv(gym.Env):
    """NeuroMechFly walking in an arena, single fly, MuJoCo C physics.

    Args:
        task: ``"walk"`` or ``"turn"`` (:mod:`connectofly.envs.tasks`), or a
            visual task (``visual_tasks.VISUAL_TASKS``).
        task_options: keyword arguments of :func:`~connectofly.envs.visual_tasks.make_visual_task`
            (``trajectory``, ``target`` of ``follow_object``).
        terrain: ``"flat"``, ``"gapped"``, ``"blocks"`` or ``"mixed"``.
        control_dt: control step, s; a whole multiple of 1e-4 s.
        duration: episode length, s (then ``truncated``).
        reset_noise: half-width of the uniform noise added to the initial joint
            angles, rad.
        render_mode: ``"rgb_array"`` or None.
        render_size: (height, width) of rendered frames, px.
        vision: add the compound-eye readout ``obs["vision"]``; default: on for
            visual tasks, off otherwise. Visual tasks require it.
        vision_hz: how often the eyes are rendered, Hz (a whole number of
            control steps apart at most, rounded down).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        task: str = "walk",
        terrain: str = "flat",
        control_dt: float = DEFAULT_CONTROL_DT,
        duration: float = DEFAULT_DURATION,
        reset_noise: float = DEFAULT_RESET_NOISE,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (480, 640),
        vision: bool | None = None,
        vision_hz: float = DEFAULT_VISION_HZ,
        task_options: dict | None = None,
    ) -> None:
        check_task(task, task_options)
        check_positive("control_dt", control_dt, "s")
        n_substeps = substeps_per_control(control_dt)
        check_positive("duration", duration, "s")
        check_non_negative("reset_noise", reset_noise, "rad")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        check_render_size(render_size)
        if not (vision is None or isinstance(vision, bool)):
            raise ValueError(f"vision={vision!r} must be True, False or None (the task's default)")
        check_positive("vision_hz", vision_hz, "Hz")
        if task in VISUAL_TASKS:
            if vision is False:
                raise ValueError(f"task {task!r} is a visual task; it needs vision=True")
            self.task: VisualTask | Task = make_visual_task(task, **(task_options or {}))
            vision = True
        else:
            self.task = get_task(task)
        self.objects = self.task.objects if isinstance(self.task, VisualTask) else ()
        self.terrain = terrain
        self.n_substeps = n_substeps
        self.control_dt = control_dt
        self.duration = duration
        self.reset_noise = reset_noise
        self.render_mode = render_mode
        self.render_size = tuple(render_size)
        self.physics = MujocoPhysics(build_arena_model(terrain, self.objects))
        arena.check_mocap_layout(self.model, self.objects)
        self._obstacle_geoms = arena.object_geom_ids(self.model, self.objects)
        self._trajectory: arena.Trajectory | None = None
        self._object_path: ObjectPath | None = None
        low, high = action_bounds()
        self.action_space = gym.spaces.Box(low, high, dtype=np.float64)
        self.observation_space = observation_space(self.task.command_size, bool(vision))
        self._eye = CompoundEye(self.model) if vision else None
        self.vision_hz = vision_hz
        self._vision_interval = 1.0 / vision_hz
        self._next_vision_time = 0.0
        self._vision: np.ndarray | None = None
        self._renderer: mujoco.Renderer | None = None
        self._neutral_action = self._keyframe_action()
        self._prev_action = self._neutral_action
        self._command = np.zeros(self.task.command_size)
        self._obs: dict[str, np.ndarray] | None = None
        self._ended = False  # terminated or truncated: only reset() goes on

    @property
    def model(self) -> mujoco.MjModel:
        return self.physics.model

    @property
    def neutral_action(self) -> np.ndarray:
        """The action that holds the neutral pose with adhesion off."""
        return self._neutral_action.copy()

    def _keyframe_action(self) -> np.ndarray:
        key_ctrl = self.model.key_ctrl[0]
        joints = key_ctrl[self.physics.index.joint_actuators]
        return np.concatenate([joints, np.zeros(N_ADHESION)])

    def _ctrl(self, action: np.ndarray) -> np.ndarray:
        ctrl = self.model.key_ctrl[0].copy()
        ctrl[self.physics.index.joint_actuators] = action[:N_JOINTS]
        ctrl[self.physics.index.adhesion_actuators] = action[N_JOINTS:]
        return ctrl

    @property
    def reset_options(self) -> tuple[str, ...]:
        """The keys ``reset(options=...)`` takes: a visual task's layout, or the command."""
        return ("layout",) if isinstance(self.task, VisualTask) else ("command",)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = self._checked_options(options)
        if self._eye is not None:
            refuse_jax_in_forked_child()
        super().reset(seed=seed)
        qpos = self.model.key_qpos[0].copy()
        qpos[self.physics.index.joint_qpos] += draw_joint_noise(self.np_random, self.reset_noise)
        state = self.physics.reset(qpos, np.zeros(self.model.nv))
        if isinstance(self.task, VisualTask):
            if "layout" in options:
                self._trajectory = options["layout"]
            else:
                self._trajectory = arena.to_numpy(self.task.sample(draw_layout_key(self.np_random)))
            self._object_path = ObjectPath.along(self._trajectory, self.control_dt, self.duration)
            self._place_objects(0.0)
            mujoco.mj_forward(self.model, self.physics.data)  # geom poses for the eye
        else:
            self._command = self.task.sample_command(self.np_random)
            if "command" in options:
                self._command = options["command"]
        self._prev_action = self._neutral_action
        self._next_vision_time = 0.0
        self._obs = self._observe(state)
        self._ended = False
        return self._obs, {"time": state.time, "termination": None}

    def _place_objects(self, time: float) -> None:
        """Move the arena objects to where their trajectories are at ``time``."""
        data = self.physics.data
        data.mocap_pos[:], data.mocap_quat[:] = self._object_path.mocap_poses(time)

    def _observe(self, state: BodyState) -> dict[str, np.ndarray]:
        obs = observe(state, self._command)
        if self._eye is not None:
            if state.time >= self._next_vision_time - 1e-9:
                self._vision = self._eye(self.physics.data)
                self._next_vision_time += self._vision_interval
            obs["vision"] = self._vision.copy()  # callers may keep or modify it
        return obs

    def _checked_options(self, options: Any) -> dict[str, Any]:
        """The reset options, checked and converted, or a ValueError naming the bad one."""
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise ValueError(f"options must be a dict (or None), got {type(options).__name__}")
        unknown = [key for key in options if key not in self.reset_options]
        if unknown:
            raise ValueError(
                f"unknown reset options {unknown} for task {self.task.name!r}; it takes {self.reset_options}"
            )
        checkers = {"layout": self._checked_layout, "command": self._checked_command}
        return {key: checkers[key](value) for key, value in options.items()}

    def _checked_layout(self, layout: Any) -> arena.Trajectory:
        if not isinstance(layout, arena.Trajectory):
            raise ValueError(f"options['layout'] must be an arena.Trajectory, got {type(layout).__name__}")
        layout = arena.to_numpy(layout)
        if layout.origin.shape != (len(self.objects), 2):
            raise ValueError(
                f"options['layout'] has {layout.origin.shape[0]} objects; "
                f"task {self.task.name!r} has {len(self.objects)}"
            )
        return layout

    def _checked_command(self, command: Any) -> np.ndarray:
        try:
            array = np.asarray(command, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            array = None
        if array is None or array.shape != (self.task.command_size,) or not np.isfinite(array).all():
            raise ValueError(
                f"options['command']={command!r} must be {self.task.command_size} finite numbers "
                f"for task {self.task.name!r}"
            )
        return array

    def step(self, action):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if self._ended:
            raise RuntimeError("the episode has ended (terminated or truncated): call reset() before step()")
        action, clipped = validate_action(action, self.action_space.low, self.action_space.high)
        if self._trajectory is not None:
            # Objects move once per control step, to where they are at its end.
            self._place_objects(self.physics.data.time + self.control_dt)
        state = self.physics.step(self._ctrl(action), self.n_substeps)
        task_reward, terms = self._score(state)
        cost = float(action_rate_cost(action, self._prev_action, self.control_dt))
        self._prev_action = action
        obs = self._observe(state)
        termination = self._termination(state)
        if termination is None:
            self._obs = obs
        physics_failed = termination is not None
        termination = termination or terms.pop("task_termination", None)
        reward = 0.0 if physics_failed else task_reward - cost
        info = {
            "time": state.time,
            "termination": termination,
            "action_clipped": clipped,
            "action_rate_cost": cost,
            "task_reward": 0.0 if physics_failed else task_reward,
            **terms,
        }
        truncated = termination is None and state.time >= self.duration - 1e-9
        self._ended = termination is not None or truncated
        return self._obs, reward, termination is not None, truncated, info

    def _score(self, state: BodyState) -> tuple[float, dict]:
        """Task reward before the action cost, and the ``info`` terms of the task."""
        if not isinstance(self.task, VisualTask):
            reward, terms = self.task.reward(state, self._command)
            return float(reward), {name: float(value) for name, value in terms.items()}
        xy = self._object_path.positions(state.time)
        outcome = self.task.score(state, xy)
        terms = {
            "forward_speed": float(forward_speed(state)),
            "yaw_rate": float(yaw_rate(state)),
            "object_positions": xy,
            "distance": float(outcome.distance),
            "bearing": float(outcome.bearing),
            "success": bool(outcome.success),
            "obstacle_contact": touches(self.physics.data, self._obstacle_geoms),
        }
        if outcome.failure:
            terms["task_termination"] = "caught"
        elif outcome.success and self.task.ends_on_success:
            terms["task_termination"] = "success"
        return float(outcome.reward), terms

    def _termination(self, state: BodyState) -> str | None:
        divergence = self.physics.divergence()
        if divergence is not None:
            return f"diverged: {divergence}"
        if not np.isfinite(state.actuator_forces).all():
            return "diverged: non-finite actuator forces"
        if is_flipped(state):
            return "flipped"
        return None

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            from connectofly.videos.frames import make_renderer

            self._renderer = make_renderer(self.model, self.render_size)
        self._renderer.update_scene(self.physics.data, camera=self.physics.index.camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

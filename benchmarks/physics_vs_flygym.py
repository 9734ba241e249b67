"""Closed-loop walking speed: connectofly vs raw mj_step vs flygym 2.1.1's CPG demo.

All three run in this one process, interleaved over several repeats, on the
same NeuroMechFly model (legs-only, position actuators, adhesion, flat
ground, dt 1e-4 s), each for 1 s of simulated time. Printed: physics steps per
wall-clock second (median over repeats) and the ratios

* connectofly closed loop (CPG agent, 1 ms control step) / raw ``mj_step``
  replaying the very control sequence of that closed-loop run (same model,
  same contacts, no Python in between: the physics floor)
* connectofly closed loop / flygym's ``CPGController`` + ``Simulation`` (its
  demo, which updates the controller every physics step)

With ``--vision``, both also walk with the compound eye rendered at 500 Hz
(every 20 physics steps) for ``VISION_SECONDS``: connectofly's ``vision=True``
env (JAX ray caster) against flygym's ``get_ommatidia_readouts`` (two camera
renders pooled into ommatidia) in the same loop.

Run:  MUJOCO_GL=egl python benchmarks/physics_vs_flygym.py [--repeats 5] [--vision]
"""

from __future__ import annotations

import argparse
import statistics
import time

import mujoco
import numpy as np

from connectofly.agents import make_agent
from connectofly.envs.body import build_model
from connectofly.envs.fly_env import FlyEnv

SIM_SECONDS = 1.0
VISION_SECONDS = 0.1  # flygym's eye makes this loop ~100x slower
VISION_HZ = 500.0


def raw_mj_step(initial_qpos: np.ndarray, ctrls: np.ndarray, n_substeps: int) -> float:
    """Steps/s of bare mj_step replaying a recorded control sequence."""
    model = build_model("flat")
    data = mujoco.MjData(model)
    data.qpos[:] = initial_qpos
    start = time.perf_counter()
    for ctrl in ctrls:
        data.ctrl[:] = ctrl
        mujoco.mj_step(model, data, nstep=n_substeps)
    return len(ctrls) * n_substeps / (time.perf_counter() - start)


def connectofly_closed_loop(
    control_dt: float, vision: bool = False, seconds: float = SIM_SECONDS
) -> tuple[float, np.ndarray, np.ndarray]:
    """Steps/s of the env + CPG agent; also the initial qpos and the ctrl sequence."""
    env = FlyEnv(duration=seconds, control_dt=control_dt, vision=vision, vision_hz=VISION_HZ)
    agent = make_agent("cpg", env.control_dt)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    initial_qpos = env.physics.qpos()
    params, carry = agent.default_params(), agent.init(rng)
    n_control = int(round(seconds / control_dt))
    ctrls = np.empty((n_control, env.model.nu))
    start = time.perf_counter()
    for i in range(n_control):
        carry, action = agent.act(params, carry, obs, rng)
        obs, *_ = env.step(action)
        ctrls[i] = env.physics.data.ctrl  # a copy into the preallocated row
    rate = n_control * env.n_substeps / (time.perf_counter() - start)
    return rate, initial_qpos, ctrls


def flygym_cpg_demo(vision: bool = False, seconds: float = SIM_SECONDS) -> float:
    from flygym.compose import ActuatorType, FlatGroundWorld
    from flygym.simulation import Simulation
    from flygym.utils.math import Rotation3D
    from flygym_demo.complex_terrain import (
        CPGController,
        PreprogrammedSteps,
        apply_locomotion_action,
        make_locomotion_fly,
        make_tripod_cpg_network,
    )

    timestep = 1e-4
    fly = make_locomotion_fly()
    if vision:
        fly.add_vision()
    world = FlatGroundWorld()
    world.add_fly(fly, (0, 0, 0.7), Rotation3D("quat", (1, 0, 0, 0)))
    sim = Simulation(world, timestep=timestep)
    controller = CPGController(
        make_tripod_cpg_network(timestep),
        PreprogrammedSteps(),
        fly.get_actuated_jointdofs_order(ActuatorType.POSITION),
    )
    sim.reset()
    vision_interval = int(round(1 / (VISION_HZ * timestep)))
    if vision:
        sim.get_ommatidia_readouts(fly.name)  # the first call sets up the renderer
    n = int(seconds / timestep)
    start = time.perf_counter()
    for i in range(n):
        apply_locomotion_action(sim, fly.name, controller.step())
        sim.step()
        if vision and i % vision_interval == 0:
            sim.get_ommatidia_readouts(fly.name)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vision", action="store_true", help="also walk with the eyes at 500 Hz")
    args = parser.parse_args()
    names = (
        "raw mj_step replaying the same controls",
        "connectofly env + CPG, control 1 ms",
        "connectofly env + CPG, control 0.1 ms",
        "flygym 2.1.1 Simulation + CPGController",
    )
    if args.vision:
        names += ("connectofly env + CPG + eye 500 Hz", "flygym 2.1.1 + CPG + eye 500 Hz")
    rates: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        ours, initial_qpos, ctrls = connectofly_closed_loop(1e-3)
        rates[names[1]].append(ours)
        rates[names[0]].append(raw_mj_step(initial_qpos, ctrls, n_substeps=10))
        rates[names[2]].append(connectofly_closed_loop(1e-4)[0])
        rates[names[3]].append(flygym_cpg_demo())
        if args.vision:
            rates[names[4]].append(connectofly_closed_loop(1e-3, vision=True, seconds=VISION_SECONDS)[0])
            rates[names[5]].append(flygym_cpg_demo(vision=True, seconds=VISION_SECONDS))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\n{'run':45s} {'steps/s (median)':>17s} {'min':>8s} {'max':>8s}")
    for name, values in rates.items():
        print(f"{name:45s} {median[name]:17,.0f} {min(values):8,.0f} {max(values):8,.0f}")
    ours = median["connectofly env + CPG, control 1 ms"]
    print(f"\nours (1 ms control) / raw mj_step        = {ours / median[names[0]]:.2f}  (target >= 0.8)")
    print(f"ours (1 ms control) / flygym CPG demo    = {ours / median['flygym 2.1.1 Simulation + CPGController']:.2f}  (target >= 3)")
    print(f"ours (0.1 ms control) / flygym CPG demo  = "
          f"{median['connectofly env + CPG, control 0.1 ms'] / median['flygym 2.1.1 Simulation + CPGController']:.2f}")
    if args.vision:
        print(f"walking + eyes at 500 Hz, ours / flygym  = {median[names[4]] / median[names[5]]:.1f}  (target >= 30)")


if __name__ == "__main__":
    main()

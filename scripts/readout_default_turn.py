"""What the connectome agent's readout asks for when no object is in view.

The fly walks 0.5 s with a fixed descending drive (left turn, straight, right
turn) while the target is 200 mm behind it, out of view; the script prints the
mean yaw rate and the mean turn the readout computes from the optic lobes
(right − left target drive; positive turns left) over the last 0.3 s.

    python scripts/readout_default_turn.py [readout.npz]
"""

import sys

import numpy as np

from connectofly.agents.connectome import ConnectomeAgent, dn_target
from connectofly.envs.arena import static_trajectory
from connectofly.envs.fly_env import FlyEnv

DRIVES = {"turn left": (0.4, 1.2), "straight": (1.0, 1.0), "turn right": (1.2, 0.4)}


def main(readout: str | None = None) -> None:
    env = FlyEnv(task="visual_taxis", duration=1.0)
    agent = ConnectomeAgent.for_env(env, readout=readout)
    out_of_view = static_trajectory(np.array([[-200.0, 0.0]]))
    for name, drive in DRIVES.items():
        obs, _ = env.reset(seed=0, options={"layout": out_of_view})
        rng = np.random.default_rng(0)
        params, carry = agent.default_params(), agent.init(rng)
        turns, yaws = [], []
        for step in range(500):
            carry, features = agent.sense(carry, obs["vision"])
            carry, action = agent.move(params, carry, obs, np.array(drive), rng)
            obs, _, _, _, info = env.step(action)
            if step >= 200:
                target = np.asarray(dn_target(agent.readout, features))
                turns.append(target[1] - target[0])
                yaws.append(info["yaw_rate"])
        print(f"{name:>10}: yaw {np.mean(yaws):+.2f} rad/s, readout turn (right − left) {np.mean(turns):+.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:2])

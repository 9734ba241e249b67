"""Which step can walk? Replay the VNC's training target open loop on the body (docs/vnc.md).

The VNC is trained in the air to reproduce NeuroMechFly's recorded step in
muscle units (``vnc_walk.gait_target``), to its first two Fourier harmonics.
This plays, on the MuJoCo C body (flat ground, 2 s, tripod phases), at
several step frequencies:

* the recorded joint angles of all 42 DoFs (what the CPG replays);
* only each channel's main DoF, the others at the middle of their range;
* the muscle-unit target through the motor map (``motor_map.joint_action``),
  every harmonic and the first two (what training asks of the network).

    .venv/bin/python scripts/vnc_step_replay.py [--frequencies 8,10.5,13] [--seed 0]
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

from connectofly.agents.rollout import run_episode
from connectofly.circuits import motor_map
from connectofly.envs.body import LEGS
from connectofly.envs.fly_env import FlyEnv, action_bounds
from connectofly.envs.kinematics import load_step_kinematics
from connectofly.training import vnc_walk


def first_harmonics(signal: np.ndarray, harmonics: int) -> np.ndarray:
    """(n_bins, ...) periodic signal keeping its mean and first ``harmonics`` harmonics."""
    coeffs = np.fft.rfft(signal, axis=0)
    coeffs[harmonics + 1:] = 0
    return np.fft.irfft(coeffs, n=len(signal), axis=0)


class Replay:
    """Plays ``action_at(bins)`` with each leg at its tripod phase, ``frequency`` steps per second."""

    def __init__(self, action_at, n_bins: int, frequency: float, control_dt: float):
        self.action_at, self.n_bins, self.frequency, self.control_dt = action_at, n_bins, frequency, control_dt
        self.low, self.high = action_bounds()

    def default_params(self):
        return None

    def init(self, rng):
        return 0

    def act(self, params, step, obs, rng):
        phase = (self.frequency * step * self.control_dt + vnc_walk.TRIPOD_OFFSET / (2 * np.pi)) % 1.0
        bins = (phase * self.n_bins).astype(int) % self.n_bins
        return step + 1, np.clip(self.action_at(bins), self.low, self.high)


def angle_replay(kin, only_mapped: bool):
    table = kin.table[:-1]
    middle = 0.5 * (table.min(0) + table.max(0))
    mapped = np.zeros((len(LEGS), 7), bool)
    for leg_i, leg in enumerate(LEGS):
        for channel in motor_map.CHANNELS:
            if channel.dof["front"] != motor_map.ADHESION:
                mapped[leg_i, motor_map.dof_index(leg, channel) - 7 * leg_i] = True
    stance = np.stack([~kin.in_swing(np.full(len(LEGS), 2 * np.pi * b / len(table))) for b in range(len(table))])

    def action_at(bins):
        angles = table[bins, np.arange(len(LEGS))]
        if only_mapped:
            angles = np.where(mapped, angles, middle)
        return np.concatenate([angles.reshape(-1), stance[bins, np.arange(len(LEGS))].astype(float)])

    return action_at, len(table)


def target_replay(kin, harmonics: int | None):
    target = vnc_walk.gait_target(kin)
    signal = target.signal if harmonics is None else first_harmonics(target.signal, harmonics)
    mmap = motor_map.build_motor_map(["trochanter_flex"], np.ones(1))  # only the joint tables are used
    rest = jnp.asarray(target.rest_action)

    def action_at(bins):
        s = signal[bins, np.arange(len(LEGS))]  # (6, n_ch) agonist − antagonist; the claw's activation
        activation = np.stack([np.maximum(s, 0), np.maximum(-s, 0)], axis=-1)
        activation[:, vnc_walk.CLAW] = np.stack([s[:, vnc_walk.CLAW], np.zeros(len(LEGS))], axis=-1)
        return np.asarray(motor_map.joint_action(mmap, jnp.asarray(activation), rest), dtype=float)

    return action_at, len(signal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frequencies", default="8,10.5,13", help="step frequencies, Hz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kin = load_step_kinematics()
    variants = {
        "recorded angles, all DoFs": angle_replay(kin, only_mapped=False),
        "recorded angles, main motor-map DoFs only": angle_replay(kin, only_mapped=True),
        "muscle-unit target via motor map": target_replay(kin, None),
        "same, first 2 harmonics (training)": target_replay(kin, 2),
    }
    frequencies = [float(f) for f in args.frequencies.split(",")]
    print("| step | " + " | ".join(f"{f:g} Hz" for f in frequencies) + " |")
    print("|---|" + "---|" * len(frequencies))
    for name, (action_at, n_bins) in variants.items():
        speeds = []
        for frequency in frequencies:
            env = FlyEnv(duration=2.0)
            rollout = run_episode(env, Replay(action_at, n_bins, frequency, env.control_dt), seed=args.seed)
            env.close()
            fell = "" if rollout.termination is None else f" ({rollout.termination})"
            speeds.append(f"{rollout.mean_forward_speed():.1f} mm/s{fell}")
        print(f"| {name} | " + " | ".join(speeds) + " |", flush=True)


if __name__ == "__main__":
    main()

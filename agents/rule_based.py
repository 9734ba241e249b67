"""Rule-based walking (Walknet-style leg coordination, Cruse et al. 1998).

Each leg steps when it is "most ready", and its neighbours' states change
that readiness (NeuroMechFly v2's rule-based controller, Wang-Chen et al. 2024):

* rule 1: a swinging leg suppresses the leg behind it (weight -10);
* rule 2: a leg early in stance promotes its rostral and contralateral
  neighbours, more the earlier it is (ipsilateral 2.5, contralateral 1);
* rule 3: a leg late in stance promotes its caudal and contralateral
  neighbours, more the later it is (ipsilateral 3, contralateral 2).

The rules are 6×6 weight matrices (source → target), so one step is a few
matrix-vector products. A stepping leg replays the recorded step once at its
natural duration, then waits for its next turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectofly.agents.cpg import leg_joint_targets, locomotion_action
from connectofly.envs.body import LEGS
from connectofly.envs.kinematics import StepKinematics, load_step_kinematics

# (source, target) pairs of each rule, by leg name.
_RULE1 = [("lf", "lm"), ("lm", "lh"), ("rf", "rm"), ("rm", "rh")]
_RULE2 = [("rf", "lf"), ("rm", "lm"), ("lf", "lm"), ("rh", "lh"), ("lm", "lh"),
          ("lf", "rf"), ("lm", "rm"), ("rf", "rm"), ("lh", "rh"), ("rm", "rh")]
_RULE3 = [("rf", "lf"), ("lm", "lf"), ("rm", "lm"), ("lh", "lm"), ("rh", "lh"),
          ("lf", "rf"), ("rm", "rf"), ("lm", "rm"), ("rh", "rm"), ("lh", "rh")]


def rule_matrix(pairs: list[tuple[str, str]], ipsi: float, contra: float) -> np.ndarray:
    """(6, 6) weights w[source, target]."""
    weights = np.zeros((len(LEGS), len(LEGS)))
    for source, target in pairs:
        weights[LEGS.index(source), LEGS.index(target)] = ipsi if source[0] == target[0] else contra
    return weights


@dataclass(frozen=True)
class RuleParams:
    rule1: np.ndarray
    rule2: np.ndarray
    rule3: np.ndarray
    margin: float = 0.001  # legs within this fraction of the best score are eligible


@dataclass(frozen=True)
class RuleState:
    phases: np.ndarray  # (6,) rad; 0 while waiting
    stepping: np.ndarray  # (6,) bool
    started: bool


def default_rule_params() -> RuleParams:
    return RuleParams(
        rule1=rule_matrix(_RULE1, -10.0, -10.0),
        rule2=rule_matrix(_RULE2, 2.5, 1.0),
        rule3=rule_matrix(_RULE3, 3.0, 2.0),
    )


def stance_progress(phases: np.ndarray, swing_end: np.ndarray) -> np.ndarray:
    """(6,) fraction of stance completed (0 in swing or while waiting)."""
    return np.clip((phases - swing_end) / (2 * np.pi - swing_end), 0.0, 1.0)


def leg_scores(params: RuleParams, state: RuleState, swing_end: np.ndarray) -> np.ndarray:
    swinging = ((state.phases > 0) & (state.phases < swing_end)).astype(float)
    progress = stance_progress(state.phases, swing_end)
    early = np.where(progress > 0, 1.0 - progress, 0.0)
    return swinging @ params.rule1 + early @ params.rule2 + progress @ params.rule3


def choose_stepping_leg(scores: np.ndarray, stepping: np.ndarray, margin: float, rng: np.random.Generator) -> int | None:
    threshold = max(0.0, scores.max() - abs(scores.max()) * margin)
    eligible = np.flatnonzero((scores >= threshold) & (scores > 0) & ~stepping)
    return int(rng.choice(eligible)) if len(eligible) else None


@dataclass
class RuleBasedAgent:
    control_dt: float
    kinematics: StepKinematics = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.kinematics is None:
            self.kinematics = load_step_kinematics()

    def default_params(self) -> RuleParams:
        return default_rule_params()

    def init(self, rng: np.random.Generator) -> RuleState:
        n = len(LEGS)
        return RuleState(np.zeros(n), np.zeros(n, dtype=bool), False)

    def act(self, params: RuleParams, carry: RuleState, obs: dict, rng: np.random.Generator):
        swing_end = self.kinematics.swing_end
        stepping = carry.stepping.copy()
        if not carry.started:  # the first step is taken by a random front or middle leg
            leg = int(rng.choice([i for i, name in enumerate(LEGS) if name[1] != "h"]))
        else:
            scores = leg_scores(params, carry, swing_end)
            leg = choose_stepping_leg(scores, stepping, params.margin, rng)
        if leg is not None:
            stepping[leg] = True
        phases = carry.phases + stepping * (2 * np.pi * self.control_dt / self.kinematics.duration)
        done = phases >= 2 * np.pi
        phases = np.where(done, 0.0, phases)
        stepping &= ~done
        state = RuleState(phases, stepping, True)
        targets = leg_joint_targets(self.kinematics, phases, np.ones(len(LEGS)))
        adhesion = ~self.kinematics.in_swing(phases)
        return state, locomotion_action(targets, adhesion)

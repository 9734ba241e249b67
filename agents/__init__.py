"""Controllers that turn observations into actions.

Every agent has ``default_params()``, ``init(rng) -> carry`` and
``act(params, carry, obs, rng) -> (carry, action)``; ``rng`` is a
``numpy.random.Generator`` for the CPU baselines. Baselines of NeuroMechFly v2:

| name | what |
|---|---|
| ``cpg`` | open-loop tripod CPG replaying recorded steps |
| ``rule_based`` | Walknet-style rules coordinating single steps |
| ``hybrid`` | CPG + retraction and stumbling reflexes |
| ``turning`` | hybrid steered by a 2-D descending drive (left, right) |

Vision-driven controllers live in their own modules: ``visual_taxis`` (the
simple baseline) and ``connectome`` (eyes → optic lobes → descending units →
legs, :mod:`connectofly.agents.connectome`). :mod:`connectofly.agents.registry`
builds any of them by name for an environment (the CLI and the benchmark use it).
"""

from connectofly.agents.cpg import CPGAgent
from connectofly.agents.hybrid import HybridAgent
from connectofly.agents.rule_based import RuleBasedAgent

AGENTS = {
    "cpg": CPGAgent,
    "rule_based": RuleBasedAgent,
    "hybrid": HybridAgent,
    "turning": HybridAgent,
}
DEFAULT_TURNING_DRIVE = (0.4, 1.2)


def make_agent(name: str, control_dt: float, **kwargs):
    """Build a baseline agent by name; ``turning`` takes ``drive=(left, right)``."""
    if name not in AGENTS:
        raise ValueError(f"unknown controller {name!r}; valid controllers: {sorted(AGENTS)}")
    if name == "turning":
        kwargs.setdefault("drive", DEFAULT_TURNING_DRIVE)
    return AGENTS[name](control_dt=control_dt, **kwargs)


__all__ = ["AGENTS", "CPGAgent", "HybridAgent", "RuleBasedAgent", "make_agent"]

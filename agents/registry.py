"""Controllers by name, for the command line and the benchmark suite.

A controller is built for an environment by a factory ``env -> agent`` (the
agent interface: ``default_params()``, ``init(rng)``, ``act(params, carry,
obs, rng)``). Adding one to ``connectofly walk`` and ``connectofly bench`` is
one line::

    register("my_agent", lambda env: MyAgent(env.unwrapped.control_dt), "what it is")

``vision=True`` marks controllers that read ``obs["vision"]`` (visual tasks only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Controller:
    factory: Callable[[Any], Any]
    about: str
    vision: bool = False


CONTROLLERS: dict[str, Controller] = {}


def register(name: str, factory: Callable[[Any], Any], about: str, vision: bool = False) -> None:
    if name in CONTROLLERS:
        raise ValueError(f"controller {name!r} is already registered")
    CONTROLLERS[name] = Controller(factory, about, vision)


def make_controller(name: str, env, **kwargs):
    """The controller ``name`` built for ``env``; ``kwargs`` go to its factory."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; valid controllers: {sorted(CONTROLLERS)}")
    controller = CONTROLLERS[name]
    if controller.vision and "vision" not in env.observation_space.spaces:
        raise ValueError(f"controller {name!r} reads vision: it needs a visual task (--task)")
    return controller.factory(env, **kwargs)


def _baseline(name: str):
    def build(env, **kwargs):
        from connectofly.agents import make_agent

        return make_agent(name, env.unwrapped.control_dt, **kwargs)

    return build


def _visual_taxis(env):
    from connectofly.agents.visual_taxis import VisualTaxisAgent

    return VisualTaxisAgent.for_env(env)


def _visual_escape(env):
    from connectofly.agents.visual_taxis import VisualTaxisAgent, escape_drive

    return VisualTaxisAgent.for_env(env, steer=escape_drive)


def _ppo_mlp(env, **kwargs):
    from connectofly.agents.ppo_mlp import PPOMLPAgent

    return PPOMLPAgent.for_env(env, **kwargs)


def _connectome(motor: str):
    def build(env, **kwargs):
        from connectofly.agents.connectome import ConnectomeAgent

        return ConnectomeAgent.for_env(env, motor=motor, **kwargs)

    return build


register("cpg", _baseline("cpg"), "NeuroMechFly v2 open-loop tripod CPG (blind)")
register("rule_based", _baseline("rule_based"), "NeuroMechFly v2 Walknet-style rules (blind)")
register("hybrid", _baseline("hybrid"), "NeuroMechFly v2 CPG + reflexes (blind)")
register("turning", _baseline("turning"), "hybrid with a fixed left/right descending drive (blind)")
register("visual_taxis", _visual_taxis, "simple vision baseline: bearing of the dark object from the ommatidia", True)
register("visual_escape", _visual_escape, "simple vision baseline turned around: turns away from the dark object", True)
register("ppo_mlp", _ppo_mlp, "PPO-trained MLP: photoreceptor regions → descending drive → hybrid walker", True)
register("connectome", _connectome("hybrid"), "eyes → optic lobes → descending readout → hybrid walker", True)
register("connectome_vnc", _connectome("vnc"), "eyes → optic lobes → descending readout → connectome VNC", True)

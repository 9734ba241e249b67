"""Controllers by name, for the command line and the benchmark suite.

A controller is built for an environment by a factory ``env -> agent`` (the
agent interface: ``default_params()``, ``init(rng)``, ``act(params, carry,
obs, rng)``). Adding one to ``connectofly walk`` and ``connectofly bench`` is
one line::

    register("my_agent", lambda env: MyAgent(env.unwrapped.control_dt), "what it is")

``vision=True`` marks controllers that read ``obs["vision"]`` (visual tasks only).
``mjx=`` gives the same controller as JAX functions of a scene on the MJX backend
(``scene -> Controller``, :mod:`connectofly.agents.mjx_closed_loop`), which
``connectofly bench --backend mjx`` batches over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Controller:
    factory: Callable[[Any], Any]
    about: str
    vision: bool = False
    mjx: Callable[[Any], Any] | None = None  # scene -> mjx_closed_loop.Controller, for the MJX backend


CONTROLLERS: dict[str, Controller] = {}


def register(name: str, factory: Callable[[Any], Any], about: str, vision: bool = False,
             mjx: Callable[[Any], Any] | None = None) -> None:
    if name in CONTROLLERS:
        raise ValueError(f"controller {name!r} is already registered")
    CONTROLLERS[name] = Controller(factory, about, vision, mjx)


def mjx_controllers() -> list[str]:
    """The controllers that also run on the MJX backend."""
    return sorted(name for name, c in CONTROLLERS.items() if c.mjx is not None)


def make_controller(name: str, env, **kwargs):
    """The controller ``name`` built for ``env``; ``kwargs`` go to its factory."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; valid controllers: {sorted(CONTROLLERS)}")
    controller = CONTROLLERS[name]
    if controller.vision and "vision" not in env.observation_space.spaces:
        raise ValueError(f"controller {name!r} reads vision: it needs a visual task (--task)")
    return controller.factory(env, **kwargs)


def make_mjx_controller(name: str, scene, **kwargs):
    """The controller ``name`` as JAX functions (:class:`~connectofly.agents.mjx_closed_loop.Controller`)
    for an MJX ``scene``; ``kwargs`` go to its factory."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; valid controllers: {sorted(CONTROLLERS)}")
    if CONTROLLERS[name].mjx is None:
        raise ValueError(f"controller {name!r} has no MJX version; those that have: {mjx_controllers()}")
    return CONTROLLERS[name].mjx(scene, **kwargs)


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


def _mjx_blind(scene):
    from connectofly.agents.mjx_closed_loop import blind_controller

    return blind_controller()


def _mjx_bearing(steer_name: str):
    def build(scene):
        from connectofly.agents import visual_taxis
        from connectofly.agents.mjx_closed_loop import bearing_controller

        return bearing_controller(scene.directions, getattr(visual_taxis, steer_name))

    return build


def _mjx_ppo_mlp(scene, policy=None):
    from connectofly.agents.mjx_closed_loop import ppo_mlp_controller
    from connectofly.agents.ppo_mlp import checked_policy

    return ppo_mlp_controller(checked_policy(scene.task.name, policy), scene)


def _mjx_connectome(motor: str):
    def build(scene, **kwargs):
        from connectofly.agents.connectome import ConnectomeAgent
        from connectofly.agents.mjx_closed_loop import connectome_controller

        return connectome_controller(ConnectomeAgent.build(scene.directions, scene.task.name, scene.control_dt,
                                                           scene.vision_hz, motor=motor, **kwargs))

    return build


def _connectome(motor: str):
    def build(env, **kwargs):
        from connectofly.agents.connectome import ConnectomeAgent

        return ConnectomeAgent.for_env(env, motor=motor, **kwargs)

    return build


register("cpg", _baseline("cpg"), "NeuroMechFly v2 open-loop tripod CPG (blind)", mjx=_mjx_blind)
register("rule_based", _baseline("rule_based"), "NeuroMechFly v2 Walknet-style rules (blind)")
register("hybrid", _baseline("hybrid"), "NeuroMechFly v2 CPG + reflexes (blind)")
register("turning", _baseline("turning"), "hybrid with a fixed left/right descending drive (blind)")
register("visual_taxis", _visual_taxis, "simple vision baseline: bearing of the dark object from the ommatidia", True,
         mjx=_mjx_bearing("steering_drive"))
register("visual_escape", _visual_escape, "simple vision baseline turned around: turns away from the dark object",
         True, mjx=_mjx_bearing("escape_drive"))
register("ppo_mlp", _ppo_mlp, "PPO-trained MLP: photoreceptor regions → descending drive → hybrid walker", True,
         mjx=_mjx_ppo_mlp)
register("connectome", _connectome("hybrid"), "eyes → optic lobes → descending readout → hybrid walker (MJX: CPG)",
         True, mjx=_mjx_connectome("hybrid"))
register("connectome_vnc", _connectome("vnc"), "eyes → optic lobes → descending readout → connectome VNC", True,
         mjx=_mjx_connectome("vnc"))

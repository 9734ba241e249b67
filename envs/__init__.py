"""Environments: the NeuroMechFly body, arenas, physics backends and tasks.

Importing this package registers the gymnasium ids (``ENV_IDS``)::

    import gymnasium as gym
    import connectofly.envs

    env = gym.make("connectofly/Walk-v0")

The observation and action spaces are documented in
:mod:`connectofly.envs.fly_env`; rewards in :mod:`connectofly.envs.tasks`
(locomotion) and :mod:`connectofly.envs.visual_tasks` (visual navigation).
"""

from connectofly.videos.gl import select_headless_gl

select_headless_gl()  # before MuJoCo is imported

import gymnasium as gym  # noqa: E402

from connectofly.envs.body import TERRAINS  # noqa: E402
from connectofly.envs.fly_env import FlyEnv  # noqa: E402

_ENTRY_POINT = "connectofly.envs.fly_env:FlyEnv"
ENV_IDS = {
    "connectofly/Walk-v0": {"task": "walk", "terrain": "flat"},
    "connectofly/Turn-v0": {"task": "turn", "terrain": "flat"},
    "connectofly/Terrain-v0": {"task": "walk", "terrain": "mixed"},
    "connectofly/VisualTaxis-v0": {"task": "visual_taxis", "terrain": "flat"},
    "connectofly/FollowObject-v0": {"task": "follow_object", "terrain": "flat"},
    "connectofly/AvoidObstacles-v0": {"task": "avoid_obstacles", "terrain": "flat"},
    "connectofly/Looming-v0": {"task": "looming", "terrain": "flat"},
}

for _env_id, _kwargs in ENV_IDS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_ENTRY_POINT, kwargs=_kwargs)


def make(env_id: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` for connectofly ids, with the valid ids in the error."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown environment id {env_id!r}; valid ids: {sorted(ENV_IDS)}")
    return gym.make(env_id, **kwargs)


__all__ = ["ENV_IDS", "TERRAINS", "FlyEnv", "make"]

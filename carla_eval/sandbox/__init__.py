"""The embedded sandbox simulator: highway-env towns behind the CARLA leaderboard agent contract.

Public API (imported lazily: ``import carla_eval.sandbox`` loads neither highway-env nor pygame and
opens no display; the names below load their module on first use)::

    from carla_eval.sandbox import SandboxBackend, SandboxConfig
    backend = SandboxBackend(SandboxConfig())
    outcome = backend.run_route(route, agent, agent_config, repetition=0, seed=0, on_tick=None)
    expert = backend.create_expert_agent()          # privileged expert (ExpertAgent)

Also: ``RoadOption``, ``TOWN_NAMES`` / ``get_town``, ``SCENARIO_ABILITIES``, ``ExpertAgent`` /
``ExpertConfig``, ``VehicleModelConfig``, ``CriteriaConfig``, ``TrafficConfig``, ``RoutePlanConfig``,
``ScriptedAgent`` / ``replay_agent``, ``SensorConfigError``, ``downsample_indices``.
See docs/sandbox.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "SandboxBackend": "carla_eval.sandbox.backend",
    "RouteSession": "carla_eval.sandbox.backend",
    "RouteStats": "carla_eval.sandbox.backend",
    "agent_caller": "carla_eval.sandbox.backend",
    "SandboxConfig": "carla_eval.sandbox.config",
    "RoadOption": "carla_eval.sandbox.road_option",
    "TOWN_NAMES": "carla_eval.sandbox.towns",
    "get_town": "carla_eval.sandbox.towns",
    "SCENARIO_ABILITIES": "carla_eval.sandbox.scenarios",
    "ExpertAgent": "carla_eval.sandbox.expert",
    "ExpertConfig": "carla_eval.sandbox.expert",
    "GroundTruth": "carla_eval.sandbox.expert",
    "VehicleModelConfig": "carla_eval.sandbox.config",
    "CriteriaConfig": "carla_eval.sandbox.config",
    "TrafficConfig": "carla_eval.sandbox.config",
    "RoutePlanConfig": "carla_eval.sandbox.config",
    "downsample_indices": "carla_eval.sandbox.route_plan",
    "ScriptedAgent": "carla_eval.sandbox.agents",
    "replay_agent": "carla_eval.sandbox.agents",
    "SensorConfigError": "carla_eval.sandbox.sensors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'carla_eval.sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

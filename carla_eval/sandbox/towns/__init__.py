"""Sandbox towns: highway-env road networks that play the role of CARLA towns.

``get_town(name)`` builds (and caches per process) one of :data:`TOWN_NAMES`.
"""

from __future__ import annotations

from carla_eval.sandbox.towns.base import LANE_WIDTH, LaneIndex, RoadKey, Town, TrafficStream

TOWN_NAMES: tuple[str, ...] = ("highway", "merge", "intersection", "roundabout", "racetrack", "signals")

_CACHE: dict[str, Town] = {}


def get_town(name: str) -> Town:
    """The town called ``name``. Raises ValueError naming the known towns otherwise.

    Towns are built once per process and must be treated as read-only (their lanes are shared).
    """
    if name not in TOWN_NAMES:
        raise ValueError(f"unknown sandbox town {name!r}; known towns: {', '.join(TOWN_NAMES)}")
    if name not in _CACHE:
        import importlib

        module = importlib.import_module(f"carla_eval.sandbox.towns.{name}")
        _CACHE[name] = module.build()
    return _CACHE[name]


__all__ = ["LANE_WIDTH", "LaneIndex", "RoadKey", "TOWN_NAMES", "Town", "TrafficStream", "get_town"]

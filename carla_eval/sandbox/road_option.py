"""Route commands with the values of ``agents.navigation.local_planner.RoadOption`` (CARLA's API)."""

from __future__ import annotations

from enum import IntEnum


class RoadOption(IntEnum):
    """Leaderboard route command. Agents written for CARLA compare ``.value``; the integers match."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6


LANE_CHANGE_OPTIONS = (RoadOption.CHANGELANELEFT, RoadOption.CHANGELANERIGHT)

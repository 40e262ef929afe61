"""Global plan -> the next route target point and the route command, every tick.

The leaderboard hands the agent its route as ``[({'lat', 'lon', 'z'}, RoadOption), ...]``. The
planner converts it once to world metres (agent/geo.py), thins it to points at least
``min_spacing_m`` apart (keeping both ends of every command change and the last point), and then
keeps a cursor on the current target:

- the target advances when the ego is within ``reach_radius_m`` of it, or has passed it: the ego
  lies beyond the line through the target across the route (perpendicular to the bisector of the
  route directions into and out of it), so points behind are skipped and corners are rounded first;
- the last point is never passed: at the end of the route it stays the target;
- the command is the target's RoadOption (VOID -> LANEFOLLOW), except around lane changes: a
  CHANGELANELEFT/RIGHT command is kept while the target is the point right after the lane-change
  stretch, and until the ego is ``lane_change_hold_m`` past that point, so the model is told to
  change lanes until the change is done.

Target points come back in the ego frame (agent/ego_frame.py: x forward, y right, metres).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from agent.ego_frame import world_to_ego
from agent.geo import GeoReference

VOID, LEFT, RIGHT, STRAIGHT, LANEFOLLOW, CHANGELANELEFT, CHANGELANERIGHT = -1, 1, 2, 3, 4, 5, 6
LANE_CHANGES = (CHANGELANELEFT, CHANGELANERIGHT)
_VALID_COMMANDS = {VOID, LEFT, RIGHT, STRAIGHT, LANEFOLLOW, CHANGELANELEFT, CHANGELANERIGHT}


@dataclass(frozen=True)
class RoutePlannerConfig:
    """Route planner settings (metres).

    Attributes:
        reach_radius_m: a target closer than this counts as reached.
        min_spacing_m: plan points closer than this to the previous kept point are dropped (0 keeps
            all); ends of command changes and the last point are always kept. 50 m matches the plan
            density Bench2Drive's agents see.
        lane_change_hold_m: distance past a lane change's landing point during which the
            lane-change command is still given.
    """

    reach_radius_m: float = 4.0
    min_spacing_m: float = 50.0
    lane_change_hold_m: float = 10.0

    def __post_init__(self) -> None:
        for name in ("reach_radius_m", "min_spacing_m", "lane_change_hold_m"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"route.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class RouteTarget:
    """What the planner tells the agent this tick.

    Attributes:
        target_ego: [2] float64, target point in the ego frame (m, x forward, y right).
        target_world: [2] float64, the same point in the world frame (m).
        command: RoadOption value (1 LEFT, 2 RIGHT, 3 STRAIGHT, 4 LANEFOLLOW, 5/6 CHANGELANE L/R).
        index: index of the target in the thinned plan.
        is_last: the target is the route's final point.
    """

    target_ego: np.ndarray
    target_world: np.ndarray
    command: int
    index: int
    is_last: bool


def road_option_value(option: Any) -> int:
    """A RoadOption (enum with ``.value`` or a plain int) as its integer; VOID -> LANEFOLLOW."""
    value = int(getattr(option, "value", option))
    if value not in _VALID_COMMANDS:
        raise ValueError(f"unknown RoadOption value {value}")
    return LANEFOLLOW if value == VOID else value


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.hypot(*vector))
    return vector / norm if norm > 1e-9 else np.zeros(2)


def thin_plan(points: np.ndarray, commands: Sequence[int], min_spacing_m: float) -> list[int]:
    """Indices of the points to keep: the first and last, both ends of every command change, and
    any point at least ``min_spacing_m`` from the previously kept one."""
    n = len(points)
    keep = {0, n - 1}
    last_kept = points[0]
    for i in range(1, n):
        if commands[i] != commands[i - 1]:
            keep.update((i - 1, i))
            last_kept = points[i]
        elif float(np.hypot(*(points[i] - last_kept))) >= min_spacing_m:
            keep.add(i)
            last_kept = points[i]
    return sorted(keep)


class RoutePlanner:
    """Keeps the current route target (see the module docstring)."""

    def __init__(self, config: RoutePlannerConfig | None = None) -> None:
        self.config = config or RoutePlannerConfig()
        self.points = np.zeros((0, 2))
        self.commands: list[int] = []
        self._index = 0
        self._lane_change: tuple[int, np.ndarray] | None = None  # (command, landing point world xy)

    # ----------------------------------------------------------------- set-up
    def set_route(self, points_world: np.ndarray, commands: Sequence[Any]) -> None:
        """Set the route from world points [N, 2] (m) and their RoadOptions; resets the cursor."""
        points = np.asarray(points_world, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
            raise ValueError(f"route points must be a non-empty [N, 2] array, got shape {points.shape}")
        if len(commands) != len(points):
            raise ValueError(f"route has {len(points)} points but {len(commands)} commands")
        if not np.isfinite(points).all():
            raise ValueError("route points contain NaN or inf")
        values = [road_option_value(c) for c in commands]
        keep = thin_plan(points, values, self.config.min_spacing_m)
        self.points = points[keep]
        self.commands = [values[i] for i in keep]
        self._index = 0
        self._lane_change = None

    def set_gps_route(self, global_plan_gps: Sequence[tuple[dict[str, float], Any]], geo: GeoReference) -> None:
        """Set the route from the leaderboard's GPS plan ``[({'lat', 'lon', 'z'}, RoadOption)]``."""
        if not global_plan_gps:
            raise ValueError("the global plan is empty (was set_global_plan called before setup?)")
        points = []
        for i, (gps, _) in enumerate(global_plan_gps):
            try:
                x, y, _z = geo.gnss_to_world(float(gps["lat"]), float(gps["lon"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"global plan entry {i} is not a {{'lat', 'lon', 'z'}} dict: {gps!r}") from exc
            points.append((x, y))
        self.set_route(np.array(points), [option for _, option in global_plan_gps])

    # ------------------------------------------------------------------ ticking
    @property
    def index(self) -> int:
        return self._index

    def _passed(self, i: int, ego_xy: np.ndarray) -> bool:
        """Has the ego reached point i, or crossed the line through it across the route?

        The line is perpendicular to the bisector of the route's directions into and out of point i,
        so at a corner the point counts as passed only once the ego is round it (a U-turn point, with
        no bisector, must be reached).
        """
        p = self.points[i]
        if float(np.hypot(*(ego_xy - p))) < self.config.reach_radius_m:
            return True
        direction = _unit(self.points[i + 1] - p)
        if i > 0:
            direction = direction + _unit(p - self.points[i - 1])
        return float(np.dot(ego_xy - p, direction)) > 1e-9

    def step(self, ego_xy: np.ndarray, ego_yaw: float) -> RouteTarget:
        """Advance the cursor for an ego at world ``ego_xy`` (m) with yaw ``ego_yaw`` (rad)."""
        if len(self.points) == 0:
            raise RuntimeError("RoutePlanner.step called before set_route")
        ego_xy = np.asarray(ego_xy, dtype=np.float64)
        last = len(self.points) - 1
        while self._index < last and self._passed(self._index, ego_xy):
            if self.commands[self._index] in LANE_CHANGES and self.commands[self._index + 1] not in LANE_CHANGES:
                self._lane_change = (self.commands[self._index], self.points[self._index + 1].copy())
            self._index += 1

        command = self.commands[self._index]
        if self._lane_change is not None and command not in LANE_CHANGES:
            change_command, landing = self._lane_change
            landing_index_reached = self._index > 0 and np.array_equal(self.points[self._index - 1], landing)
            target_is_landing = np.array_equal(self.points[self._index], landing)
            within_hold = float(np.hypot(*(ego_xy - landing))) < self.config.lane_change_hold_m
            if target_is_landing or (landing_index_reached and within_hold):
                command = change_command
            else:
                self._lane_change = None

        target_world = self.points[self._index].copy()
        return RouteTarget(
            target_ego=world_to_ego(target_world, ego_xy, ego_yaw),
            target_world=target_world,
            command=command,
            index=self._index,
            is_last=self._index == last,
        )

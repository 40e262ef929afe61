"""``TrajectoryConfig``: the planned ego-frame trajectory (waypoint count and spacing)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ._checks import _check_keys, _positive_float, _positive_int


@dataclass(frozen=True)
class TrajectoryConfig:
    """The planned trajectory: T waypoints in the ego frame (x forward, y right, metres).

    Attributes:
        num_waypoints: T; waypoint i (0-based) is at time (i + 1) * waypoint_dt.
        waypoint_dt: seconds between waypoints (0.5 s = 2 Hz).
    """

    num_waypoints: int = 6
    waypoint_dt: float = 0.5

    def __post_init__(self) -> None:
        _positive_int("TrajectoryConfig", "num_waypoints", self.num_waypoints)
        _positive_float("TrajectoryConfig", "waypoint_dt", self.waypoint_dt)

    @property
    def horizon_s(self) -> float:
        return self.num_waypoints * self.waypoint_dt

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrajectoryConfig":
        _check_keys(cls, data, "trajectory")
        return cls(**dict(data))

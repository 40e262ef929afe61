"""Dead-reckoned ego pose, and moving a plan from the frame it was made in to the current one.

The model may plan at a lower rate than the control loop (e.g. 10 Hz planning, 20 Hz control). In
between, the last plan is reused: its waypoints are carried from the ego frame of the tick that
made it into the current ego frame, using the ego motion since then. That motion is integrated from
the speedometer and the compass (``x += v dt cos(yaw)``, ``y += v dt sin(yaw)`` with the mean yaw of
the step), not from GNSS, whose noise (about 0.5 m in CARLA) is larger than the motion of a tick.
Waypoint times are not shifted: a plan reused dt later still lists its points at 0.5 s, 1.0 s, ...
(dt <= 1/planning_hz, small against the 0.5 s waypoint spacing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.ego_frame import ego_to_world, world_to_ego
from agent.geo import wrap_angle


@dataclass(frozen=True)
class Pose2D:
    """A pose in the odometry frame (world-aligned, arbitrary origin): x, y (m), yaw (rad, clockwise)."""

    x: float
    y: float
    yaw: float

    @property
    def xy(self) -> np.ndarray:
        return np.array([self.x, self.y], dtype=np.float64)


class Odometry:
    """Integrates forward speed (m/s) and world yaw (rad) over timestamps (s) into a :class:`Pose2D`."""

    def __init__(self) -> None:
        self._pose: Pose2D | None = None
        self._timestamp: float | None = None
        self._speed = 0.0

    def reset(self) -> None:
        self._pose = None
        self._timestamp = None
        self._speed = 0.0

    @property
    def pose(self) -> Pose2D | None:
        return self._pose

    def update(self, speed: float, yaw: float, timestamp: float) -> Pose2D:
        """Advance to ``timestamp`` (trapezoidal in speed, mean yaw) and return the new pose."""
        if self._pose is None or self._timestamp is None:
            self._pose = Pose2D(0.0, 0.0, yaw)
        else:
            dt = max(0.0, timestamp - self._timestamp)
            mean_yaw = self._pose.yaw + 0.5 * wrap_angle(yaw - self._pose.yaw)
            distance = 0.5 * (speed + self._speed) * dt
            self._pose = Pose2D(
                self._pose.x + distance * math.cos(mean_yaw),
                self._pose.y + distance * math.sin(mean_yaw),
                yaw,
            )
        self._timestamp = timestamp
        self._speed = speed
        return self._pose


def move_plan(trajectory: np.ndarray, made_at: Pose2D, now: Pose2D) -> np.ndarray:
    """Waypoints [T, 2] in the ego frame of pose ``made_at`` -> the ego frame of pose ``now`` (m)."""
    world = ego_to_world(trajectory, made_at.xy, made_at.yaw)
    return world_to_ego(world, now.xy, now.yaw)

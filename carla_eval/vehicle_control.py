"""The agent's return type: ``carla.VehicleControl`` (the client wheel is a project dependency)."""

from __future__ import annotations

from typing import Any


def make_control(throttle: float, steer: float, brake: float) -> Any:
    """A ``carla.VehicleControl`` with the given throttle [0, 1], steer [-1, 1] and brake [0, 1]."""
    import carla

    return carla.VehicleControl(throttle=float(throttle), steer=float(steer), brake=float(brake))

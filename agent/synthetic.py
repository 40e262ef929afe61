"""Synthetic leaderboard-format inputs: ``input_data`` dicts and global plans, for tests and benchmarks.

The formats are the evaluator's (docs/leaderboard.md): cameras uint8 [H, W, 4] BGRA; gnss
[lat, lon, alt]; imu [acc x, y, z, gyro x, y, z, compass]; speedometer ``{'speed': v}``; each as
``(frame, data)`` keyed by the sensor id. Plans: ``[({'lat', 'lon', 'z'}, RoadOption)]`` and
``[(transform, RoadOption)]`` where the transform is a ``carla.Transform``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from agent.geo import GeoReference, yaw_to_compass
from agent.rigs import GNSS_ID, IMU_ID, SPEED_ID, Rig


def make_input_data(
    rig: Rig,
    geo: GeoReference,
    ego_xy: Sequence[float],
    ego_yaw: float,
    speed: float,
    frame: int,
    rng: np.random.Generator | None = None,
    acceleration: float = 0.0,
) -> dict[str, tuple[int, Any]]:
    """One tick of ``input_data`` for an ego at world ``ego_xy`` (m) with yaw ``ego_yaw`` (rad) and
    forward ``speed`` (m/s); camera pixels are random (``rng``) or mid-grey."""
    data: dict[str, tuple[int, Any]] = {}
    for cam in rig.cameras:
        if rng is None:
            image = np.full((cam.height, cam.width, 4), 128, dtype=np.uint8)
        else:
            image = rng.integers(0, 256, size=(cam.height, cam.width, 4), dtype=np.uint8)
        image[:, :, 3] = 255
        data[cam.id] = (frame, image)
    lat, lon, alt = geo.world_to_gnss(float(ego_xy[0]), float(ego_xy[1]), 0.0)
    data[GNSS_ID] = (frame, np.array([lat, lon, alt], dtype=np.float64))
    imu = np.array([acceleration, 0.0, 9.81, 0.0, 0.0, 0.0, yaw_to_compass(ego_yaw)], dtype=np.float64)
    data[IMU_ID] = (frame, imu)
    data[SPEED_ID] = (frame, {"speed": float(speed)})
    return data


def gps_plan(points_world: np.ndarray, commands: Sequence[int], geo: GeoReference) -> list[tuple[dict[str, float], int]]:
    """A leaderboard GPS plan from world points [N, 2] (m) and RoadOption values."""
    plan = []
    for (x, y), command in zip(np.asarray(points_world, dtype=np.float64), commands):
        lat, lon, z = geo.world_to_gnss(float(x), float(y), 0.0)
        plan.append(({"lat": lat, "lon": lon, "z": z}, int(command)))
    return plan


def world_plan(points_world: np.ndarray, commands: Sequence[int]) -> list[tuple[Any, int]]:
    """A leaderboard world plan ``[(carla.Transform, RoadOption)]`` from world points [N, 2] (m)."""
    import carla

    return [(carla.Transform(carla.Location(x=float(x), y=float(y), z=0.0)), int(c))
            for (x, y), c in zip(np.asarray(points_world, dtype=np.float64), commands)]


def straight_route(length_m: float = 200.0, spacing_m: float = 1.0, start: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """World points [N, 2] along +x from ``start`` every ``spacing_m`` (a dense 1 m plan by default)."""
    xs = np.arange(0.0, length_m + 1e-9, spacing_m)
    return np.stack([xs + start[0], np.full_like(xs, start[1])], axis=-1)

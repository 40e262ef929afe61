"""The agent's sensors in the sandbox, producing ``input_data`` exactly in the leaderboard's format.

``input_data[id] = (frame, data)`` with, per type:

- ``sensor.camera.rgb``: uint8 [height, width, 4] BGRA, the top-down view of :mod:`render`;
- ``sensor.other.gnss``: float64 [lat, lon, alt] (deg, deg, m) of the mount point, from the town's
  geo-reference (``agent.geo.GeoReference.world_to_gnss``);
- ``sensor.other.imu``: float64 [acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z, compass] in the vehicle
  frame (x forward, y right, z up): acc_x the longitudinal acceleration, acc_y = speed * yaw rate
  (centripetal, + when turning right), acc_z = 9.81 (gravity, as CARLA's accelerometer reports at
  rest), gyro_z = yaw rate (rad/s, + turning right, i.e. clockwise seen from above), compass from
  ``agent.geo.yaw_to_compass`` (rad, 0 = north, clockwise);
- ``sensor.speedometer``: ``{'speed': forward speed in m/s}``.

The suite is validated like the leaderboard's SENSORS track (unique string ids, at most 8 cameras,
2 lidars, 4 radars, one GNSS, one IMU, one speedometer, no OpenDRIVE map); types the sandbox cannot
simulate (lidar, radar) are rejected with a clear message. The 3 m mount-radius rule of the
leaderboard is off by default: the top-down camera sits 20 m above the car.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.geo import GeoReference, yaw_to_compass
from agent.rigs import SensorSuiteError, validate_sensor_suite
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.render import TopDownCamera, TopDownCameraSpec

CAMERA = "sensor.camera.rgb"
GNSS = "sensor.other.gnss"
IMU = "sensor.other.imu"
SPEEDOMETER = "sensor.speedometer"
GRAVITY = 9.81

SUPPORTED_TYPES = (CAMERA, GNSS, IMU, SPEEDOMETER)


class SensorConfigError(ValueError):
    """The agent's ``sensors()`` list is invalid or needs a sensor the sandbox cannot simulate."""


def _number(spec: dict, key: str, sid: str, default: float | None = None) -> float:
    if key not in spec:
        if default is None:
            raise SensorConfigError(f"sensor {sid!r} ({spec.get('type')}) lacks the field {key!r}")
        return default
    try:
        value = float(spec[key])
    except (TypeError, ValueError):
        raise SensorConfigError(f"sensor {sid!r}: field {key!r}={spec[key]!r} is not a number") from None
    if not math.isfinite(value):
        raise SensorConfigError(f"sensor {sid!r}: field {key!r} is not finite")
    return value


def validate_sensors(sensors: Any, max_mount_distance: float | None = None) -> list[dict]:
    """Check an agent's ``sensors()`` result; return it as a list of dicts or raise SensorConfigError.

    The SENSORS-track rules are the agent package's (``agent.rigs.validate_sensor_suite``, one
    source for both sides of the contract); on top, the sandbox rejects types it cannot simulate and
    camera geometry it cannot render.
    """
    if not isinstance(sensors, (list, tuple)):
        raise SensorConfigError(f"sensors() must return a list of dicts, got {type(sensors).__name__}")
    try:
        validate_sensor_suite(list(sensors), max_mount_radius_m=max_mount_distance)
    except SensorSuiteError as exc:
        raise SensorConfigError(str(exc)) from None
    for spec in sensors:
        stype = spec["type"]
        if stype not in SUPPORTED_TYPES:
            raise SensorConfigError(
                f"sensor {spec['id']!r}: type {stype} is not supported by the sandbox backend (supported: {', '.join(SUPPORTED_TYPES)})"
            )
        if stype == CAMERA:
            camera_spec(spec)
    return list(sensors)


def camera_spec(spec: dict) -> TopDownCameraSpec:
    """Top-down camera geometry of a ``sensor.camera.rgb`` spec (raises SensorConfigError)."""
    sid = spec.get("id", "?")
    width, height = _number(spec, "width", sid), _number(spec, "height", sid)
    if width != int(width) or height != int(height) or not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise SensorConfigError(f"camera {sid!r}: width/height must be integers in [1, 4096], got {width} x {height}")
    fov = _number(spec, "fov", sid)
    if not 0.0 < fov < 180.0:
        raise SensorConfigError(f"camera {sid!r}: fov must be in (0, 180) deg, got {fov}")
    z = _number(spec, "z", sid)
    if not z > 0.0:
        raise SensorConfigError(f"camera {sid!r}: the top-down camera needs a height z > 0 m, got {z}")
    return TopDownCameraSpec(
        width=int(width), height=int(height), fov_deg=fov, z=z,
        x=_number(spec, "x", sid, 0.0), y=_number(spec, "y", sid, 0.0), yaw_deg=_number(spec, "yaw", sid, 0.0),
    )


@dataclass(frozen=True)
class EgoReading:
    """What the non-camera sensors read from the ego: world pose, speed, accel, yaw rate."""

    x: float
    y: float
    yaw: float
    speed: float
    accel: float
    yaw_rate: float


class SensorSuite:
    """Builds ``input_data`` for a validated sensor list."""

    def __init__(self, sensors: list[dict], index: MapIndex, geo: GeoReference) -> None:
        self.specs = validate_sensors(sensors)
        self.geo = geo
        self._cameras: dict[str, TopDownCamera] = {
            s["id"]: TopDownCamera(camera_spec(s), index) for s in self.specs if s["type"] == CAMERA
        }

    def read(self, frame: int, ego: EgoReading, vehicles: list) -> dict[str, tuple[int, Any]]:
        """Sensor data for this frame. ``vehicles``: ego first, then the others (for cameras)."""
        data: dict[str, tuple[int, Any]] = {}
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        for spec in self.specs:
            sid, stype = spec["id"], spec["type"]
            if stype == CAMERA:
                data[sid] = (frame, self._cameras[sid].render(ego.x, ego.y, ego.yaw, vehicles))
            elif stype == GNSS:
                mx, my = float(spec.get("x", 0.0)), float(spec.get("y", 0.0))
                wx, wy = ego.x + c * mx - s * my, ego.y + s * mx + c * my
                lat, lon, alt = self.geo.world_to_gnss(wx, wy, float(spec.get("z", 0.0)))
                data[sid] = (frame, np.array([lat, lon, alt], dtype=np.float64))
            elif stype == IMU:
                imu = [ego.accel, ego.speed * ego.yaw_rate, GRAVITY, 0.0, 0.0, ego.yaw_rate, yaw_to_compass(ego.yaw)]
                data[sid] = (frame, np.array(imu, dtype=np.float64))
            elif stype == SPEEDOMETER:
                data[sid] = (frame, {"speed": float(ego.speed)})
        return data

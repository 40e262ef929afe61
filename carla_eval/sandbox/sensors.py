"""The agent's sensors in the sandbox, producing ``input_data`` exactly in the leaderboard's format.

``input_data[id] = (frame, data)`` with, per type:

- ``sensor.camera.rgb``: uint8 [height, width, 4] BGRA. A perspective camera (any pitch but -90)
  is rendered by :mod:`camera.renderer` (CARLA's pinhole model, 3D scene, all cameras of the suite
  in one pass); a camera looking straight down (pitch -90) gets the top-down view of :mod:`render`
  (the ``sandbox-bev`` rig the shipped tiny weights were trained on);
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
leaderboard is on by default (``SandboxConfig.max_mount_distance``); the ``sandbox-bev`` rig's
top-down camera, 20 m up, needs it turned off explicitly.

Ground truth for training (depth in CARLA's depth-camera encoding, CARLA semantic tags) is rendered
for the same perspective cameras on request (``ground_truth=True``) and kept in
:attr:`SensorSuite.ground_truth`; it is never part of ``input_data``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.geo import GeoReference, yaw_to_compass
from agent.rigs import SensorSuiteError, validate_sensor_suite
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.camera.appearance import Appearance, PRESETS
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
            if is_top_down(spec):
                camera_spec(spec)
            else:
                perspective_spec(spec)
    return list(sensors)


def is_top_down(spec: dict) -> bool:
    """A camera looking straight down (pitch -90, roll 0): drawn by the top-down renderer."""
    try:
        return abs(float(spec.get("pitch", 0.0)) + 90.0) < 1e-6 and abs(float(spec.get("roll", 0.0))) < 1e-6
    except (TypeError, ValueError):
        return False


def _image_fields(spec: dict, sid: str) -> tuple[int, int, float]:
    width, height = _number(spec, "width", sid), _number(spec, "height", sid)
    if width != int(width) or height != int(height) or not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise SensorConfigError(f"camera {sid!r}: width/height must be integers in [1, 4096], got {width} x {height}")
    fov = _number(spec, "fov", sid)
    if not 0.0 < fov < 180.0:
        raise SensorConfigError(f"camera {sid!r}: fov must be in (0, 180) deg, got {fov}")
    return int(width), int(height), fov


def perspective_spec(spec: dict) -> dict:
    """A perspective camera's spec with every pose field a finite number (raises SensorConfigError)."""
    sid = spec.get("id", "?")
    width, height, fov = _image_fields(spec, sid)
    pose = {k: _number(spec, k, sid, 0.0) for k in ("x", "y", "roll", "pitch", "yaw")}
    z = _number(spec, "z", sid)
    if not z > 0.0:
        raise SensorConfigError(f"camera {sid!r}: the camera must be above the ground (z > 0 m), got {z}")
    return {"id": sid, **pose, "z": z, "width": width, "height": height, "fov": fov}


def camera_spec(spec: dict) -> TopDownCameraSpec:
    """Top-down camera geometry of a ``sensor.camera.rgb`` spec (raises SensorConfigError)."""
    sid = spec.get("id", "?")
    width, height, fov = _image_fields(spec, sid)
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
    """Builds ``input_data`` for a validated sensor list.

    Args:
        sensors: the agent's ``sensors()`` list (validated here without the mount-radius rule; the
            backend applies that rule first).
        index, geo: the town's map index and geo-reference.
        appearance: the route's look for perspective cameras (default: clear noon, no jitter).
        ground_truth: also render depth and semantic images of the perspective cameras each tick
            (:attr:`ground_truth`).
    """

    def __init__(self, sensors: list[dict], index: MapIndex, geo: GeoReference, appearance: Appearance | None = None,
                 ground_truth: bool = False) -> None:
        self.specs = validate_sensors(sensors)
        self.geo = geo
        self._cameras: dict[str, TopDownCamera] = {
            s["id"]: TopDownCamera(camera_spec(s), index) for s in self.specs if s["type"] == CAMERA and is_top_down(s)
        }
        perspective = [perspective_spec(s) for s in self.specs if s["type"] == CAMERA and not is_top_down(s)]
        self._renderer = None
        if perspective:
            from carla_eval.sandbox.camera.renderer import PerspectiveRenderer

            self._renderer = PerspectiveRenderer(perspective, index, appearance or PRESETS["clear_noon"], ground_truth)
        self.ground_truth: dict[str, dict[str, np.ndarray]] = {}

    def close(self) -> None:
        """Free the renderer's offscreen buffers (the suite cannot render afterwards)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def read(self, frame: int, ego: EgoReading, vehicles: list, walkers: list = (),
             lights: dict[int, str] | None = None) -> dict[str, tuple[int, Any]]:
        """Sensor data for this frame. ``vehicles``: ego first, then the others; ``walkers`` and the
        traffic lights' states ``lights`` (id -> "Red" / "Yellow" / "Green") are drawn too."""
        data: dict[str, tuple[int, Any]] = {}
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        rendered: dict[str, np.ndarray] = {}
        if self._renderer is not None:
            views = self._renderer.render(ego.x, ego.y, ego.yaw, vehicles, walkers=walkers, lights=lights)
            rendered = views.pop("rgb")
            self.ground_truth = views
        for spec in self.specs:
            sid, stype = spec["id"], spec["type"]
            if stype == CAMERA:
                image = rendered.get(sid)
                if image is None:
                    image = self._cameras[sid].render(ego.x, ego.y, ego.yaw, vehicles, walkers, lights)
                data[sid] = (frame, image)
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

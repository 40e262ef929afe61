"""Sensor rigs: the named sensor suites the agent can ask for, and the SENSORS-track check.

Mount positions are in the CARLA vehicle frame (x forward, y right, z up, metres, from the vehicle
centre at ground level as the leaderboard uses them); angles in degrees (yaw clockwise seen from
above, so a camera with yaw -60 looks to the front-left).

``carla-3cam`` (the paper's input: three front cameras, each 288 x 160, W x H):
    left  x 1.3, y 0, z 2.3, yaw -60, fov 70
    front x 1.3, y 0, z 2.3, yaw   0, fov 70
    right x 1.3, y 0, z 2.3, yaw +60, fov 70
  The three 70 deg views cover 190 deg ahead with 10 deg of overlap between neighbours; all mounts
  are 2.64 m from the vehicle centre (< 3.0 m). Camera order is left, front, right: the order of the
  model's camera axis.
``b2d-3cam`` (Bench2Drive's front cameras, for models trained on the Bench2Drive dataset; ids and
  mounts as Bench2Drive's ``tools/data_collect.py`` records them, each 1600 x 900, fov 70):
    CAM_FRONT_LEFT  x 0.27, y -0.55, z 1.60, yaw -55
    CAM_FRONT       x 0.80, y  0.00, z 1.60, yaw   0
    CAM_FRONT_RIGHT x 0.27, y +0.55, z 1.60, yaw +55
  Mount radii 1.71 m, 1.79 m, 1.71 m (< 3.0 m). The dataset stores these images as JPEG quality 20;
  the agent config's ``jpeg_quality: 20`` applies the same compression at run time.
``sandbox-bev`` (the embedded simulator's camera): one top-down camera ``bev``, 128 x 128,
  x +8, y 0, z 20, pitch -90, fov 90: a 40 m x 40 m patch of road from 12 m behind to 28 m ahead of
  the vehicle centre, image up = vehicle forward, image right = vehicle right. Its mount is outside
  the SENSORS-track radius, so it is a sandbox-only rig.

Every rig adds a GNSS (``gnss``), an IMU (``imu``) and a speedometer (``speed``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Tuple

CAMERA_TYPE = "sensor.camera.rgb"
GNSS_TYPE = "sensor.other.gnss"
IMU_TYPE = "sensor.other.imu"
SPEEDOMETER_TYPE = "sensor.speedometer"

GNSS_ID = "gnss"
IMU_ID = "imu"
SPEED_ID = "speed"

# SENSORS track (docs/leaderboard.md): at most this many of each type; other types are not allowed.
SENSORS_TRACK_LIMITS: dict[str, int] = {
    CAMERA_TYPE: 8,
    "sensor.lidar.ray_cast": 2,
    "sensor.other.radar": 4,
    GNSS_TYPE: 1,
    IMU_TYPE: 1,
    SPEEDOMETER_TYPE: 1,
}
# The stricter table that leaderboard-2.0's agent_wrapper.py applies only on the SENSORS_QUALIFIER and
# MAP_QUALIFIER tracks (not on SENSORS): docs/leaderboard.md.
QUALIFIER_LIMITS: dict[str, int] = {
    CAMERA_TYPE: 4,
    "sensor.lidar.ray_cast": 1,
    "sensor.other.radar": 2,
    GNSS_TYPE: 1,
    IMU_TYPE: 1,
    SPEEDOMETER_TYPE: 1,
}
MAX_MOUNT_RADIUS_M = 3.0

_POSE_KEYS = ("x", "y", "z", "roll", "pitch", "yaw")
_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    CAMERA_TYPE: _POSE_KEYS + ("width", "height", "fov"),
    "sensor.lidar.ray_cast": _POSE_KEYS,
    "sensor.other.radar": _POSE_KEYS + ("horizontal_fov", "vertical_fov"),
    GNSS_TYPE: ("x", "y", "z"),
    IMU_TYPE: _POSE_KEYS,
    SPEEDOMETER_TYPE: (),
}


class SensorSuiteError(ValueError):
    """A sensor suite that the leaderboard would reject; the message names the sensor."""


@dataclass(frozen=True)
class CameraSpec:
    """One RGB camera: mount (m, deg, CARLA vehicle frame) and image size (px)."""

    id: str
    x: float
    y: float
    z: float
    roll: float
    pitch: float
    yaw: float
    width: int
    height: int
    fov: float  # horizontal field of view, deg

    def to_sensor(self) -> dict[str, Any]:
        """The leaderboard spec dict of this camera."""
        return {"type": CAMERA_TYPE, **asdict(self)}


@dataclass(frozen=True)
class Rig:
    """A named sensor suite: cameras in the model's camera order, plus GNSS, IMU and speedometer."""

    name: str
    cameras: tuple[CameraSpec, ...]
    sandbox_only: bool = False  # True when the rig breaks the SENSORS-track mount radius

    @property
    def camera_ids(self) -> tuple[str, ...]:
        return tuple(cam.id for cam in self.cameras)

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the first camera (all cameras of a rig share it)."""
        return self.cameras[0].height, self.cameras[0].width

    def sensors(self) -> list[dict[str, Any]]:
        """The leaderboard ``sensors()`` list of this rig."""
        specs = [cam.to_sensor() for cam in self.cameras]
        specs.append({"type": GNSS_TYPE, "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0,
                      "yaw": 0.0, "id": GNSS_ID})
        specs.append({"type": IMU_TYPE, "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0,
                      "yaw": 0.0, "sensor_tick": 0.05, "id": IMU_ID})
        specs.append({"type": SPEEDOMETER_TYPE, "reading_frequency": 20, "id": SPEED_ID})
        return specs


def _three_cameras() -> tuple[CameraSpec, ...]:
    common = dict(x=1.3, y=0.0, z=2.3, roll=0.0, pitch=0.0, width=288, height=160, fov=70.0)
    return (
        CameraSpec(id="left", yaw=-60.0, **common),
        CameraSpec(id="front", yaw=0.0, **common),
        CameraSpec(id="right", yaw=60.0, **common),
    )


def _bench2drive_front_cameras() -> Tuple[CameraSpec, ...]:
    common = dict(z=1.6, roll=0.0, pitch=0.0, width=1600, height=900, fov=70.0)
    return (
        CameraSpec(id="CAM_FRONT_LEFT", x=0.27, y=-0.55, yaw=-55.0, **common),
        CameraSpec(id="CAM_FRONT", x=0.80, y=0.0, yaw=0.0, **common),
        CameraSpec(id="CAM_FRONT_RIGHT", x=0.27, y=0.55, yaw=55.0, **common),
    )


RIGS: dict[str, Rig] = {
    "carla-3cam": Rig(name="carla-3cam", cameras=_three_cameras()),
    "b2d-3cam": Rig(name="b2d-3cam", cameras=_bench2drive_front_cameras()),
    "sandbox-bev": Rig(
        name="sandbox-bev",
        cameras=(CameraSpec(id="bev", x=8.0, y=0.0, z=20.0, roll=0.0, pitch=-90.0, yaw=0.0,
                            width=128, height=128, fov=90.0),),
        sandbox_only=True,
    ),
}


def get_rig(name: str) -> Rig:
    """The rig called ``name``; a ValueError lists the known names otherwise."""
    try:
        return RIGS[name]
    except KeyError:
        raise ValueError(f"unknown sensor rig {name!r}; known rigs: {sorted(RIGS)}") from None


def validate_sensor_suite(
    sensors: list[dict[str, Any]],
    limits: dict[str, int] | None = None,
    max_mount_radius_m: float | None = MAX_MOUNT_RADIUS_M,
) -> None:
    """Check a ``sensors()`` list against the SENSORS-track rules; raise :class:`SensorSuiteError`.

    Rules: every sensor has a string ``id`` that no other sensor uses and a type from ``limits``
    (default :data:`SENSORS_TRACK_LIMITS`; no OpenDRIVE map), the fields its type needs, no more
    sensors of a type than ``limits`` allows, and a mount within ``max_mount_radius_m`` of the vehicle
    centre (None skips that check, as Bench2Drive does when it saves data).
    """
    limits = SENSORS_TRACK_LIMITS if limits is None else limits
    seen_ids: set[str] = set()
    counts: dict[str, int] = {}
    for index, spec in enumerate(sensors):
        if not isinstance(spec, dict):
            raise SensorSuiteError(f"sensor #{index} is a {type(spec).__name__}, not a dict")
        sensor_id = spec.get("id")
        if not isinstance(sensor_id, str) or not sensor_id:
            raise SensorSuiteError(f"sensor #{index} has no string 'id'")
        if sensor_id in seen_ids:
            raise SensorSuiteError(f"duplicated sensor id {sensor_id!r}")
        seen_ids.add(sensor_id)
        sensor_type = spec.get("type")
        if sensor_type not in limits:
            raise SensorSuiteError(f"sensor {sensor_id!r}: type {sensor_type!r} is not allowed on this track")
        missing = [key for key in _REQUIRED_KEYS.get(sensor_type, ()) if key not in spec]
        if missing:
            raise SensorSuiteError(f"sensor {sensor_id!r} ({sensor_type}) lacks {missing}")
        if max_mount_radius_m is not None and all(key in spec for key in ("x", "y", "z")):
            radius = math.sqrt(float(spec["x"]) ** 2 + float(spec["y"]) ** 2 + float(spec["z"]) ** 2)
            if radius > max_mount_radius_m:
                raise SensorSuiteError(
                    f"sensor {sensor_id!r} is mounted {radius:.2f} m from the vehicle centre "
                    f"(max {max_mount_radius_m} m)"
                )
        counts[sensor_type] = counts.get(sensor_type, 0) + 1
        if counts[sensor_type] > limits[sensor_type]:
            raise SensorSuiteError(
                f"sensor {sensor_id!r}: too many {sensor_type} (max {limits[sensor_type]})"
            )

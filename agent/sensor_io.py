"""Decoding of the leaderboard's ``input_data`` into one ego state and the model's camera images.

``input_data`` maps sensor id -> ``(frame, data)`` (docs/leaderboard.md):

- camera: uint8 [H, W, 4] **BGRA** -> uint8 [H, W, 3] RGB, optionally JPEG-compressed at the
  native size (``jpeg_quality``: a model trained on Bench2Drive's JPEG-quality-20 images sees the
  same artefacts at run time, as Bench2Drive advises), then resized to the model's image size
  (``cv2.INTER_AREA``) when the rig's size differs;
- gnss: [lat, lon, alt] (deg, deg, m) -> world position (m) through the map's
  :class:`agent.geo.GeoReference` (CARLA towns: (0, 0); set ``lat_ref``/``lon_ref`` in the config);
- imu: [acc_x, acc_y, acc_z (m/s^2), gyro_x, gyro_y, gyro_z (rad/s), compass (rad)] -> world yaw
  with :func:`agent.geo.compass_to_yaw` (0 = +x east, clockwise);
- speedometer: ``{'speed': v}`` -> forward speed (m/s, negative when reversing).

Longitudinal acceleration (the prompt's ``acceleration``, forward +, m/s^2) comes from one of:

- ``"imu"``: the accelerometer's x axis (the IMU is mounted without rotation, so x is the
  vehicle's forward axis). CARLA's accelerometer is computed from velocity differences of the
  vehicle; on slopes it also holds the gravity component along x.
- ``"speed"``: the difference of consecutive speedometer readings over the timestamp difference
  (0 on the first tick).

Either is clipped to +-``max_abs_acceleration`` (CARLA's IMU spikes on the first ticks and on
contacts). Everything lands in the one ego frame of agent/ego_frame.py; the world pose is kept
for the route planner and for moving a plan between ticks.

Any missing sensor, malformed reading or non-finite value raises :class:`SensorInputError` naming
the sensor id; the agent turns it into a safe stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from agent.geo import GeoReference, compass_to_yaw
from agent.rigs import GNSS_ID, IMU_ID, SPEED_ID, Rig

ACCELERATION_SOURCES = ("imu", "speed")


class SensorInputError(ValueError):
    """A sensor reading that cannot be used; ``sensor_id`` names the sensor."""

    def __init__(self, sensor_id: str, reason: str) -> None:
        super().__init__(f"sensor {sensor_id!r}: {reason}")
        self.sensor_id = sensor_id
        self.reason = reason


@dataclass(frozen=True)
class EgoState:
    """The ego vehicle at one tick.

    Attributes:
        position: [2] float64, world x, y (m) from GNSS.
        yaw: world yaw (rad, clockwise from +x) from the compass.
        speed: forward speed (m/s).
        acceleration: longitudinal acceleration (m/s^2, forward +).
        timestamp: simulation time (s).
    """

    position: np.ndarray
    yaw: float
    speed: float
    acceleration: float
    timestamp: float


@dataclass(frozen=True)
class SensorFrame:
    """Decoded ``input_data`` of one tick.

    Attributes:
        images: uint8 [N_cam, H, W, 3] RGB in the rig's camera order, at the model's (H, W).
        first_camera: uint8 [H0, W0, 3] RGB of the rig's first camera at its native size (videos).
        ego: the ego state.
        native: uint8 [H0, W0, 3] RGB of every camera at its native size, in the rig's order (videos).
    """

    images: np.ndarray
    first_camera: np.ndarray
    ego: EgoState
    native: tuple = ()


def _reading(input_data: dict[str, Any], sensor_id: str) -> Any:
    if sensor_id not in input_data:
        raise SensorInputError(sensor_id, "missing from input_data")
    entry = input_data[sensor_id]
    if not isinstance(entry, (tuple, list)) or len(entry) != 2:
        raise SensorInputError(sensor_id, f"expected a (frame, data) pair, got {type(entry).__name__}")
    return entry[1]


def _finite_vector(sensor_id: str, data: Any, length: int) -> np.ndarray:
    try:
        values = np.asarray(data, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise SensorInputError(sensor_id, f"not a numeric vector ({exc})") from None
    if values.size < length:
        raise SensorInputError(sensor_id, f"expected {length} values, got {values.size}")
    values = values[:length]
    if not np.isfinite(values).all():
        raise SensorInputError(sensor_id, f"non-finite values {values.tolist()}")
    return values


def bgra_to_rgb(sensor_id: str, data: Any, height: int, width: int) -> np.ndarray:
    """Check a leaderboard camera array (uint8 [height, width, 4] BGRA) and return it as RGB [H, W, 3]."""
    if not isinstance(data, np.ndarray):
        raise SensorInputError(sensor_id, f"camera data is a {type(data).__name__}, not a numpy array")
    if data.dtype != np.uint8:
        raise SensorInputError(sensor_id, f"camera dtype is {data.dtype}, expected uint8")
    if data.shape != (height, width, 4):
        raise SensorInputError(sensor_id, f"camera shape is {data.shape}, expected {(height, width, 4)} (BGRA)")
    return np.ascontiguousarray(data[:, :, 2::-1])


def jpeg_round_trip(sensor_id: str, rgb: np.ndarray, quality: int) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> the same image after JPEG encoding at ``quality`` (1-100) and decoding,
    as cv2 writes Bench2Drive's images (``cv2.IMWRITE_JPEG_QUALITY``)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise SensorInputError(sensor_id, "JPEG encoding failed")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def area_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """uint8 [H, W, C] shrunk by a whole ``factor`` on both axes by block means: the same bytes as
    ``cv2.resize(..., INTER_AREA)`` (integer rounding for a factor of 2, float32 rounding above, as
    OpenCV computes them), in numpy only, so an evaluator-side Python without OpenCV can do it."""
    h, w, c = image.shape
    f = int(factor)
    if f < 1 or h % f or w % f:
        raise ValueError("area_downscale: {}x{} is not a multiple of {}".format(h, w, f))
    sums = image.reshape(h // f, f, w // f, f, c).astype(np.int64).sum(axis=(1, 3))
    area = f * f
    if f == 2:
        return ((sums + area // 2) // area).astype(np.uint8)
    return np.rint(sums.astype(np.float32) * np.float32(1.0 / area)).astype(np.uint8)


def resize_rgb(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize uint8 [H, W, 3] to ``size_hw`` (area interpolation); returns the input when sizes match.

    ``cv2.INTER_AREA`` where OpenCV is installed (about 0.02 ms for 288 x 160, against 1.1 ms in
    numpy); without it (the evaluator-side Python) a shrink by the same whole factor on both axes,
    e.g. 288 x 160 -> 144 x 80, uses :func:`area_downscale`, which gives the same bytes."""
    h, w = image.shape[:2]
    th, tw = int(size_hw[0]), int(size_hw[1])
    if (h, w) == (th, tw):
        return image
    try:
        import cv2
    except ImportError:
        if th > 0 and tw > 0 and h % th == 0 and w % tw == 0 and h // th == w // tw:
            return area_downscale(image, h // th)
        raise
    return cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)


class SensorDecoder:
    """Turns ``input_data`` into a :class:`SensorFrame` for one rig (keeps the previous speed).

    ``jpeg_quality``: JPEG-compress every camera image at this quality before resizing (None: off).
    """

    def __init__(
        self,
        rig: Rig,
        geo: GeoReference,
        image_size: tuple[int, int],
        acceleration_source: str = "imu",
        max_abs_acceleration: float = 15.0,
        jpeg_quality: Optional[int] = None,
    ) -> None:
        if jpeg_quality is not None and not 1 <= int(jpeg_quality) <= 100:
            raise ValueError("jpeg_quality must be in [1, 100] or None, got {!r}".format(jpeg_quality))
        if acceleration_source not in ACCELERATION_SOURCES:
            raise ValueError(f"acceleration_source must be one of {ACCELERATION_SOURCES}, got {acceleration_source!r}")
        self.rig = rig
        self.geo = geo
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.acceleration_source = acceleration_source
        self.max_abs_acceleration = float(max_abs_acceleration)
        self.jpeg_quality = None if jpeg_quality is None else int(jpeg_quality)
        self._previous_speed: tuple[float, float] | None = None  # (timestamp, speed)

    def reset(self) -> None:
        self._previous_speed = None

    def decode(self, input_data: dict[str, Any], timestamp: float) -> SensorFrame:
        """Decode one tick; raises :class:`SensorInputError` on anything unusable."""
        if not isinstance(input_data, dict):
            raise SensorInputError("input_data", f"expected a dict, got {type(input_data).__name__}")
        images = []
        native = []
        for cam in self.rig.cameras:
            rgb = bgra_to_rgb(cam.id, _reading(input_data, cam.id), cam.height, cam.width)
            if self.jpeg_quality is not None:
                rgb = jpeg_round_trip(cam.id, rgb, self.jpeg_quality)
            native.append(rgb)
            images.append(resize_rgb(rgb, self.image_size))
        first_camera = native[0] if native else None

        lat, lon, alt = _finite_vector(GNSS_ID, _reading(input_data, GNSS_ID), 3)
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise SensorInputError(GNSS_ID, f"lat/lon out of range: {lat}, {lon}")
        x, y, _ = self.geo.gnss_to_world(lat, lon, alt)
        imu = _finite_vector(IMU_ID, _reading(input_data, IMU_ID), 7)

        speed_data = _reading(input_data, SPEED_ID)
        if not isinstance(speed_data, dict) or "speed" not in speed_data:
            raise SensorInputError(SPEED_ID, f"expected {{'speed': m/s}}, got {speed_data!r}")
        speed = float(_finite_vector(SPEED_ID, speed_data["speed"], 1)[0])

        timestamp = float(timestamp)
        if not math.isfinite(timestamp):
            raise SensorInputError("timestamp", f"non-finite timestamp {timestamp}")
        acceleration = self._acceleration(float(imu[0]), speed, timestamp)
        ego = EgoState(
            position=np.array([x, y], dtype=np.float64),
            yaw=compass_to_yaw(float(imu[6])),
            speed=speed,
            acceleration=acceleration,
            timestamp=timestamp,
        )
        return SensorFrame(images=np.stack(images), first_camera=first_camera, ego=ego, native=tuple(native))

    def _acceleration(self, imu_forward: float, speed: float, timestamp: float) -> float:
        if self.acceleration_source == "imu":
            value = imu_forward
        else:
            value = 0.0
            if self._previous_speed is not None:
                t0, v0 = self._previous_speed
                if timestamp > t0:
                    value = (speed - v0) / (timestamp - t0)
        self._previous_speed = (timestamp, speed)
        return float(np.clip(value, -self.max_abs_acceleration, self.max_abs_acceleration))

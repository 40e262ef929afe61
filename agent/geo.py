"""GNSS <-> CARLA world metres, with CARLA's own Mercator geo-reference.

CARLA world frame: x east, y south (left-handed: x forward, y right, z up, yaw clockwise seen from
above). A GNSS sensor reports [lat, lon, alt] computed from the map's geo-reference
(``lat_ref``, ``lon_ref``); these helpers are the exact inverse pair of that conversion, so the
sandbox (world -> GNSS) and the agent (GNSS -> world) agree to well below a millimetre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6378137.0


@dataclass(frozen=True)
class GeoReference:
    """Map geo-reference: the lat/lon (degrees) of the world origin. CARLA towns default to (0, 0)."""

    lat_ref: float = 0.0
    lon_ref: float = 0.0

    def __post_init__(self) -> None:
        if not (-85.0 < self.lat_ref < 85.0) or not (-180.0 <= self.lon_ref <= 180.0):
            raise ValueError(f"geo-reference out of range: lat_ref={self.lat_ref}, lon_ref={self.lon_ref}")

    @property
    def _scale(self) -> float:
        return math.cos(math.radians(self.lat_ref))

    def _origin_mercator(self) -> tuple[float, float]:
        s = self._scale
        mx = s * math.radians(self.lon_ref) * EARTH_RADIUS_M
        my = s * EARTH_RADIUS_M * math.log(math.tan(math.radians(90.0 + self.lat_ref) / 2.0))
        return mx, my

    def world_to_gnss(self, x: float, y: float, z: float = 0.0) -> tuple[float, float, float]:
        """CARLA world metres -> (lat, lon, alt) in degrees/metres."""
        s = self._scale
        mx0, my0 = self._origin_mercator()
        mx = mx0 + x
        my = my0 - y  # world y points south
        lon = math.degrees(mx / (EARTH_RADIUS_M * s))
        lat = math.degrees(2.0 * math.atan(math.exp(my / (EARTH_RADIUS_M * s)))) - 90.0
        return lat, lon, z

    def gnss_to_world(self, lat: float, lon: float, alt: float = 0.0) -> tuple[float, float, float]:
        """(lat, lon, alt) -> CARLA world metres (x east, y south, z up)."""
        s = self._scale
        mx0, my0 = self._origin_mercator()
        mx = s * math.radians(lon) * EARTH_RADIUS_M
        my = s * EARTH_RADIUS_M * math.log(math.tan(math.radians(90.0 + lat) / 2.0))
        return mx - mx0, -(my - my0), alt

    def gnss_array_to_world(self, latlon: np.ndarray) -> np.ndarray:
        """[N, 2] (lat, lon) degrees -> [N, 2] world (x, y) metres."""
        latlon = np.asarray(latlon, dtype=np.float64)
        out = np.empty_like(latlon)
        for i, (lat, lon) in enumerate(latlon):
            out[i, 0], out[i, 1], _ = self.gnss_to_world(lat, lon)
        return out


def compass_to_yaw(compass: float) -> float:
    """CARLA IMU compass (rad, 0 = north = world -y, clockwise) -> world yaw (rad, 0 = +x, clockwise),
    wrapped to [-pi, pi)."""
    return wrap_angle(compass - math.pi / 2.0)


def yaw_to_compass(yaw: float) -> float:
    """World yaw (rad) -> CARLA IMU compass in [0, 2 pi)."""
    return (yaw + math.pi / 2.0) % (2.0 * math.pi)


def wrap_angle(a: float) -> float:
    """Wrap an angle (rad) to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi

"""Pinhole projection of ego-frame points into a camera image described by a leaderboard sensor spec.

Frames (docs/architecture.md): the ego frame has x forward, y right (metres), z up, origin at the
vehicle centre on the ground; a camera spec gives its mount (x, y, z in that frame, metres) and
orientation (roll, pitch, yaw in degrees, Unreal/CARLA convention: yaw about z clockwise seen from
above, pitch about y nose-up positive, roll about x). CARLA cameras look along their own +x, image
u grows along their +y (right) and v along their -z (down). ``fov`` is the horizontal field of
view in degrees; the focal length is ``f = width / (2 tan(fov / 2))`` pixels for both axes.

This covers forward cameras (pitch 0) and a top-down camera (pitch -90: image up = ego forward,
image right = ego right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


def rotation_matrix(roll_deg: float, pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """[3, 3] rotation taking camera axes to vehicle axes: columns are the camera's forward, right
    and up unit vectors expressed in the vehicle frame (x fwd, y right, z up; CARLA's convention)."""
    r, p, y = (math.radians(a) for a in (roll_deg, pitch_deg, yaw_deg))
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    forward = [cp * cy, cp * sy, sp]
    right = [cy * sp * sr - sy * cr, sy * sp * sr + cy * cr, -cp * sr]
    up = [-cy * sp * cr - sy * sr, -sy * sp * cr + cy * sr, cp * cr]
    return np.array([forward, right, up], dtype=np.float64).T  # [3 vehicle, 3 camera]


@dataclass(frozen=True)
class PinholeCamera:
    x: float
    y: float
    z: float
    roll: float
    pitch: float
    yaw: float
    width: int
    height: int
    fov: float  # horizontal, degrees

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "PinholeCamera":
        """From a leaderboard ``sensor.camera.rgb`` spec dict (missing mount fields default to 0)."""
        try:
            return cls(
                x=float(spec.get("x", 0.0)),
                y=float(spec.get("y", 0.0)),
                z=float(spec.get("z", 0.0)),
                roll=float(spec.get("roll", 0.0)),
                pitch=float(spec.get("pitch", 0.0)),
                yaw=float(spec.get("yaw", 0.0)),
                width=int(spec["width"]),
                height=int(spec["height"]),
                fov=float(spec["fov"]),
            )
        except KeyError as exc:
            raise ValueError(f"camera spec lacks {exc.args[0]!r}: {dict(spec)}") from exc

    @property
    def focal(self) -> float:
        """Focal length in pixels."""
        return self.width / (2.0 * math.tan(math.radians(self.fov) / 2.0))

    def project(self, points_ego: np.ndarray, min_depth: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """Project ego-frame points into pixel coordinates.

        Args:
            points_ego: [N, 2] (x fwd, y right; on the ground, z = 0) or [N, 3] metres.
        Returns:
            uv: [N, 2] float pixel coordinates (u right, v down; may lie outside the image);
            valid: [N] bool, True where the point is in front of the camera (depth > min_depth).
        """
        pts = np.asarray(points_ego, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] not in (2, 3):
            raise ValueError(f"points must be [N, 2] or [N, 3], got shape {pts.shape}")
        if pts.shape[1] == 2:
            pts = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
        rel = pts - np.array([self.x, self.y, self.z])  # [N, 3] vehicle frame
        cam = rel @ rotation_matrix(self.roll, self.pitch, self.yaw)  # [N, 3] = (forward, right, up)
        depth = cam[:, 0]
        valid = depth > min_depth
        safe = np.where(valid, depth, 1.0)
        f = self.focal
        u = self.width / 2.0 + f * cam[:, 1] / safe
        v = self.height / 2.0 - f * cam[:, 2] / safe
        return np.stack([u, v], axis=1), valid

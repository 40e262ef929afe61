"""The one ego frame of this project, and conversions into it.

Ego frame (used by the model, the planner, the controllers, the datasets and the videos):
origin at the vehicle's centre at the current tick, x forward, y to the RIGHT, metres. It has the
handedness of the CARLA world frame (x forward, y right, z up, yaw clockwise seen from above), so
world -> ego is a translation and a rotation by -yaw, with no axis flip. A positive y waypoint is to
the right of the car; a right turn bends the trajectory towards +y.
"""

from __future__ import annotations

import numpy as np


def world_to_ego(points_xy: np.ndarray, ego_xy: np.ndarray, ego_yaw: float) -> np.ndarray:
    """World points [..., 2] (m) -> ego frame [..., 2] (m) for an ego at ``ego_xy`` with yaw ``ego_yaw`` (rad)."""
    d = np.asarray(points_xy, dtype=np.float64) - np.asarray(ego_xy, dtype=np.float64)
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    x = c * d[..., 0] + s * d[..., 1]
    y = -s * d[..., 0] + c * d[..., 1]
    return np.stack([x, y], axis=-1)


def ego_to_world(points_ego: np.ndarray, ego_xy: np.ndarray, ego_yaw: float) -> np.ndarray:
    """Ego frame points [..., 2] (m) -> world [..., 2] (m); inverse of :func:`world_to_ego`."""
    p = np.asarray(points_ego, dtype=np.float64)
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    x = c * p[..., 0] - s * p[..., 1] + ego_xy[0]
    y = s * p[..., 0] + c * p[..., 1] + ego_xy[1]
    return np.stack([x, y], axis=-1)

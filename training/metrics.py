"""Open-loop planning metrics on held-out frames.

* ``l2_<h>s``: mean Euclidean distance (m) between the predicted and the label waypoint at time
  h (waypoint index h / 0.5 s - 1); ``l2_avg``: mean of those horizons.
* ``collision_<h>s``: share of samples whose planned ego box, placed at each predicted waypoint up
  to time h (heading along the path), overlaps a ground-truth box of another vehicle at the same
  time (recorded by collection). ``collision_gt_<h>s`` is the same for the label trajectory: the
  floor set by box and heading approximations.

Boxes are oriented rectangles [x, y, yaw, length, width] in the ego frame; overlap is tested with
the separating-axis theorem.
"""

from __future__ import annotations

import numpy as np


def waypoint_index(horizon_s: float, waypoint_dt: float, num_waypoints: int) -> int:
    """Index of the waypoint at ``horizon_s`` (raises if it is not on the 2 Hz grid or past T)."""
    j = horizon_s / waypoint_dt - 1
    if abs(j - round(j)) > 1e-6 or not 0 <= round(j) < num_waypoints:
        raise ValueError(f"horizon {horizon_s} s is not a waypoint time of {num_waypoints} x {waypoint_dt} s")
    return int(round(j))


def l2_at(pred: np.ndarray, gt: np.ndarray, horizons_s: list[float], waypoint_dt: float = 0.5) -> dict[str, float]:
    """L2 (m) at each horizon and their mean. ``pred``, ``gt``: [B, T, 2]."""
    err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)  # [B, T]
    out = {f"l2_{h:g}s": float(err[:, waypoint_index(h, waypoint_dt, err.shape[1])].mean()) for h in horizons_s}
    out["l2_avg"] = float(np.mean([out[f"l2_{h:g}s"] for h in horizons_s]))
    return out


def headings(traj: np.ndarray, min_step: float = 0.2) -> np.ndarray:
    """Heading (rad) at each waypoint of [B, T, 2] ego-frame paths, from the previous point (origin
    first). Steps shorter than ``min_step`` m keep the previous heading (0 at the start)."""
    traj = np.asarray(traj, np.float64)
    prev = np.concatenate([np.zeros_like(traj[:, :1]), traj[:, :-1]], axis=1)
    d = traj - prev
    ang = np.arctan2(d[..., 1], d[..., 0])
    short = np.linalg.norm(d, axis=-1) < min_step
    out = np.zeros(traj.shape[:2])
    for t in range(traj.shape[1]):
        last = out[:, t - 1] if t > 0 else np.zeros(traj.shape[0])
        out[:, t] = np.where(short[:, t], last, ang[:, t])
    return out


def _corners(box: np.ndarray) -> np.ndarray:
    """[..., 5] boxes -> [..., 4, 2] corners."""
    x, y, yaw, length, width = (box[..., i] for i in range(5))
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = length / 2, width / 2
    dx = np.stack([hl, hl, -hl, -hl], axis=-1)
    dy = np.stack([hw, -hw, -hw, hw], axis=-1)
    cx = x[..., None] + c[..., None] * dx - s[..., None] * dy
    cy = y[..., None] + s[..., None] * dx + c[..., None] * dy
    return np.stack([cx, cy], axis=-1)


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether oriented boxes overlap, broadcasting [..., 5] against [..., 5] -> [...] bool."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    ca, cb = _corners(a), _corners(b)  # [..., 4, 2]
    sep = np.zeros(a.shape[:-1], dtype=bool)
    for box in (a, b):
        yaw = box[..., 2]
        for axis in (np.stack([np.cos(yaw), np.sin(yaw)], -1), np.stack([-np.sin(yaw), np.cos(yaw)], -1)):
            pa = (ca * axis[..., None, :]).sum(-1)  # [..., 4]
            pb = (cb * axis[..., None, :]).sum(-1)
            sep |= (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~sep


def collisions(traj: np.ndarray, gt_boxes: np.ndarray, gt_mask: np.ndarray, ego_size: tuple[float, float]) -> np.ndarray:
    """[B, T] bool: the ego box at waypoint t overlaps some valid GT box at time t.

    Args:
        traj: [B, T, 2] ego-frame waypoints.
        gt_boxes: [B, T, M, 5] other vehicles at each waypoint time (ego frame of the sample).
        gt_mask: [B, T, M] which boxes are real (not padding).
        ego_size: (length, width) m.
    """
    b, t = traj.shape[:2]
    if gt_boxes.shape[2] == 0:
        return np.zeros((b, t), dtype=bool)
    yaw = headings(traj)
    ego = np.concatenate(
        [np.asarray(traj, np.float64), yaw[..., None], np.full((b, t, 1), ego_size[0]), np.full((b, t, 1), ego_size[1])], -1
    )  # [B, T, 5]
    boxes = np.where(np.asarray(gt_mask)[..., None], np.nan_to_num(gt_boxes), np.array([1e6, 1e6, 0, 1, 1]))
    hit = boxes_overlap(ego[:, :, None, :], boxes)  # [B, T, M]
    return (hit & np.asarray(gt_mask)).any(-1)


def collision_rates(hits: np.ndarray, horizons_s: list[float], waypoint_dt: float = 0.5, prefix: str = "collision") -> dict[str, float]:
    """Share of samples with a collision at any waypoint up to each horizon. ``hits``: [B, T] bool."""
    out = {}
    for h in horizons_s:
        j = waypoint_index(h, waypoint_dt, hits.shape[1])
        out[f"{prefix}_{h:g}s"] = float(hits[:, : j + 1].any(-1).mean()) if hits.shape[0] else 0.0
    return out

"""Labels derived from a recorded episode: future trajectories, future frames, future GT boxes.

The trajectory label of a frame is the ego's ACTUAL future path: its recorded world positions at
t + 0.5 s, ..., t + T * 0.5 s, expressed in the ego frame of that frame (``agent.ego_frame``). It is
consistent with the future camera frame that supervises the future visual state (both come from the
same recorded run). Where a control perturbation happened inside that window, the actual path is
not the expert's intent; those frames carry ``future_perturbed`` and the dataset decides what to do
(by default it uses the expert's recorded plan as the label for them, see ``training.dataset``).
"""

from __future__ import annotations

import numpy as np

from agent.ego_frame import world_to_ego


def ticks_per(seconds: float, tick_hz: float, what: str) -> int:
    """Number of simulator ticks in ``seconds``; raises if it is not a whole number."""
    n = seconds * tick_hz
    if abs(n - round(n)) > 1e-6 or round(n) <= 0:
        raise ValueError(f"{what} = {seconds} s is not a positive whole number of ticks at {tick_hz} Hz")
    return int(round(n))


def future_trajectories(
    tick_pose: np.ndarray, frame_ticks: np.ndarray, num_waypoints: int, ticks_per_waypoint: int
) -> tuple[np.ndarray, np.ndarray]:
    """Actual future ego positions in each frame's ego frame.

    Args:
        tick_pose: [K, >=3] world x, y, yaw of the ego at every tick (the state the frame shows).
        frame_ticks: [N] tick index of each kept frame.
        num_waypoints: T.
        ticks_per_waypoint: ticks between waypoints (10 for 0.5 s at 20 Hz).

    Returns:
        ``trajectory`` [N, T, 2] float32 (ego frame m, NaN past the episode end) and ``valid`` [N] bool.
    """
    k = tick_pose.shape[0]
    n = frame_ticks.shape[0]
    traj = np.full((n, num_waypoints, 2), np.nan, dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    steps = (np.arange(num_waypoints) + 1) * ticks_per_waypoint  # [T]
    for i, t in enumerate(frame_ticks):
        idx = t + steps
        ok = idx < k
        if ok.any():
            pts = world_to_ego(tick_pose[idx[ok], :2], tick_pose[t, :2], float(tick_pose[t, 2]))
            traj[i, ok] = pts.astype(np.float32)
        valid[i] = bool(ok.all())
    return traj, valid


def future_frames(num_frames: int, offset: int) -> np.ndarray:
    """Index of the frame ``offset`` frames later, -1 where it is past the end. [N] int32."""
    idx = np.arange(num_frames, dtype=np.int64) + offset
    return np.where(idx < num_frames, idx, -1).astype(np.int32)


def future_window_flags(perturbed_ticks: np.ndarray, frame_ticks: np.ndarray, window_ticks: int) -> np.ndarray:
    """[N] bool: whether any tick in (t, t + window_ticks] of each frame was perturbed."""
    p = np.asarray(perturbed_ticks, dtype=bool)
    csum = np.concatenate([[0], np.cumsum(p)])  # csum[j] = perturbed count in ticks [0, j)
    k = p.shape[0]
    lo = np.minimum(frame_ticks + 1, k)
    hi = np.minimum(frame_ticks + window_ticks + 1, k)
    return (csum[hi] - csum[lo]) > 0


def boxes_in_ego(boxes_world: np.ndarray, ego_xy: np.ndarray, ego_yaw: float) -> np.ndarray:
    """World boxes [M, 5] (x, y, yaw, length, width) -> ego frame of a pose (x, y, yaw, l, w)."""
    b = np.asarray(boxes_world, dtype=np.float64).reshape(-1, 5)
    out = b.copy()
    out[:, :2] = world_to_ego(b[:, :2], ego_xy, ego_yaw)
    out[:, 2] = b[:, 2] - ego_yaw
    return out.astype(np.float32)

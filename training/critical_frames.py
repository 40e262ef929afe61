"""Rare, critical frames: which training frames are braking, starting, lane-change or turn frames.

Most of a drive is lane following at a steady speed; the frames where the plan must change are a
few per cent of the data and are where closed-loop runs fail (running into a stopped car, staying
blocked after a stop, leaving the route at a junction). :func:`classify` finds them from each
sample's label alone (the trajectory the model is trained to output, ego frame, m; waypoint
``k`` at ``(k + 1) * waypoint_dt_s``) and its current speed (m/s):

- ``brake``: the ego drives at least ``min_speed_mps`` and the label's speed over its last
  segment is below ``brake_ratio`` times the current speed (braking for a lead car, a red light,
  a stop sign or a yield line);
- ``start``: the ego is (almost) standing, at most ``start_speed_mps``, and the label moves at least
  ``start_distance_m`` (driving off after a stop or after yielding; an agent that never learns
  these frames stays "blocked");
- ``turn``: the label ends at least ``lateral_m`` to the side with a final heading of at least
  ``turn_heading_deg`` (junction turns, roundabouts);
- ``lane_change``: the label ends at least ``lateral_m`` to the side with a smaller final heading
  (the path comes back parallel: a lane change or a merge).

A frame can be of several kinds. :func:`critical_repeats` turns the kinds into per-epoch draw counts
for :class:`training.dataset.RepeatedSamples` (``DataConfig.critical``, stage (b)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("brake", "start", "turn", "lane_change")


@dataclass
class CriticalFrameConfig:
    """Oversampling of the critical frames (module doc): a frame of one of ``kinds`` is drawn
    ``repeat`` times per epoch (1 = off)."""

    repeat: int = 1
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    min_speed_mps: float = 2.0
    brake_ratio: float = 0.5
    start_speed_mps: float = 0.5
    start_distance_m: float = 2.0
    lateral_m: float = 2.0
    turn_heading_deg: float = 30.0
    waypoint_dt_s: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.repeat, int) or self.repeat < 1:
            raise ValueError(f"repeat: must be an integer >= 1, got {self.repeat!r}")
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"kinds: {unknown or 'none given'}; choose from {list(KINDS)}")
        for name in ("min_speed_mps", "start_distance_m", "lateral_m", "waypoint_dt_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.brake_ratio < 1.0:
            raise ValueError(f"brake_ratio: must lie in (0, 1), got {self.brake_ratio}")
        if not 0.0 < self.turn_heading_deg < 180.0:
            raise ValueError(f"turn_heading_deg: must lie in (0, 180), got {self.turn_heading_deg}")


def classify(trajectories: np.ndarray, speed: np.ndarray, cfg: CriticalFrameConfig) -> dict[str, np.ndarray]:
    """Kind masks of each sample.

    Args:
        trajectories: [S, T, 2] labels, ego frame (x forward, y right), m; T >= 2.
        speed: [S] current speed, m/s.
    Returns:
        ``{kind: bool [S]}`` for every kind of :data:`KINDS`.
    """
    traj = np.asarray(trajectories, dtype=np.float64)
    v0 = np.asarray(speed, dtype=np.float64)
    if traj.ndim != 3 or traj.shape[-1] != 2 or traj.shape[1] < 2:
        raise ValueError(f"trajectories: expected [S, T >= 2, 2], got {traj.shape}")
    if v0.shape != traj.shape[:1]:
        raise ValueError(f"speed: expected [{traj.shape[0]}], got {v0.shape}")
    last = traj[:, -1] - traj[:, -2]  # [S, 2] the label's last segment
    end_speed = np.linalg.norm(last, axis=-1) / cfg.waypoint_dt_s
    heading = np.degrees(np.abs(np.arctan2(last[:, 1], last[:, 0])))
    moving_last = np.linalg.norm(last, axis=-1) > 1e-3
    sideways = np.abs(traj[:, -1, 1]) >= cfg.lateral_m
    turn = sideways & moving_last & (heading >= cfg.turn_heading_deg)
    return {
        "brake": (v0 >= cfg.min_speed_mps) & (end_speed < cfg.brake_ratio * v0),
        "start": (v0 <= cfg.start_speed_mps) & (np.linalg.norm(traj[:, -1], axis=-1) >= cfg.start_distance_m),
        "turn": turn,
        "lane_change": sideways & ~turn,
    }


def critical_repeats(trajectories: np.ndarray, speed: np.ndarray, cfg: CriticalFrameConfig) -> np.ndarray:
    """[S] int64 per-epoch draws: ``cfg.repeat`` for a sample of one of ``cfg.kinds``, else 1."""
    return repeats_of(classify(trajectories, speed, cfg), cfg)


def repeats_of(kinds: dict[str, np.ndarray], cfg: CriticalFrameConfig) -> np.ndarray:
    """:func:`critical_repeats` from a :func:`classify` result (kind -> [S] bool)."""
    critical = np.zeros(next(iter(kinds.values())).shape[0], dtype=bool)
    for k in cfg.kinds:
        critical |= kinds[k]
    return np.where(critical, cfg.repeat, 1).astype(np.int64)

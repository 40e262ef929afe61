"""Camera-rig shift augmentation at collection (after LEAD: 0.1-1.0 m shifts, 5-12.5 deg yaw).

The expert drives the real car as usual, but the cameras of a shifted episode are mounted on a
*virtual ego*: the real ego's frame moved ``lateral_m`` to the side (ego frame y, right +) and turned
by ``yaw_rad`` (clockwise +). The images then show the car off its lane or turned in it, while the
car itself followed the expert. Every ego-frame label of the episode is re-expressed in the virtual
ego's frame (:meth:`RigShift.to_virtual`): the real future path, the expert's plan and the route
target point. So the labels lead from where the cameras are back to where the expert drove: a
recovery the student learns without ever leaving its lane. ``ego_pose`` holds the virtual ego's pose
(so the ground-truth boxes come out in its frame); ``tick_pose`` stays the real car's.

One shift per episode (the sandbox mounts the sensors once per route), drawn from the job's seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.ego_frame import ego_to_world, world_to_ego


@dataclass(frozen=True)
class RigShift:
    """One episode's shift: the virtual ego is at ``(0, lateral_m)`` of the real ego frame (m), turned
    by ``yaw_rad`` (rad, clockwise +)."""

    lateral_m: float
    yaw_rad: float

    @property
    def offset(self) -> np.ndarray:
        return np.array([0.0, self.lateral_m])

    def to_virtual(self, points: np.ndarray) -> np.ndarray:
        """Real-ego-frame points [..., 2] (m) -> the virtual ego's frame [..., 2] (m), dtype kept; NaN stays NaN."""
        p = np.asarray(points)
        return world_to_ego(p, self.offset, self.yaw_rad).astype(p.dtype)

    def virtual_pose(self, poses: np.ndarray) -> np.ndarray:
        """Real world poses [N, 3] (x m, y m, yaw rad) -> the virtual ego's world poses [N, 3]."""
        poses = np.asarray(poses, dtype=np.float64)
        out = poses.copy()
        for i, (x, y, yaw) in enumerate(poses):
            out[i, :2] = ego_to_world(self.offset, np.array([x, y]), float(yaw))
        out[:, 2] = poses[:, 2] + self.yaw_rad
        return out

    def shift_sensors(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The sensor specs with every camera mounted on the virtual ego (position and yaw); other
        sensors unchanged."""
        out = []
        for spec in specs:
            spec = dict(spec)
            if str(spec.get("type", "")).startswith("sensor.camera"):
                x, y = ego_to_world(np.array([float(spec.get("x", 0.0)), float(spec.get("y", 0.0))]), self.offset, self.yaw_rad)
                spec["x"], spec["y"] = round(float(x), 6), round(float(y), 6)
                spec["yaw"] = float(spec.get("yaw", 0.0)) + math.degrees(self.yaw_rad)
            out.append(spec)
        return out

    def to_meta(self) -> dict[str, float]:
        return {"lateral_m": float(self.lateral_m), "yaw_deg": math.degrees(self.yaw_rad)}


@dataclass(frozen=True)
class CameraShiftConfig:
    """With probability ``probability`` an episode's rig is shifted by U[``min_shift_m``,
    ``max_shift_m``] to a random side and turned by U[``min_yaw_deg``, ``max_yaw_deg``] to a random side
    (``probability = 0``: off)."""

    probability: float = 0.0
    min_shift_m: float = 0.1
    max_shift_m: float = 1.0
    min_yaw_deg: float = 5.0
    max_yaw_deg: float = 12.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"camera shift: probability must lie in [0, 1], got {self.probability}")
        if not 0.0 <= self.min_shift_m <= self.max_shift_m or not 0.0 <= self.min_yaw_deg <= self.max_yaw_deg:
            raise ValueError(f"camera shift: ranges must be 0 <= min <= max, got {self}")
        if self.max_shift_m > 2.0:
            raise ValueError(f"camera shift: max_shift_m {self.max_shift_m} > 2 m puts the cameras beside the car")

    @property
    def enabled(self) -> bool:
        return self.probability > 0.0

    def draw(self, seed: int) -> RigShift | None:
        """The shift of the episode run with ``seed`` (None: not shifted); deterministic."""
        if not self.enabled:
            return None
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xCA3]))
        if rng.random() >= self.probability:
            return None
        lateral = rng.uniform(self.min_shift_m, self.max_shift_m) * rng.choice([-1.0, 1.0])
        yaw = math.radians(rng.uniform(self.min_yaw_deg, self.max_yaw_deg)) * rng.choice([-1.0, 1.0])
        return RigShift(float(lateral), float(yaw))

    @classmethod
    def parse(cls, text: str) -> "CameraShiftConfig":
        """``none`` | ``default`` (probability 0.5, LEAD's ranges) | ``key=value,...`` with keys
        ``p`` (probability), ``shift=a-b`` (m), ``yaw=a-b`` (deg)."""
        text = text.strip()
        if text in ("", "none"):
            return cls()
        if text == "default":
            return cls(probability=0.5)
        kwargs: dict[str, float] = {"probability": 0.5}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"--camera-shift: expected key=value, got {part!r}")
            if key in ("p", "probability"):
                kwargs["probability"] = float(value)
            elif key in ("shift", "yaw"):
                lo, _, hi = value.partition("-")
                lo_f, hi_f = float(lo), float(hi or lo)
                if key == "shift":
                    kwargs["min_shift_m"], kwargs["max_shift_m"] = lo_f, hi_f
                else:
                    kwargs["min_yaw_deg"], kwargs["max_yaw_deg"] = lo_f, hi_f
            else:
                raise ValueError(f"--camera-shift: unknown key {key!r} (known: p, shift, yaw)")
        return cls(**kwargs)

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def shift_labels(arrays: dict[str, np.ndarray], shift: RigShift) -> dict[str, np.ndarray]:
    """An episode's arrays with the ego-frame labels in the virtual ego's frame and ``ego_pose``
    the virtual ego's pose (see the module doc); the input is not modified."""
    out = dict(arrays)
    for key in ("trajectory", "expert_plan", "target_point"):
        out[key] = shift.to_virtual(arrays[key])
    out["ego_pose"] = shift.virtual_pose(arrays["ego_pose"])
    return out

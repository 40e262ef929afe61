"""Accumulate per-tick records of one route run and turn them into an episode (``training.episodes``).

The recorder keeps every tick's ego pose (for the trajectory labels, which need the poses between
kept frames) and encodes the camera images of the kept frames (every ``frame_stride``-th tick) as
they arrive, so memory stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.episodes import (
    GROUND_TRUTH_CHANNELS,
    EpisodeMeta,
    encode_depth_png,
    encode_image,
    encode_tags_png,
    pack_boxes,
    pack_images,
)
from training.labels import future_frames, future_trajectories, future_window_flags, ticks_per


@dataclass(frozen=True)
class RecorderConfig:
    """How a run becomes an episode.

    ``frame_stride``: keep every n-th tick (2 -> 10 Hz at 20 Hz ticks). ``horizon_s``: time of the
    future visual state. ``image_format``: "png" (lossless) or "jpg" (``jpeg_quality``).
    """

    cameras: tuple[str, ...] = ("bev",)
    tick_hz: float = 20.0
    frame_stride: int = 2
    horizon_s: float = 3.0
    num_waypoints: int = 6
    waypoint_dt: float = 0.5
    image_format: str = "png"
    jpeg_quality: int = 95
    ground_truth: bool = False  # also store each camera's depth and semantic ground truth

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if self.image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpg', got {self.image_format!r}")
        if not self.cameras:
            raise ValueError("at least one camera must be recorded")
        # Future frame and waypoints must land on kept frames.
        for what, seconds in (("horizon_s", self.horizon_s), ("waypoint_dt", self.waypoint_dt)):
            ticks = ticks_per(seconds, self.tick_hz, what)
            if ticks % self.frame_stride:
                raise ValueError(f"{what} = {seconds} s ({ticks} ticks) is not a multiple of frame_stride {self.frame_stride}")

    @property
    def future_offset(self) -> int:
        """Frames between a frame and its future visual state."""
        return ticks_per(self.horizon_s, self.tick_hz, "horizon_s") // self.frame_stride

    @property
    def waypoint_stride(self) -> int:
        """Frames between trajectory waypoints."""
        return ticks_per(self.waypoint_dt, self.tick_hz, "waypoint_dt") // self.frame_stride


@dataclass
class TickRecord:
    """What is known at one agent tick (the state the camera shows, before this tick's control).

    ``ego_xy`` world m, ``ego_yaw`` rad, ``speed`` m/s, ``acceleration`` m/s^2 (longitudinal),
    ``command`` RoadOption, ``target_point`` [2] ego frame m, ``expert_plan`` [T, 2] ego frame m,
    ``control`` (throttle, steer, brake) actually applied, ``perturbed`` whether it was not the
    expert's own control (perturbed, or the student's), ``student_drove`` whether it was the student's,
    ``boxes`` [M, 5] other vehicles (world x, y, yaw, length, width), ``images`` camera id ->
    [H, W, 3] uint8 RGB (needed on kept ticks only).
    """

    tick: int
    ego_xy: tuple[float, float]
    ego_yaw: float
    speed: float
    acceleration: float
    command: int
    target_point: np.ndarray
    expert_plan: np.ndarray
    control: tuple[float, float, float]
    perturbed: bool
    boxes: np.ndarray
    student_drove: bool = False
    images: dict[str, np.ndarray] = field(default_factory=dict)
    depth: dict[str, np.ndarray] = field(default_factory=dict)  # camera id -> [H, W] metres (ground truth)
    semantic: dict[str, np.ndarray] = field(default_factory=dict)  # camera id -> [H, W] uint8 CARLA tags


class EpisodeRecorder:
    """Collects :class:`TickRecord` s in tick order; :meth:`finish` builds (meta, arrays)."""

    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self.poses: list[tuple[float, float, float, float]] = []
        self.perturbed_ticks: list[bool] = []
        self.frames: list[dict[str, Any]] = []
        self.encoded: list[list[bytes]] = []
        self.encoded_truth: dict[str, list[list[bytes]]] = {"depth": [], "semantic": []}
        self.image_shape: list[int] | None = None

    def is_kept(self, tick: int) -> bool:
        """Whether tick ``tick`` becomes a frame (its images are needed)."""
        return tick % self.config.frame_stride == 0

    def add(self, rec: TickRecord) -> None:
        """Append the record of the next tick (ticks must come 0, 1, 2, ...)."""
        if rec.tick != len(self.poses):
            raise ValueError(f"tick records must be consecutive from 0: expected {len(self.poses)}, got {rec.tick}")
        self.poses.append((float(rec.ego_xy[0]), float(rec.ego_xy[1]), float(rec.ego_yaw), float(rec.speed)))
        if rec.student_drove and not rec.perturbed:
            raise ValueError(f"tick {rec.tick}: the student drove, so the tick must be marked perturbed")
        self.perturbed_ticks.append(bool(rec.perturbed))
        if not self.is_kept(rec.tick):
            return
        missing = [c for c in self.config.cameras if c not in rec.images]
        if missing:
            raise ValueError(f"tick {rec.tick}: no image for camera(s) {missing} (got {sorted(rec.images)})")
        encoded = []
        for cam in self.config.cameras:
            img = rec.images[cam]
            if self.image_shape is None:
                self.image_shape = list(img.shape)
            elif list(img.shape) != self.image_shape:
                raise ValueError(f"tick {rec.tick} camera {cam}: image shape {img.shape} differs from {self.image_shape}")
            encoded.append(encode_image(img, self.config.image_format, self.config.jpeg_quality))
        self.encoded.append(encoded)
        if self.config.ground_truth:
            self._add_truth(rec)
        plan = np.asarray(rec.expert_plan, dtype=np.float32).reshape(-1, 2)
        if plan.shape[0] != self.config.num_waypoints:
            raise ValueError(f"tick {rec.tick}: expert plan has {plan.shape[0]} waypoints, expected {self.config.num_waypoints}")
        self.frames.append({
            "frame_tick": rec.tick,
            "speed": rec.speed,
            "acceleration": rec.acceleration,
            "command": int(rec.command),
            "target_point": np.asarray(rec.target_point, dtype=np.float32).reshape(2),
            "expert_plan": plan,
            "control": np.asarray(rec.control, dtype=np.float32).reshape(3),
            "perturbed": bool(rec.perturbed),
            "student_drove": bool(rec.student_drove),
            "boxes": np.asarray(rec.boxes, dtype=np.float32).reshape(-1, 5),
        })

    def _add_truth(self, rec: TickRecord) -> None:
        size = tuple(self.image_shape[:2]) if self.image_shape else None
        for channel, maps, encode in (("depth", rec.depth, encode_depth_png), ("semantic", rec.semantic, encode_tags_png)):
            missing = [c for c in self.config.cameras if c not in maps]
            if missing:
                raise ValueError(f"tick {rec.tick}: no {channel} ground truth for camera(s) {missing}")
            row = []
            for cam in self.config.cameras:
                data = np.asarray(maps[cam])
                if data.shape != size:
                    raise ValueError(f"tick {rec.tick} camera {cam}: {channel} shape {data.shape} differs from the image's {size}")
                row.append(encode(data))
            self.encoded_truth[channel].append(row)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def finish(self, **meta_fields: Any) -> tuple[EpisodeMeta, dict[str, np.ndarray]]:
        """Labels + arrays of the episode. ``meta_fields``: route_id, route_index, repetition, seed,
        town, scenario, status, ego_size, perturbation, and for on-policy episodes policy (see
        :class:`EpisodeMeta`)."""
        cfg = self.config
        if not self.frames:
            raise ValueError("no frames were recorded")
        tick_pose = np.asarray(self.poses, dtype=np.float64)  # [K, 4]
        frame_tick = np.array([f["frame_tick"] for f in self.frames], dtype=np.int32)
        tpw = ticks_per(cfg.waypoint_dt, cfg.tick_hz, "waypoint_dt")
        traj, valid = future_trajectories(tick_pose, frame_tick, cfg.num_waypoints, tpw)
        window = max(ticks_per(cfg.horizon_s, cfg.tick_hz, "horizon_s"), cfg.num_waypoints * tpw)
        image_bytes, image_offsets = pack_images(self.encoded)
        boxes, box_offsets = pack_boxes([f["boxes"] for f in self.frames])
        arrays = {
            "image_bytes": image_bytes,
            "image_offsets": image_offsets,
            "frame_tick": frame_tick,
            "speed": np.array([f["speed"] for f in self.frames], dtype=np.float32),
            "acceleration": np.array([f["acceleration"] for f in self.frames], dtype=np.float32),
            "command": np.array([f["command"] for f in self.frames], dtype=np.int64),
            "target_point": np.stack([f["target_point"] for f in self.frames]).astype(np.float32),
            "ego_pose": tick_pose[frame_tick, :3].copy(),
            "trajectory": traj,
            "trajectory_valid": valid,
            "expert_plan": np.stack([f["expert_plan"] for f in self.frames]).astype(np.float32),
            "future_frame": future_frames(len(self.frames), cfg.future_offset),
            "perturbed": np.array([f["perturbed"] for f in self.frames], dtype=bool),
            "future_perturbed": future_window_flags(np.asarray(self.perturbed_ticks), frame_tick, window),
            "control": np.stack([f["control"] for f in self.frames]).astype(np.float32),
            "boxes": boxes,
            "box_offsets": box_offsets,
            "tick_pose": tick_pose,
        }
        if meta_fields.get("policy"):
            arrays["student_drove"] = np.array([f["student_drove"] for f in self.frames], dtype=bool)
        elif any(f["student_drove"] for f in self.frames):
            raise ValueError("the student drove some ticks but the episode names no policy")
        truth = list(GROUND_TRUTH_CHANNELS) if cfg.ground_truth else []
        for channel in truth:
            arrays[f"{channel}_bytes"], arrays[f"{channel}_offsets"] = pack_images(self.encoded_truth[channel])
        meta = EpisodeMeta(
            num_frames=len(self.frames),
            num_ticks=len(self.poses),
            cameras=list(cfg.cameras),
            image_format=cfg.image_format,
            image_shape=list(self.image_shape or []),
            tick_hz=cfg.tick_hz,
            frame_stride=cfg.frame_stride,
            horizon_s=cfg.horizon_s,
            future_offset=cfg.future_offset,
            num_waypoints=cfg.num_waypoints,
            waypoint_dt=cfg.waypoint_dt,
            waypoint_stride=cfg.waypoint_stride,
            ground_truth=truth,
            **meta_fields,
        )
        return meta, arrays

"""A small synthetic Bench2Drive clip, written in the dataset's exact layout, for tests and smoke runs.

:func:`write_synthetic_clip` writes ``<root>/<scenario>/<Town>_<...>/`` with ``anno/NNNNN.json.gz``
(gzip JSON with the fields that ``tools/data_collect.py`` records, CARLA world coordinates,
rotations as ``[pitch, roll, yaw]`` degrees, half-size extents) and ``camera/rgb_*/NNNNN.jpg`` (JPEG
quality 20, as the dataset stores them), plus optional ``depth_*`` / ``semantic_*`` PNGs.

The drive: the ego starts heading world -y (yaw -90 deg), speeds up at 3 m/s^2 to 6 m/s, drives 25 m
straight, takes a right turn of radius 15 m (yaw -90 -> 0 deg) and goes on along +x. A dynamic
vehicle drives ahead of it on the same path, a static (parked) vehicle stands at the roadside with
the wrong ``rotation`` that CARLA reports for parked cars (its ``world2vehicle`` is right), and a
pedestrian stands still (speed 0, as CARLA reports every walker). Frame 3 has ``speed: None`` and
frame 5 ``theta: None`` (the documented quirks); frame 7 has a NaN accelerometer.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.bench2drive import CAMERA_FOLDERS, FRONT_CAMERAS

# Route nodes of the expert's planner: (arc length s along the path in m, RoadOption value).
ROUTE_NODES: tuple[tuple[float, int], ...] = ((0.0, 4), (18.0, 4), (25.0, 2), (40.0, 2), (55.0, 4), (80.0, 4))
STRAIGHT_M = 25.0
TURN_RADIUS_M = 15.0
EGO_EXTENT = (2.45, 1.06, 0.76)  # half length, half width, half height (m)


@dataclass(frozen=True)
class SyntheticClipConfig:
    """Size of the clip: ``num_frames`` at 10 Hz, camera images ``width`` x ``height``."""

    num_frames: int = 80
    width: int = 1600
    height: int = 900
    with_depth_semantic: bool = False
    scenario: str = "SyntheticRightTurn"
    clip_name: str = "Town12_Route0_Weather0"
    seed: int = 0


def path_pose(s: float) -> tuple[float, float, float]:
    """World x, y (m) and CARLA yaw (deg) at arc length ``s`` of the drive."""
    if s <= STRAIGHT_M:
        return 0.0, -s, -90.0
    arc = min(s - STRAIGHT_M, TURN_RADIUS_M * math.pi / 2.0)
    yaw = -90.0 + math.degrees(arc / TURN_RADIUS_M)  # clockwise: right turn
    cx, cy = TURN_RADIUS_M, -STRAIGHT_M  # centre to the right of the turn's entry
    x = cx + TURN_RADIUS_M * math.cos(math.radians(yaw - 90.0))
    y = cy + TURN_RADIUS_M * math.sin(math.radians(yaw - 90.0))
    rest = s - STRAIGHT_M - arc
    return x + rest, y, yaw if rest <= 0 else 0.0


def carla_matrix(x: float, y: float, z: float, pitch: float, roll: float, yaw: float) -> np.ndarray:
    """CARLA's ``Transform.get_matrix()`` (actor -> world, 4 x 4) for a pose in m and degrees."""
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    return np.array([
        [cp * cy, cy * sp * sr - sy * cr, -cy * sp * cr - sy * sr, x],
        [cp * sy, sy * sp * sr + cy * cr, -sy * sp * cr + cy * sr, y],
        [sp, -cp * sr, cp * cr, z],
        [0.0, 0.0, 0.0, 1.0],
    ])


def _box(cls: str, actor_id: int, x: float, y: float, yaw: float, extent, speed: float,
         rotation_yaw: float | None = None, state: str = "dynamic") -> dict:
    matrix_key = {"ego_vehicle": "world2ego", "vehicle": "world2vehicle", "walker": "world2ped"}[cls]
    box = {
        "class": cls,
        "id": str(actor_id),
        "location": [x, y, 0.0],
        "rotation": [0.0, 0.0, yaw if rotation_yaw is None else rotation_yaw],
        "bbx_loc": [0.0, 0.0, extent[2]],
        "center": [x, y, extent[2]],
        "extent": list(extent),
        "speed": speed,
        matrix_key: np.linalg.inv(carla_matrix(x, y, 0.0, 0.0, 0.0, yaw)).tolist(),
    }
    if cls == "vehicle":
        box["state"] = state
        box["type_id"] = "vehicle.lincoln.mkz_2020"
    return box


def _near_node(s: float) -> tuple[float, float, int]:
    """The expert planner's near node for an ego at arc length ``s``: the first node > 4 m ahead."""
    for node_s, option in ROUTE_NODES:
        if node_s > s + 4.0:
            x, y, _ = path_pose(node_s)
            return x, y, option
    x, y, _ = path_pose(ROUTE_NODES[-1][0])
    return x, y, ROUTE_NODES[-1][1]


def _image(cfg: SyntheticClipConfig, frame: int, camera: str, lead_bearing_deg: float) -> np.ndarray:
    """[H, W, 3] uint8 BGR: sky, road, and a dark block where the lead vehicle is in this camera."""
    h, w = cfg.height, cfg.width
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[: h // 2] = (200, 160, 120)
    img[h // 2 :] = (90, 90, 90)
    cam_yaw = {"CAM_FRONT_LEFT": -55.0, "CAM_FRONT": 0.0, "CAM_FRONT_RIGHT": 55.0}.get(camera, 180.0)
    rel = (lead_bearing_deg - cam_yaw + 180.0) % 360.0 - 180.0
    if abs(rel) < 35.0:
        col = int((rel / 70.0 + 0.5) * w)
        half = max(2, w // 20)
        img[h // 2 - h // 10 : h // 2 + h // 10, max(0, col - half) : min(w, col + half)] = (20, 20, 160)
    img[h - 1 - (frame % (h // 4)), :, 1] = 255  # a moving line, so frames differ
    return img


def write_synthetic_clip(root: str | Path, config: SyntheticClipConfig | None = None) -> Path:
    """Write the clip under ``root``; returns the clip folder."""
    import cv2

    cfg = config or SyntheticClipConfig()
    rng = np.random.default_rng(cfg.seed)
    clip = Path(root) / cfg.scenario / cfg.clip_name
    (clip / "anno").mkdir(parents=True, exist_ok=True)
    cameras = FRONT_CAMERAS
    for cam in cameras:
        (clip / "camera" / f"rgb_{CAMERA_FOLDERS[cam]}").mkdir(parents=True, exist_ok=True)
        if cfg.with_depth_semantic:
            (clip / "camera" / f"depth_{CAMERA_FOLDERS[cam]}").mkdir(parents=True, exist_ok=True)
            (clip / "camera" / f"semantic_{CAMERA_FOLDERS[cam]}").mkdir(parents=True, exist_ok=True)
    s, v = 0.0, 0.0
    for frame in range(cfg.num_frames):
        acc = 3.0 if v < 6.0 else 0.0
        x, y, yaw = path_pose(s)
        lx, ly, lyaw = path_pose(s + 15.0)
        bearing = math.degrees(math.atan2(ly - y, lx - x)) - yaw
        near_x, near_y, near_cmd = _near_node(s)
        far_x, far_y, far_cmd = _near_node(s + 20.0)
        boxes = [
            _box("ego_vehicle", 100, x, y, yaw, EGO_EXTENT, v),
            _box("vehicle", 200, lx, ly, lyaw, (2.3, 1.0, 0.8), v),
            # parked car: CARLA reports a wrong rotation; world2vehicle holds the true yaw (0 deg)
            _box("vehicle", 300, 8.0, -2.0, 0.0, (2.2, 0.95, 0.8), 0.0, rotation_yaw=137.0, state="static"),
            _box("walker", 400, -4.0, -10.0, 90.0, (0.3, 0.3, 0.9), 0.0),
            _box("vehicle", 500, 300.0, 300.0, 0.0, (2.2, 0.95, 0.8), 0.0),  # far away: dropped
        ]
        anno = {
            "x": x + float(rng.normal(0, 0.2)),
            "y": y + float(rng.normal(0, 0.2)),
            "throttle": 0.6 if acc > 0 else 0.3,
            "steer": 0.0,
            "brake": 0.0,
            "reverse": False,
            "theta": None if frame == 5 else math.radians(yaw) + math.pi / 2.0,
            "speed": None if frame == 3 else v,
            "x_command_far": far_x, "y_command_far": far_y, "command_far": far_cmd,
            "x_command_near": near_x, "y_command_near": near_y, "command_near": near_cmd,
            "should_brake": 0, "only_ap_brake": 0,
            "x_target": near_x, "y_target": near_y, "next_command": near_cmd,
            "weather": {"cloudiness": 0.0},
            "acceleration": [float("nan"), 0.0, 9.81] if frame == 7 else [acc, 0.0, 9.81],
            "angular_velocity": [0.0, 0.0, 0.0],
            "bounding_boxes": boxes,
            "sensors": {cam: {"fov": 70, "image_size_x": cfg.width, "image_size_y": cfg.height} for cam in cameras},
        }
        with gzip.open(clip / "anno" / f"{frame:05d}.json.gz", "wt", encoding="utf-8") as f:
            json.dump(anno, f, indent=4)
        for cam in cameras:
            bgr = _image(cfg, frame, cam, bearing)
            path = clip / "camera" / f"rgb_{CAMERA_FOLDERS[cam]}" / f"{frame:05d}.jpg"
            cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 20])
            if cfg.with_depth_semantic:
                depth = np.full((cfg.height, cfg.width), min(255, 10 + frame), dtype=np.uint8)
                cv2.imwrite(str(clip / "camera" / f"depth_{CAMERA_FOLDERS[cam]}" / f"{frame:05d}.png"), depth)
                sem = np.full((cfg.height, cfg.width), 1, dtype=np.uint8)
                sem[cfg.height // 2 :] = 7  # road tag below the horizon
                cv2.imwrite(str(clip / "camera" / f"semantic_{CAMERA_FOLDERS[cam]}" / f"{frame:05d}.png"), sem)
        s += v * 0.1 + 0.5 * acc * 0.01
        v = min(6.0, v + acc * 0.1)
    return clip


def main(argv=None) -> int:
    """``python -m training.bench2drive_synthetic --out DIR [--frames N] [--width W --height H]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.bench2drive_synthetic",
                                     description="write a synthetic Bench2Drive clip in the dataset's layout")
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--depth-semantic", action="store_true")
    args = parser.parse_args(argv)
    clip = write_synthetic_clip(args.out, SyntheticClipConfig(num_frames=args.frames, width=args.width,
                                                              height=args.height, with_depth_semantic=args.depth_semantic))
    print(f"wrote {clip}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

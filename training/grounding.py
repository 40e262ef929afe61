"""Counterfactual grounding probes: does the plan depend on what the camera shows?

For held-out frames, every non-visual input is held fixed while the image is edited (and, as a
contrast, the image is held fixed while the ego speed in the prompt is edited). Variants:

* ``blank``: every camera image replaced by black.
* ``insert_near`` / ``insert_far``: a stopped vehicle (``vehicle_size``, ``vehicle_colour``) drawn
  into the camera image on the ego's path, ``near_m`` / ``far_m`` ahead of the ego centre along the
  frame's recorded future path (extended straight when the path is shorter), heading along it.
* ``insert_offroad``: the same vehicle at the far distance but ``offroad_lateral_m`` to the side, on
  the side whose pixels look least like the road under the ego's path: a control placement that
  should change nothing.
* ``insert_sky`` (perspective cameras only): the near vehicle's sprite, exactly as drawn for
  ``insert_near``, moved straight up so that its lowest pixel lies ``sky_margin`` of the image
  height above the top of the camera's horizon row: the paper's control ("in the sky"), the same
  pixels where no vehicle can be.
* ``speed_up`` / ``speed_down``: ego speed in the prompt + / - ``speed_delta`` m/s (floored at 0).

Each plan is the mean of ``samples`` pipeline samples; the baseline and every variant use the same
noise (same generator seed), so an input change is the only difference. Per variant:
``mean_l2_3s`` (mean distance between the baseline's and the variant's 3 s waypoint, m),
``decel_ratio`` (share of frames whose 3 s endpoint range |p_3s| gets shorter) and
``mean_endpoint_change`` (mean of |p'_3s| - |p_3s|, m; negative = plans to travel less), as the
paper reports them for insertions.

Vehicles are drawn by projecting their 3D box (height ``vehicle_height_m``; 0 for a top-down
camera, where the sandbox draws flat rectangles) with the camera's pinhole model
(``carla_eval.projection``) and filling the convex hull.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

VARIANTS = ("blank", "insert_near", "insert_far", "insert_offroad", "insert_sky", "speed_up", "speed_down")
INSERTIONS = ("insert_near", "insert_far", "insert_offroad", "insert_sky")


@dataclass(frozen=True)
class ProbeConfig:
    """Probe settings (metres, m/s, RGB 0-255)."""

    frames: int = 200
    samples: int = 8
    seed: int = 0
    num_inference_steps: int | None = None
    batch_size: int = 32
    near_m: float = 10.0
    far_m: float = 20.0
    offroad_lateral_m: float = 16.0
    vehicle_size: tuple[float, float] = (5.0, 2.0)
    vehicle_colour: tuple[int, int, int] = (200, 200, 0)  # the sandbox's background vehicles
    shield_colour: tuple[int, int, int] | None = (20, 20, 20)  # dark windscreen patch, as the sandbox draws cars
    vehicle_height_m: float | None = None  # None: 0 for top-down cameras (pitch -90), 1.5 otherwise
    speed_delta: float = 3.0
    decel_eps_m: float = 1e-3
    sky_margin: float = 0.05  # of the image height, between the sky sprite and the horizon


@dataclass
class ProbeFrame:
    """One probed frame: native camera images and the fixed non-visual inputs.

    ``images`` [N_cam, H0, W0, 3] uint8 RGB; ``path`` [T, 2] the recorded future path (ego frame m).
    """

    images: np.ndarray
    command: int
    speed: float
    acceleration: float
    target_point: np.ndarray
    path: np.ndarray
    source: str = ""


@dataclass
class ProbeResult:
    """Per-variant arrays (one row per frame) and the summary table."""

    base_endpoint: np.ndarray  # [N, 2]
    endpoints: dict[str, np.ndarray]  # variant -> [N, 2]
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    offroad_side: np.ndarray | None = None  # [N] +1 right / -1 left


def _camera_height(spec: dict[str, Any], cfg: ProbeConfig) -> float:
    if cfg.vehicle_height_m is not None:
        return cfg.vehicle_height_m
    return 0.0 if abs(float(spec.get("pitch", 0.0)) + 90.0) < 1e-6 else 1.5


def box_corners(center: np.ndarray, heading: float, size: tuple[float, float], height: float) -> np.ndarray:
    """[8 or 4, 3] ego-frame corners of a box on the ground (4 when ``height`` is 0)."""
    c, s = np.cos(heading), np.sin(heading)
    hl, hw = size[0] / 2, size[1] / 2
    local = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
    xy = center[None, :] + local @ np.array([[c, s], [-s, c]])
    zs = [0.0] if height <= 0 else [0.0, height]
    return np.concatenate([np.concatenate([xy, np.full((4, 1), z)], 1) for z in zs], 0)


def draw_vehicle(image: np.ndarray, camera_spec: dict[str, Any], center: np.ndarray, heading: float,
                 cfg: ProbeConfig) -> np.ndarray:
    """A copy of ``image`` [H, W, 3] uint8 RGB with a vehicle box at ``center`` (ego frame m)."""
    import cv2

    from carla_eval.projection import PinholeCamera

    cam = PinholeCamera.from_spec(camera_spec)
    height = _camera_height(camera_spec, cfg)
    center = np.asarray(center, np.float64)
    scale = np.array([image.shape[1] / cam.width, image.shape[0] / cam.height])
    out = image.copy()

    def fill(corners: np.ndarray, colour: tuple[int, int, int]) -> None:
        uv, valid = cam.project(corners)
        if valid.sum() < 3:
            return
        hull = cv2.convexHull((uv[valid] * scale).astype(np.float32))  # [P, 1, 2] pixels
        cv2.fillConvexPoly(out, np.round(hull * 16).astype(np.int32), tuple(int(v) for v in colour),
                           lineType=cv2.LINE_AA, shift=4)

    fill(box_corners(center, heading, cfg.vehicle_size, height), cfg.vehicle_colour)
    if cfg.shield_colour is not None and height <= 0:
        # Windscreen: 5-45 % of the half length ahead of the centre, 80 % of the width (the sandbox's car).
        fwd = np.array([np.cos(heading), np.sin(heading)])
        half_l = cfg.vehicle_size[0] / 2
        shield_center = center + fwd * 0.25 * half_l
        fill(box_corners(shield_center, heading, (0.4 * half_l, 0.8 * cfg.vehicle_size[1]), 0.0), cfg.shield_colour)
    return out


def is_top_down(camera_spec: dict[str, Any]) -> bool:
    return abs(float(camera_spec.get("pitch", 0.0)) + 90.0) < 1e-6


def horizon_row(camera_spec: dict[str, Any], image_height: int) -> float:
    """Image row (pixels of an ``image_height`` image) of the horizon at the image centre column:
    where a point far ahead along the camera's heading, at the camera's height, projects."""
    from carla_eval.projection import PinholeCamera

    cam = PinholeCamera.from_spec(camera_spec)
    yaw = np.radians(float(camera_spec.get("yaw", 0.0)))
    far = np.array([[float(camera_spec.get("x", 0.0)) + 1e4 * np.cos(yaw),
                     float(camera_spec.get("y", 0.0)) + 1e4 * np.sin(yaw), float(camera_spec.get("z", 0.0))]])
    uv, valid = cam.project(far)
    row = float(uv[0, 1]) if valid[0] else cam.height / 2
    return row * image_height / cam.height


def move_to_sky(image: np.ndarray, sprite_image: np.ndarray, camera_spec: dict[str, Any], margin: float) -> np.ndarray:
    """``image`` with the pixels where ``sprite_image`` differs from it moved straight up so that their
    lowest row lies ``margin`` x height above the horizon (a copy; unchanged when nothing differs)."""
    mask = (sprite_image != image).any(axis=-1)
    rows = np.nonzero(mask.any(axis=1))[0]
    if rows.size == 0:
        return image.copy()
    h = image.shape[0]
    bottom_target = int(np.floor(horizon_row(camera_spec, h) - margin * h))
    shift = rows[-1] - bottom_target
    out = image.copy()
    if shift <= 0:
        return sprite_image.copy()  # the sprite is already above the horizon
    rr, cc = np.nonzero(mask)
    keep = rr - shift >= 0
    out[rr[keep] - shift, cc[keep]] = sprite_image[rr[keep], cc[keep]]
    return out


def point_along(path: np.ndarray, distance: float) -> tuple[np.ndarray, float]:
    """Point (ego frame) ``distance`` m along origin -> ``path`` [T, 2], and the heading there (rad).

    The path is extended straight past its end, along its last direction; a path shorter than
    0.5 m (the ego stands still) is replaced by the straight line along +x.
    """
    pts = np.concatenate([np.zeros((1, 2)), np.asarray(path, np.float64)], 0)
    seg = np.diff(pts, axis=0)  # [T, 2]
    lengths = np.linalg.norm(seg, axis=1)
    if lengths.sum() < 0.5:
        return np.array([distance, 0.0]), 0.0
    travelled, heading = 0.0, 0.0
    for i, length in enumerate(lengths):
        if length < 1e-6:
            continue
        heading = float(np.arctan2(seg[i, 1], seg[i, 0]))
        if travelled + length >= distance:
            return pts[i] + seg[i] * (distance - travelled) / length, heading
        travelled += length
    rest = distance - travelled
    return pts[-1] + rest * np.array([np.cos(heading), np.sin(heading)]), heading


def offroad_side(image: np.ndarray, camera_spec: dict[str, Any], path: np.ndarray, cfg: ProbeConfig) -> int:
    """+1 (right) or -1 (left): the side whose insertion area looks least like the road on the path."""
    import cv2

    from carla_eval.projection import PinholeCamera

    cam = PinholeCamera.from_spec(camera_spec)
    scale = np.array([image.shape[1] / cam.width, image.shape[0] / cam.height])

    def mean_colour(center: np.ndarray, heading: float) -> np.ndarray:
        mask = np.zeros(image.shape[:2], np.uint8)
        corners = box_corners(center, heading, cfg.vehicle_size, 0.0)
        uv, valid = cam.project(corners)
        if valid.sum() < 3:
            return np.full(3, np.nan)
        cv2.fillConvexPoly(mask, cv2.convexHull((uv[valid] * scale).astype(np.float32)).round().astype(np.int32), 1)
        if not mask.any():
            return np.full(3, np.nan)
        return image[mask.astype(bool)].reshape(-1, 3).mean(0)

    road = mean_colour(*point_along(path, cfg.near_m))
    scores = {}
    for side in (1, -1):
        col = mean_colour(np.array([cfg.far_m, side * cfg.offroad_lateral_m]), 0.0)
        scores[side] = -np.inf if np.isnan(col).any() or np.isnan(road).any() else float(np.abs(col - road).sum())
    return 1 if scores[1] >= scores[-1] else -1


def edited_frames(frame: ProbeFrame, camera_specs: Sequence[dict[str, Any]], cfg: ProbeConfig) -> tuple[dict[str, dict[str, Any]], int]:
    """Variant name -> the frame's inputs with that edit (``images``, ``speed``); and the off-road side."""
    out: dict[str, dict[str, Any]] = {"base": {"images": frame.images, "speed": frame.speed}}
    out["blank"] = {"images": np.zeros_like(frame.images), "speed": frame.speed}
    side = offroad_side(frame.images[0], camera_specs[0], frame.path, cfg)
    placements = {
        "insert_near": point_along(frame.path, cfg.near_m),
        "insert_far": point_along(frame.path, cfg.far_m),
        "insert_offroad": (np.array([cfg.far_m, side * cfg.offroad_lateral_m]), 0.0),
    }
    for name, (center, heading) in placements.items():
        imgs = np.stack([draw_vehicle(img, spec, center, heading, cfg) for img, spec in zip(frame.images, camera_specs)])
        out[name] = {"images": imgs, "speed": frame.speed}
    if not any(is_top_down(spec) for spec in camera_specs):
        near = out["insert_near"]["images"]
        sky = np.stack([move_to_sky(img, drawn, spec, cfg.sky_margin)
                        for img, drawn, spec in zip(frame.images, near, camera_specs)])
        out["insert_sky"] = {"images": sky, "speed": frame.speed}
    out["speed_up"] = {"images": frame.images, "speed": frame.speed + cfg.speed_delta}
    out["speed_down"] = {"images": frame.images, "speed": max(0.0, frame.speed - cfg.speed_delta)}
    return out, side


def _plan_endpoints(pipe: Any, frames: list[ProbeFrame], edits: list[dict[str, Any]], cfg: ProbeConfig) -> np.ndarray:
    """Mean over ``cfg.samples`` plans of the 3 s waypoint, [N, 2], for inputs ``edits``."""
    import torch

    from agent.model import DrivingInputs
    from training.dataset import preprocess_image

    size = tuple(pipe.config.image_size)
    j = int(round(3.0 / pipe.config.waypoint_dt)) - 1
    if not 0 <= j < pipe.config.num_waypoints:
        raise ValueError(f"the model's plan does not reach 3 s ({pipe.config.num_waypoints} x {pipe.config.waypoint_dt} s)")
    k = cfg.samples
    per_batch = max(1, cfg.batch_size // k)
    out = []
    for start in range(0, len(frames), per_batch):
        fr, ed = frames[start : start + per_batch], edits[start : start + per_batch]
        images = np.stack([np.stack([preprocess_image(im, size) for im in e["images"]]) for e in ed])  # [b, C, 3, H, W]
        rep = lambda a: np.repeat(np.asarray(a), k, axis=0)  # noqa: E731 - sample axis next to the frame axis
        inputs = DrivingInputs(
            images=torch.from_numpy(rep(images)),
            command=torch.from_numpy(rep([f.command for f in fr]).astype(np.int64)),
            speed=torch.from_numpy(rep([e["speed"] for e in ed]).astype(np.float32)),
            acceleration=torch.from_numpy(rep([f.acceleration for f in fr]).astype(np.float32)),
            target_point=torch.from_numpy(rep(np.stack([f.target_point for f in fr])).astype(np.float32)),
        )
        gen = torch.Generator(device=pipe.device).manual_seed(cfg.seed + start)
        traj = pipe(inputs, num_inference_steps=cfg.num_inference_steps, generator=gen).trajectory.cpu().numpy()
        out.append(traj.reshape(len(fr), k, -1, 2)[:, :, j].mean(1))
    return np.concatenate(out)


def summarize(base: np.ndarray, variant: np.ndarray, eps: float) -> dict[str, float]:
    """``mean_l2_3s``, ``decel_ratio``, ``mean_endpoint_change`` of endpoints [N, 2] (see module doc)."""
    change = np.linalg.norm(variant, axis=1) - np.linalg.norm(base, axis=1)
    return {
        "mean_l2_3s": float(np.linalg.norm(variant - base, axis=1).mean()),
        "decel_ratio": float((change < -eps).mean()),
        "mean_endpoint_change": float(change.mean()),
        "frames": float(len(base)),
    }


def run_probe(pipe: Any, frames: list[ProbeFrame], camera_specs: Sequence[dict[str, Any]], cfg: ProbeConfig) -> ProbeResult:
    """Probe ``pipe`` on ``frames`` (see module doc)."""
    if not frames:
        raise ValueError("no frames to probe")
    if len(camera_specs) != frames[0].images.shape[0]:
        raise ValueError(f"{len(camera_specs)} camera specs for {frames[0].images.shape[0]} cameras")
    edits = [edited_frames(f, camera_specs, cfg) for f in frames]
    base = _plan_endpoints(pipe, frames, [e[0]["base"] for e in edits], cfg)
    variants = [v for v in VARIANTS if v in edits[0][0]]  # insert_sky needs perspective cameras
    endpoints = {v: _plan_endpoints(pipe, frames, [e[0][v] for e in edits], cfg) for v in variants}
    summary = {v: summarize(base, endpoints[v], cfg.decel_eps_m) for v in variants}
    return ProbeResult(base, endpoints, summary, np.array([e[1] for e in edits]))


def frames_from_dataset(episodes: Sequence[Any], camera_ids: Sequence[str], count: int) -> list[ProbeFrame]:
    """``count`` frames evenly spread over ``episodes`` (only frames with a full recorded path)."""
    candidates = []
    for e, ep in enumerate(episodes):
        missing = [c for c in camera_ids if c not in ep.meta.cameras]
        if missing:
            raise ValueError(f"{ep.path}: cameras {missing} not recorded (has {ep.meta.cameras})")
        for f in np.nonzero(ep.arrays["trajectory_valid"])[0]:
            candidates.append((e, int(f)))
    if not candidates:
        raise ValueError("the dataset has no frame with a full future path")
    pick = np.unique(np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int))
    frames = []
    for i in pick:
        e, f = candidates[i]
        ep = episodes[e]
        a = ep.arrays
        cams = [ep.meta.cameras.index(c) for c in camera_ids]
        frames.append(ProbeFrame(
            images=np.stack([ep.image(f, c) for c in cams]),
            command=int(a["command"][f]), speed=float(a["speed"][f]), acceleration=float(a["acceleration"][f]),
            target_point=a["target_point"][f].astype(np.float32), path=a["trajectory"][f].astype(np.float64),
            source=f"{ep.path.name}#{f}",
        ))
    return frames

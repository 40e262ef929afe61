"""A small synthetic driving dataset, for tests and smoke runs of the trainer without the simulator.

A straight three-lane road along world +x; the ego follows its lane at a speed that changes
smoothly, other vehicles drive in the neighbouring lanes. Images are ego-centred top-down renders
(road grey, dashed lane marks white, other vehicles blue, ego red; 1 px = ``metres_per_px``), so the image carries
real information about the scene. Episodes go through the same recorder as collected data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.ego_frame import world_to_ego
from training.episodes import write_episode
from training.manifest import MANIFEST_NAME, build_manifest, write_json_atomic
from training.recording import EpisodeRecorder, RecorderConfig, TickRecord

LANE_WIDTH = 4.0
VEHICLE_SIZE = (5.0, 2.0)


def render_topdown(ego_xy: np.ndarray, ego_yaw: float, boxes: np.ndarray, size: tuple[int, int], metres_per_px: float) -> np.ndarray:
    """[H, W, 3] uint8 RGB ego-centred top-down view (image up = ego forward, right = ego right)."""
    h, w = size
    img = np.full((h, w, 3), (40, 120, 40), dtype=np.uint8)
    rows, cols = np.mgrid[0:h, 0:w]
    # Pixel -> ego frame: row 0 is furthest ahead; the ego sits at 60 % of the height.
    ex = (0.6 * h - rows) * metres_per_px
    ey = (cols - w / 2) * metres_per_px
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    wx = ego_xy[0] + c * ex - s * ey  # world x of each pixel
    wy = ego_xy[1] + s * ex + c * ey  # world y of each pixel
    road = np.abs(wy) < 1.5 * LANE_WIDTH
    img[road] = (90, 90, 90)
    # Dashed lane marks (3 m dash, 3 m gap), so the view changes as the ego moves.
    marks = road & (np.abs(np.abs(wy) - 0.5 * LANE_WIDTH) < max(0.15, 0.5 * metres_per_px)) & (np.mod(wx, 6.0) < 3.0)
    img[marks] = (230, 230, 230)
    for b in np.asarray(boxes).reshape(-1, 5):
        p = world_to_ego(b[None, :2], ego_xy, ego_yaw)[0]
        inside = (np.abs(ex - p[0]) < b[3] / 2) & (np.abs(ey - p[1]) < b[4] / 2)
        img[inside] = (40, 60, 200)
    inside = (np.abs(ex) < VEHICLE_SIZE[0] / 2) & (np.abs(ey) < VEHICLE_SIZE[1] / 2)
    img[inside] = (200, 40, 40)
    return img


# CARLA semantic tags of the synthetic render's colours, and their depth below a camera 20 m up.
_GROUND_TRUTH = {(40, 120, 40): (10, 20.0), (90, 90, 90): (1, 20.0), (230, 230, 230): (24, 20.0),
                 (40, 60, 200): (14, 18.5), (200, 40, 40): (14, 18.5)}


def topdown_ground_truth(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(depth [H, W] float32 m, semantic [H, W] uint8 CARLA tags) of a :func:`render_topdown` image
    (terrain, road, lane mark, vehicle), for tests of the dense pre-training targets."""
    depth = np.full(image.shape[:2], 20.0, np.float32)
    tags = np.zeros(image.shape[:2], np.uint8)
    for colour, (tag, metres) in _GROUND_TRUTH.items():
        hit = (image == np.array(colour, np.uint8)).all(axis=-1)
        tags[hit], depth[hit] = tag, metres
    return depth, tags


def synthetic_episode(
    seed: int,
    num_ticks: int = 200,
    image_size: tuple[int, int] = (32, 32),
    config: RecorderConfig | None = None,
    metres_per_px: float | None = None,
) -> tuple[EpisodeRecorder, dict]:
    """Simulate one synthetic run (deterministic in ``seed``); returns the filled recorder and the
    meta fields for :meth:`EpisodeRecorder.finish`."""
    cfg = config or RecorderConfig(cameras=("bev",))
    rng = np.random.default_rng(seed)
    dt = 1.0 / cfg.tick_hz
    mpp = metres_per_px or 40.0 / image_size[0]
    lane = int(rng.integers(-1, 2))
    x, y, yaw = 0.0, lane * LANE_WIDTH, 0.0
    speed = float(rng.uniform(4.0, 12.0))
    others = np.array([[rng.uniform(-20, 60), l * LANE_WIDTH, rng.uniform(5, 12)] for l in (-1, 0, 1) if l != lane])
    rec = EpisodeRecorder(cfg)
    acc = 0.0
    for tick in range(num_ticks):
        if tick % 20 == 0:
            acc = float(rng.uniform(-1.5, 1.5))
        acc_now = acc if 2.0 < speed + acc * dt < 15.0 else 0.0
        boxes = np.array([[o[0], o[1], 0.0, VEHICLE_SIZE[0], VEHICLE_SIZE[1]] for o in others], dtype=np.float32)
        # Plan at this tick: constant acceleration extrapolation in the ego frame.
        tt = (np.arange(cfg.num_waypoints) + 1) * cfg.waypoint_dt
        plan = np.stack([speed * tt + 0.5 * acc_now * tt**2, np.zeros_like(tt)], -1)
        images, depth, semantic = {}, {}, {}
        if rec.is_kept(tick):
            images = {cam: render_topdown(np.array([x, y]), yaw, boxes, image_size, mpp) for cam in cfg.cameras}
            if cfg.ground_truth:
                for cam, img in images.items():
                    depth[cam], semantic[cam] = topdown_ground_truth(img)
        rec.add(TickRecord(
            tick=tick, ego_xy=(x, y), ego_yaw=yaw, speed=speed, acceleration=acc_now, command=4,
            target_point=np.array([50.0, 0.0]), expert_plan=plan, control=(0.3, 0.0, 0.0),
            perturbed=False, boxes=boxes, images=images, depth=depth, semantic=semantic,
        ))
        speed += acc_now * dt
        x += speed * dt
        others[:, 0] += others[:, 2] * dt
    meta = dict(route_id=str(seed), route_index=seed, repetition=0, seed=seed, town="synthetic",
                scenario="", status="Completed", ego_size=list(VEHICLE_SIZE))
    return rec, meta


def write_synthetic_dataset(root: str | Path, num_episodes: int = 3, num_ticks: int = 200,
                            image_size: tuple[int, int] = (32, 32), config: RecorderConfig | None = None,
                            first_seed: int = 0) -> Path:
    """Write ``num_episodes`` synthetic episodes (route ids = seeds) and a manifest into ``root``."""
    root = Path(root)
    entries = []
    for seed in range(first_seed, first_seed + num_episodes):
        rec, meta_fields = synthetic_episode(seed, num_ticks, image_size, config)
        meta, arrays = rec.finish(**meta_fields)
        name = f"ep_{seed}_rep0.npz"
        digest = write_episode(root / name, meta, arrays)
        entries.append({"file": name, "route_id": meta.route_id, "repetition": 0, "seed": seed,
                        "num_frames": meta.num_frames, "sha256": digest, "status": meta.status,
                        "perturbed_frames": int(arrays["perturbed"].sum())})
    manifest = build_manifest(entries, [], {"synthetic": True, "num_ticks": num_ticks}, [], root)
    write_json_atomic(root / MANIFEST_NAME, manifest)
    return root

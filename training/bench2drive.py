"""Reader of Bench2Drive clips as the dataset ships them, giving the same samples as sandbox episodes.

A clip is one folder ``<scenario>/<Town>_<...>/`` with (docs/training.md, "Bench2Drive clips")::

    anno/00000.json.gz                  gzip JSON per frame, 10 Hz (frame numbers 00000, 00001, ...)
    camera/rgb_front_left/00000.jpg     JPEG quality 20, 1600 x 900, BGR as cv2 writes it
    camera/rgb_front/00000.jpg
    camera/rgb_front_right/00000.jpg
    camera/depth_front/00000.png        optional (encoder pre-training)
    camera/semantic_front/00000.png     optional (CARLA semantic tags)

:func:`read_clip` turns a clip into a :class:`Bench2DriveEpisode`: an in-memory
:class:`training.episodes.Episode` whose arrays hold every label of the episode format (see
``training/episodes.py``) and whose images are read from the clip's JPEG files on demand. So
:class:`training.dataset.DrivingDataset` gives Bench2Drive samples of exactly the sandbox's type.

Coordinate conversion (one ego frame, ``agent/ego_frame.py``): Bench2Drive records CARLA world
coordinates (x, y, z in m; left-handed, z up; yaw in degrees, clockwise seen from above, rotations
stored as ``[pitch, roll, yaw]``). That frame already has the project's handedness, so a world point
goes to the ego frame (x forward, y right) by a translation and a rotation by -yaw, without an axis
flip; yaw in degrees becomes radians. The IMU compass ``theta`` (0 = north = -y, clockwise) would
give yaw = theta - pi/2; it is only a fallback, since CARLA may report it as None or NaN.

Every field read, its source in Bench2Drive's ``tools/data_collect.py`` / ``docs/anno.md``, and the
handling of the known CARLA quirks is listed in docs/training.md. Anything unusable raises
:class:`Bench2DriveError` naming the clip, the frame and the field.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from agent.ego_frame import world_to_ego
from agent.route_planner import RoutePlanner, RoutePlannerConfig, road_option_value
from training.episodes import Episode, EpisodeMeta, decode_image
from training.labels import future_frames, future_trajectories, ticks_per
from training.manifest import DatasetScan, SkippedEpisode

FRAME_HZ = 10.0  # data_collect.py: Env_Manager.frame_rate (one anno file per 0.1 s)
# Camera sensor id (data_collect.py ``sensors()``) -> folder suffix under camera/.
CAMERA_FOLDERS: dict[str, str] = {
    "CAM_FRONT_LEFT": "front_left",
    "CAM_FRONT": "front",
    "CAM_FRONT_RIGHT": "front_right",
    "CAM_BACK_LEFT": "back_left",
    "CAM_BACK": "back",
    "CAM_BACK_RIGHT": "back_right",
}
FRONT_CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT")
ANNO_SUFFIX = ".json.gz"


class Bench2DriveError(ValueError):
    """A clip that cannot be read; the message names the clip, the frame and the field."""


@dataclass(frozen=True)
class Bench2DriveConfig:
    """How clips become episodes.

    Attributes:
        cameras: camera sensor ids in the model's camera order (default: the b2d-3cam rig's).
        frame_hz: annotation rate of the clips (10 Hz in the released data).
        num_waypoints, waypoint_dt: trajectory label, T points every ``waypoint_dt`` s.
        horizon_s: time of the future frame (the model's ``future.horizon_s``).
        route_source: "planner": target point and command from ``agent.route_planner.RoutePlanner``
            run over the route rebuilt from the clip's near nodes, as the agent computes them at run
            time; "anno": the recorded ``x/y_command_near`` and ``command_near`` of each frame.
        box_classes: box classes kept as other agents ("vehicle", "walker").
        max_box_distance_m: boxes farther than this from the ego (at the frame) are dropped.
        max_gnss_offset_m: largest allowed distance between the recorded GNSS position ``x, y`` and
            the ego actor's ``location``; more means the clip's frames disagree (error).
        max_abs_acceleration: clip of the acceleration (m/s^2), as the agent's sensor decoder does.
    """

    cameras: tuple[str, ...] = FRONT_CAMERAS
    frame_hz: float = FRAME_HZ
    num_waypoints: int = 6
    waypoint_dt: float = 0.5
    horizon_s: float = 3.0
    route_source: Literal["planner", "anno"] = "planner"
    box_classes: tuple[str, ...] = ("vehicle", "walker")
    max_box_distance_m: float = 50.0
    max_gnss_offset_m: float = 5.0
    max_abs_acceleration: float = 15.0

    def __post_init__(self) -> None:
        unknown = [c for c in self.cameras if c not in CAMERA_FOLDERS]
        if unknown or not self.cameras:
            raise ValueError(f"bench2drive.cameras: unknown {unknown}; known {sorted(CAMERA_FOLDERS)}")
        if self.route_source not in ("planner", "anno"):
            raise ValueError(f"bench2drive.route_source: {self.route_source!r} is not 'planner' or 'anno'")
        for name in ("frame_hz", "waypoint_dt", "horizon_s", "max_box_distance_m", "max_gnss_offset_m",
                     "max_abs_acceleration"):
            if not getattr(self, name) > 0:
                raise ValueError(f"bench2drive.{name}: must be > 0, got {getattr(self, name)}")
        if self.num_waypoints < 1:
            raise ValueError(f"bench2drive.num_waypoints: must be >= 1, got {self.num_waypoints}")
        ticks_per(self.waypoint_dt, self.frame_hz, "bench2drive.waypoint_dt")
        ticks_per(self.horizon_s, self.frame_hz, "bench2drive.horizon_s")


@dataclass
class FrameRecord:
    """The fields of one anno file that the labels use (world frame of CARLA, SI units).

    Attributes:
        gnss_xy: [2] world m, recorded ``x, y`` (the expert's position; data_collect.py mounts its
            GPS at x = -1.4 m), only checked against ``pose_xy``.
        pose_xy: [2] world m, ego actor ``location``: trajectory labels and the origin of the
            target point (the agent's GNSS is mounted at the vehicle origin and CARLA's GNSS has no
            noise by default, so this is the position the agent sees at run time).
        yaw: ego actor yaw, rad (clockwise from +x).
        speed: m/s forward.
        acceleration: m/s^2 longitudinal (IMU x), NaN when not recorded (filled from speeds).
        near_xy: [2] world m, ``x/y_command_near``; near_command: its RoadOption value.
        control: [3] throttle, steer, brake.
        ego_size: (length, width) m of the ego box.
        boxes: [M, 5] other agents: world x, y (m), yaw (rad), length, width (m).
        fallbacks: fields whose value was missing and replaced (quirks), for the clip report.
    """

    gnss_xy: np.ndarray
    pose_xy: np.ndarray
    yaw: float
    speed: float
    acceleration: float
    near_xy: np.ndarray
    near_command: int
    control: np.ndarray
    ego_size: tuple[float, float]
    boxes: np.ndarray
    fallbacks: list[str] = field(default_factory=list)


def _number(value: Any, where: str) -> float | None:
    """A finite float, or None for None / NaN / inf (the CARLA quirks); error for other types."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Bench2DriveError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def _vector(value: Any, length: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise Bench2DriveError(f"{where}: expected {length} numbers, got {value!r}") from None
    if arr.size < length:
        raise Bench2DriveError(f"{where}: expected {length} numbers, got {arr.size}")
    return arr[:length]


def _required(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise Bench2DriveError(f"{where}: field {key!r} missing")
    return raw[key]


def _yaw_of_matrix(matrix: Any, where: str) -> float:
    """Yaw (rad) of the actor whose world -> actor matrix is ``matrix`` (4 x 4)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise Bench2DriveError(f"{where}: expected a finite 4x4 matrix")
    actor_to_world = np.linalg.inv(m)
    return math.atan2(actor_to_world[1, 0], actor_to_world[0, 0])


def _box_row(box: dict[str, Any], where: str) -> np.ndarray:
    """[5] world x, y, yaw (rad), length, width of one box of ``bounding_boxes``.

    Position is ``center`` (box centre, world); size is 2 x ``extent`` (CARLA extents are half
    sizes). Yaw comes from the inverse of ``world2vehicle`` / ``world2ped`` when recorded (static
    vehicles have a wrong ``rotation``, docs/anno.md), else from ``rotation[2]`` (degrees).
    """
    center = _vector(_required(box, "center", where), 2, f"{where}.center")
    extent = _vector(_required(box, "extent", where), 2, f"{where}.extent")
    matrix = box.get("world2vehicle", box.get("world2ped"))
    if matrix is not None:
        yaw = _yaw_of_matrix(matrix, f"{where}.world2vehicle")
    else:
        yaw = math.radians(float(_vector(_required(box, "rotation", where), 3, f"{where}.rotation")[2]))
    row = np.array([center[0], center[1], yaw, 2.0 * extent[0], 2.0 * extent[1]], dtype=np.float64)
    if not np.isfinite(row).all():
        raise Bench2DriveError(f"{where}: non-finite box {row.tolist()}")
    return row


def parse_frame(raw: Any, where: str, config: Bench2DriveConfig) -> FrameRecord:
    """The :class:`FrameRecord` of one decoded anno file (``where`` prefixes every error)."""
    if not isinstance(raw, dict):
        raise Bench2DriveError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    fallbacks: list[str] = []
    boxes = _required(raw, "bounding_boxes", where)
    if not isinstance(boxes, list):
        raise Bench2DriveError(f"{where}: bounding_boxes is a {type(boxes).__name__}, not a list")
    ego = next((b for b in boxes if isinstance(b, dict) and b.get("class") == "ego_vehicle"), None)
    if ego is None:
        raise Bench2DriveError(f"{where}: bounding_boxes has no 'ego_vehicle' entry")
    ew = f"{where}: bounding_boxes[ego_vehicle]"
    pose_xy = _vector(_required(ego, "location", ew), 2, f"{ew}.location")
    if not np.isfinite(pose_xy).all():
        raise Bench2DriveError(f"{ew}.location: non-finite {pose_xy.tolist()}")
    ego_yaw_deg = None
    if "rotation" in ego:
        ego_yaw_deg = _number(_vector(ego["rotation"], 3, f"{ew}.rotation")[2], f"{ew}.rotation[2]")
    if ego_yaw_deg is not None:
        yaw = math.radians(ego_yaw_deg)
    else:
        theta = _number(raw.get("theta"), f"{where}: theta")
        if theta is None:
            raise Bench2DriveError(f"{where}: no yaw (ego rotation and theta are both missing/None)")
        yaw = theta - math.pi / 2.0  # compass (0 = north = -y) -> world yaw
        fallbacks.append("yaw<-theta")
    extent = _vector(_required(ego, "extent", ew), 2, f"{ew}.extent")

    gx = _number(_required(raw, "x", where), f"{where}: x")
    gy = _number(_required(raw, "y", where), f"{where}: y")
    if gx is None or gy is None:
        gnss_xy = pose_xy.copy()
        fallbacks.append("x,y<-ego location")
    else:
        gnss_xy = np.array([gx, gy])
    offset = float(np.hypot(*(gnss_xy - pose_xy)))
    if offset > config.max_gnss_offset_m:
        raise Bench2DriveError(
            f"{where}: x, y ({gnss_xy[0]:.2f}, {gnss_xy[1]:.2f}) is {offset:.1f} m from the ego location "
            f"({pose_xy[0]:.2f}, {pose_xy[1]:.2f}); max {config.max_gnss_offset_m} m (not CARLA world coordinates?)"
        )

    speed = _number(raw.get("speed"), f"{where}: speed")
    if speed is None:  # the Speedometer quirk: fall back to the actor's forward speed
        speed = _number(ego.get("speed"), f"{ew}.speed")
        if speed is None:
            raise Bench2DriveError(f"{where}: speed is None and bounding_boxes[ego_vehicle].speed too")
        fallbacks.append("speed<-ego speed")
    acc = raw.get("acceleration")
    acceleration = float("nan")
    if acc is not None:
        value = _number(_vector(acc, 1, f"{where}: acceleration")[0], f"{where}: acceleration[0]")
        acceleration = float("nan") if value is None else value
    if not math.isfinite(acceleration):
        fallbacks.append("acceleration<-speed difference")

    near_x = _number(_required(raw, "x_command_near", where), f"{where}: x_command_near")
    near_y = _number(_required(raw, "y_command_near", where), f"{where}: y_command_near")
    if near_x is None or near_y is None:
        raise Bench2DriveError(f"{where}: x/y_command_near is None")
    try:
        near_command = road_option_value(_required(raw, "command_near", where))
    except (TypeError, ValueError) as exc:
        raise Bench2DriveError(f"{where}: command_near: {exc}") from None

    control = np.array([_number(raw.get(k), f"{where}: {k}") or 0.0 for k in ("throttle", "steer", "brake")])

    rows = []
    for i, box in enumerate(boxes):
        if not isinstance(box, dict) or box is ego or box.get("class") not in config.box_classes:
            continue
        row = _box_row(box, f"{where}: bounding_boxes[{i}] ({box.get('class')} {box.get('id')})")
        if float(np.hypot(*(row[:2] - pose_xy))) <= config.max_box_distance_m:
            rows.append(row)
    return FrameRecord(
        gnss_xy=gnss_xy,
        pose_xy=pose_xy,
        yaw=yaw,
        speed=float(speed),
        acceleration=acceleration,
        near_xy=np.array([near_x, near_y]),
        near_command=near_command,
        control=control,
        ego_size=(2.0 * float(extent[0]), 2.0 * float(extent[1])),
        boxes=np.array(rows, dtype=np.float64).reshape(-1, 5),
        fallbacks=fallbacks,
    )


def read_anno(path: Path) -> Any:
    """Decode one ``anno/NNNNN.json.gz`` file."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Bench2DriveError(f"{path}: not a readable gzip JSON file ({exc})") from None


def _frame_numbers(clip: Path) -> list[int]:
    anno = clip / "anno"
    if not anno.is_dir():
        raise Bench2DriveError(f"{clip}: no anno/ folder")
    numbers = []
    for p in anno.iterdir():
        if not p.name.endswith(ANNO_SUFFIX):
            continue
        stem = p.name[: -len(ANNO_SUFFIX)]
        if not stem.isdigit():
            raise Bench2DriveError(f"{clip}: anno file {p.name} is not NNNNN{ANNO_SUFFIX}")
        numbers.append(int(stem))
    numbers.sort()
    if not numbers:
        raise Bench2DriveError(f"{clip}: anno/ holds no *{ANNO_SUFFIX} files")
    gaps = [n for a, n in zip(numbers, numbers[1:]) if n != a + 1]
    if gaps:
        raise Bench2DriveError(f"{clip}: anno frames are not consecutive (gap before frame {gaps[0]:05d})")
    return numbers


def camera_path(clip: Path, kind: str, camera: str, number: int) -> Path:
    """File of ``kind`` ("rgb" .jpg, "depth" / "semantic" .png) of a camera at frame ``number``."""
    ext = "jpg" if kind == "rgb" else "png"
    return clip / "camera" / f"{kind}_{CAMERA_FOLDERS[camera]}" / f"{number:05d}.{ext}"


@dataclass
class Bench2DriveEpisode(Episode):
    """An episode read from a clip folder (``path``); images are read from its files on demand.

    ``arrays`` holds every per-frame array of the episode format except the packed image bytes;
    ``frame_tick`` is the clip's frame number (the anno / image file name).
    """

    def encoded_image(self, frame: int, camera: int) -> bytes:
        path = camera_path(self.path, "rgb", self.meta.cameras[camera], int(self.arrays["frame_tick"][frame]))
        try:
            return path.read_bytes()
        except OSError as exc:
            raise Bench2DriveError(f"{path}: cannot read ({exc})") from None

    def image(self, frame: int, camera: int) -> np.ndarray:
        """[H, W, 3] uint8 RGB of the clip's JPEG (stored BGR by cv2)."""
        return decode_image(self.encoded_image(frame, camera), where=f"{self.path} frame {frame} camera {camera}")

    def _png(self, kind: str, frame: int, camera: int) -> np.ndarray:
        import cv2

        path = camera_path(self.path, kind, self.meta.cameras[camera], int(self.arrays["frame_tick"][frame]))
        if not path.is_file():
            raise Bench2DriveError(f"{path}: {kind} image missing")
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise Bench2DriveError(f"{path}: {kind} PNG does not decode")
        return data

    def depth(self, frame: int, camera: int) -> np.ndarray:
        """The stored depth PNG [H, W] (``depth_*``: CARLA depth in metres as data_collect.py wrote
        it, saturated to the PNG's integer range), for encoder pre-training."""
        d = self._png("depth", frame, camera)
        return d if d.ndim == 2 else d[..., 0]

    def semantic(self, frame: int, camera: int) -> np.ndarray:
        """CARLA semantic tags [H, W] uint8 (``semantic_*`` PNG: the red channel of the camera)."""
        s = self._png("semantic", frame, camera)
        return s if s.ndim == 2 else s[..., -1]


def _accelerations(records: Sequence[FrameRecord], dt: float, limit: float) -> np.ndarray:
    """[N] m/s^2: recorded IMU x, or the speed difference where it is missing; clipped."""
    speeds = np.array([r.speed for r in records])
    diff = np.zeros_like(speeds)
    if len(speeds) > 1:
        diff[1:] = np.diff(speeds) / dt
    acc = np.array([r.acceleration for r in records])
    acc = np.where(np.isfinite(acc), acc, diff)
    return np.clip(acc, -limit, limit)


def _route_targets(records: Sequence[FrameRecord], config: Bench2DriveConfig) -> tuple[np.ndarray, np.ndarray]:
    """([N, 2] target point ego frame m, [N] command) per ``config.route_source``."""
    n = len(records)
    targets = np.zeros((n, 2))
    commands = np.zeros(n, dtype=np.int64)
    if config.route_source == "anno":
        for i, r in enumerate(records):
            targets[i] = world_to_ego(r.near_xy, r.pose_xy, r.yaw)
            commands[i] = r.near_command
        return targets, commands
    # The route as the expert's planner handed it out: its distinct near nodes in order.
    points: list[np.ndarray] = []
    options: list[int] = []
    for r in records:
        if not points or not (np.allclose(points[-1], r.near_xy) and options[-1] == r.near_command):
            points.append(r.near_xy)
            options.append(r.near_command)
    planner = RoutePlanner(RoutePlannerConfig(min_spacing_m=0.0))
    planner.set_route(np.array(points), options)
    for i, r in enumerate(records):
        target = planner.step(r.pose_xy, r.yaw)
        targets[i] = target.target_ego
        commands[i] = target.command
    return targets, commands


def find_clips(root: str | Path) -> list[Path]:
    """Every clip folder (one holding ``anno/``) at or below ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Bench2Drive folder not found: {root}")
    if (root / "anno").is_dir():
        return [root]
    return sorted(p.parent for p in root.rglob("anno") if p.is_dir())


def read_clip(clip: str | Path, config: Bench2DriveConfig | None = None) -> Bench2DriveEpisode:
    """Read and label one clip (see the module doc); raises :class:`Bench2DriveError`."""
    config = config or Bench2DriveConfig()
    clip = Path(clip)
    numbers = _frame_numbers(clip)
    records = []
    for number in numbers:
        where = f"{clip} frame {number:05d}"
        records.append(parse_frame(read_anno(clip / "anno" / f"{number:05d}{ANNO_SUFFIX}"), where, config))
        for cam in config.cameras:
            if not camera_path(clip, "rgb", cam, number).is_file():
                raise Bench2DriveError(f"{where}: camera image {camera_path(clip, 'rgb', cam, number)} missing")
    n = len(records)
    dt = 1.0 / config.frame_hz
    wp_stride = ticks_per(config.waypoint_dt, config.frame_hz, "waypoint_dt")
    fut = ticks_per(config.horizon_s, config.frame_hz, "horizon_s")
    poses = np.array([[r.pose_xy[0], r.pose_xy[1], r.yaw, r.speed] for r in records], dtype=np.float64)
    traj, valid = future_trajectories(poses, np.arange(n), config.num_waypoints, wp_stride)
    targets, commands = _route_targets(records, config)
    box_counts = np.array([len(r.boxes) for r in records], dtype=np.int64)
    box_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(box_counts, out=box_offsets[1:])
    boxes = np.concatenate([r.boxes for r in records], axis=0) if n else np.zeros((0, 5))
    first = camera_path(clip, "rgb", config.cameras[0], numbers[0])
    shape = list(decode_image(first.read_bytes(), where=str(first)).shape)
    arrays = {
        "frame_tick": np.array(numbers, dtype=np.int32),
        "speed": poses[:, 3].astype(np.float32),
        "acceleration": _accelerations(records, dt, config.max_abs_acceleration).astype(np.float32),
        "command": commands,
        "target_point": targets.astype(np.float32),
        "ego_pose": poses[:, :3].copy(),
        "trajectory": traj,
        "trajectory_valid": valid,
        "expert_plan": np.full_like(traj, np.nan),
        "future_frame": future_frames(n, fut),
        "perturbed": np.zeros(n, dtype=bool),
        "future_perturbed": np.zeros(n, dtype=bool),
        "control": np.array([r.control for r in records], dtype=np.float32).reshape(n, 3),
        "boxes": boxes.astype(np.float32),
        "box_offsets": box_offsets,
        "tick_pose": poses,
    }
    meta = EpisodeMeta(
        route_id=f"{clip.parent.name}/{clip.name}",
        route_index=0,
        repetition=0,
        seed=0,
        town=clip.name.split("_")[0],
        scenario=clip.parent.name,
        num_frames=n,
        num_ticks=n,
        cameras=list(config.cameras),
        image_format="jpg",
        image_shape=shape,
        tick_hz=config.frame_hz,
        frame_stride=1,
        horizon_s=config.horizon_s,
        future_offset=fut,
        num_waypoints=config.num_waypoints,
        waypoint_dt=config.waypoint_dt,
        waypoint_stride=wp_stride,
        ego_size=list(max(r.ego_size for r in records)),
        status="bench2drive",
        label_source="future_poses",
    )
    quirks = sorted({q for r in records for q in r.fallbacks})
    if quirks:
        meta.perturbation = {"fallbacks": quirks}
    return Bench2DriveEpisode(path=clip, meta=meta, arrays=arrays)


def scan_bench2drive(root: str | Path, config: Bench2DriveConfig | None = None) -> DatasetScan:
    """Read every clip under ``root``; a clip that does not read is skipped with its reason."""
    config = config or Bench2DriveConfig()
    episodes: list[Episode] = []
    skipped: list[SkippedEpisode] = []
    for clip in find_clips(root):
        try:
            episodes.append(read_clip(clip, config))
        except Bench2DriveError as exc:
            skipped.append(SkippedEpisode(str(clip), str(exc)))
    return DatasetScan(Path(root), episodes, skipped, None)

"""The on-disk episode format: one ``.npz`` file per recorded route run.

An episode file is a NumPy ``.npz`` archive (read with ``allow_pickle=False``; it never holds Python
objects). Frames are the KEPT ticks (every ``frame_stride``-th simulator tick); ``N`` frames, ``C``
cameras, ``T`` waypoints, ``M`` ground-truth boxes in total, ``K`` simulator ticks.

=====================  ===============  =========================================================
key                    dtype / shape    meaning
=====================  ===============  =========================================================
``meta_json``          uint8 [bytes]    UTF-8 JSON, see :class:`EpisodeMeta`
``image_bytes``        uint8 [total]    encoded images (PNG or JPEG, standard BGR order as cv2
                                        writes them), frame-major: frame i camera c is entry
                                        ``i * C + c``
``image_offsets``      int64 [N*C+1]    entry j is ``image_bytes[offsets[j]:offsets[j+1]]``
``frame_tick``         int32 [N]        simulator tick of each frame (20 Hz ticks from 0)
``speed``              float32 [N]      ego forward speed, m/s
``acceleration``       float32 [N]      ego longitudinal acceleration, m/s^2 (forward +)
``command``            int64 [N]        route command, RoadOption value
``target_point``       float32 [N, 2]   route target point, ego frame m (x forward, y right)
``ego_pose``           float64 [N, 3]   world x m, y m, yaw rad (a camera-shifted episode: the
                                        virtual ego's, ``training.camera_shift``; its ego-frame
                                        labels are in that frame too)
``trajectory``         float32 [N, T, 2]  ego's ACTUAL future positions at t + 0.5 s ... t + T*0.5 s,
                                        ego frame of frame i (NaN where the episode ended first)
``trajectory_valid``   bool [N]         all T waypoints exist
``expert_plan``        float32 [N, T, 2]  the expert's plan at that tick (ego frame, 2 Hz)
``future_frame``       int32 [N]        index of the frame at t + horizon (-1: beyond the episode)
``perturbed``          bool [N]         the control applied at this tick was not the expert's own
                                        (a perturbation, or the student drove)
``future_perturbed``   bool [N]         some tick in (t, t + max(horizon, T*0.5 s)] was perturbed
``control``            float32 [N, 3]   applied throttle, steer, brake
``boxes``              float32 [M, 5]   other vehicles: world x, y (m), yaw (rad), length, width (m)
``box_offsets``        int64 [N+1]      frame i's boxes are ``boxes[box_offsets[i]:box_offsets[i+1]]``
``tick_pose``          float64 [K, 4]   every tick: world x, y, yaw, speed (after the tick)
=====================  ===============  =========================================================

Optional camera ground truth (``meta.ground_truth == ["depth", "semantic"]``, recorded by
``carla-eval collect --ground-truth`` from the sandbox's depth and semantic cameras, at the stored
images' size, nearest-neighbour resized; never a model input at driving time):

=====================  ===============  =========================================================
``depth_bytes``        uint8 [total]    16-bit PNGs of planar depth in centimetres (65535: 655.35 m
                                        or more, the sky), indexed like ``image_bytes``
``depth_offsets``      int64 [N*C+1]
``semantic_bytes``     uint8 [total]    8-bit PNGs of CARLA semantic tags (1 road, 24 road line,
                                        14 car, 11 sky, ...), indexed like ``image_bytes``
``semantic_offsets``   int64 [N*C+1]
=====================  ===============  =========================================================

On-policy episodes (``meta.policy`` set: ``carla-eval collect --policy``, the DAgger loop) also hold

=====================  ===============  =========================================================
``student_drove``      bool [N]         the student's control was applied at this tick (not the
                                        expert's); such ticks also count as ``perturbed``, so a
                                        frame whose future holds one is labelled with the
                                        expert's plan from that frame (its recovery plan)
=====================  ===============  =========================================================

Integrity: ``meta.content_sha256`` is the SHA-256 of every other array (name, dtype, shape, bytes,
in sorted key order), checked on read; files are written to a temporary name and renamed, so a
crashed writer leaves ``*.tmp`` files, never a half-written ``.npz``. :func:`read_episode` raises
:class:`EpisodeError` naming the file and the reason for anything that does not verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
EPISODE_SUFFIX = ".npz"
TMP_SUFFIX = ".tmp"

ARRAY_SPECS: dict[str, tuple[str, int]] = {
    # name: (dtype, ndim)
    "image_bytes": ("uint8", 1),
    "image_offsets": ("int64", 1),
    "frame_tick": ("int32", 1),
    "speed": ("float32", 1),
    "acceleration": ("float32", 1),
    "command": ("int64", 1),
    "target_point": ("float32", 2),
    "ego_pose": ("float64", 2),
    "trajectory": ("float32", 3),
    "trajectory_valid": ("bool", 1),
    "expert_plan": ("float32", 3),
    "future_frame": ("int32", 1),
    "perturbed": ("bool", 1),
    "future_perturbed": ("bool", 1),
    "control": ("float32", 2),
    "boxes": ("float32", 2),
    "box_offsets": ("int64", 1),
    "tick_pose": ("float64", 2),
}
GROUND_TRUTH_CHANNELS = ("depth", "semantic")
GROUND_TRUTH_SPECS: dict[str, tuple[str, int]] = {
    f"{channel}_{part}": (dtype, 1) for channel in GROUND_TRUTH_CHANNELS for part, dtype in (("bytes", "uint8"), ("offsets", "int64"))
}
ON_POLICY_SPECS: dict[str, tuple[str, int]] = {"student_drove": ("bool", 1)}  # present iff meta.policy
DEPTH_SCALE_CM = 100.0  # stored depth unit: 1 cm
PER_FRAME_KEYS = (
    "frame_tick", "speed", "acceleration", "command", "target_point", "ego_pose", "trajectory",
    "trajectory_valid", "expert_plan", "future_frame", "perturbed", "future_perturbed", "control",
)


class EpisodeError(ValueError):
    """An episode file is missing, partial, corrupt or inconsistent (message names file and reason)."""


@dataclass
class EpisodeMeta:
    """Scalar facts about one episode, stored as JSON inside the file.

    ``frame_stride`` ticks between kept frames; ``tick_hz`` simulator rate (20); ``future_offset``
    frames between a frame and its future visual state (``horizon_s * tick_hz / frame_stride``);
    ``waypoint_stride`` frames between trajectory waypoints (``waypoint_dt * tick_hz / frame_stride``).
    ``ego_size`` is (length, width) m. ``status`` is the route's leaderboard status.
    """

    route_id: str
    route_index: int
    repetition: int
    seed: int
    town: str
    scenario: str
    num_frames: int
    num_ticks: int
    cameras: list[str]
    image_format: str  # "png" | "jpg"
    image_shape: list[int]  # [H, W, 3] of the stored images
    tick_hz: float = 20.0
    frame_stride: int = 2
    horizon_s: float = 3.0
    future_offset: int = 30
    num_waypoints: int = 6
    waypoint_dt: float = 0.5
    waypoint_stride: int = 5
    ego_size: list[float] = field(default_factory=lambda: [5.0, 2.0])
    status: str = ""
    label_source: str = "future_poses"
    perturbation: dict[str, Any] = field(default_factory=dict)
    ground_truth: list[str] = field(default_factory=list)  # [] or ["depth", "semantic"]
    # on-policy collection: {"agent": file, "config": agent YAML, "beta": p(expert drives), "window_s": s}
    policy: dict[str, Any] = field(default_factory=dict)
    # camera-rig shift (training.camera_shift): {"lateral_m", "yaw_deg"} of the virtual ego whose frame
    # the labels and ego_pose are in; {} = not shifted
    camera_shift: dict[str, float] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    content_sha256: str = ""

    @classmethod
    def from_json(cls, text: str, where: str) -> "EpisodeMeta":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EpisodeError(f"{where}: meta_json is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise EpisodeError(f"{where}: meta_json is not a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise EpisodeError(f"{where}: meta_json has unknown keys {unknown}")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise EpisodeError(f"{where}: meta_json is missing fields ({exc})") from exc


@dataclass
class Episode:
    """A verified episode in memory: ``meta`` plus the arrays of the table in this module's doc."""

    path: Path
    meta: EpisodeMeta
    arrays: dict[str, np.ndarray]

    @property
    def num_frames(self) -> int:
        return self.meta.num_frames

    def encoded_image(self, frame: int, camera: int) -> bytes:
        """Encoded bytes (PNG/JPEG) of camera ``camera`` at frame ``frame``."""
        j = frame * len(self.meta.cameras) + camera
        off = self.arrays["image_offsets"]
        return self.arrays["image_bytes"][off[j] : off[j + 1]].tobytes()

    def image(self, frame: int, camera: int) -> np.ndarray:
        """Decoded image [H, W, 3] uint8 RGB of camera ``camera`` at frame ``frame``."""
        return decode_image(self.encoded_image(frame, camera), where=f"{self.path} frame {frame} camera {camera}")

    def _ground_truth_bytes(self, channel: str, frame: int, camera: int) -> bytes:
        if channel not in self.meta.ground_truth:
            raise EpisodeError(f"{self.path}: no {channel} ground truth recorded (collect with --ground-truth)")
        j = frame * len(self.meta.cameras) + camera
        off = self.arrays[f"{channel}_offsets"]
        return self.arrays[f"{channel}_bytes"][off[j] : off[j + 1]].tobytes()

    def depth(self, frame: int, camera: int) -> np.ndarray:
        """Planar depth [H, W] float32 metres (655.35 for the sky and beyond) of camera ``camera``."""
        data = decode_png(self._ground_truth_bytes("depth", frame, camera), np.uint16, f"{self.path} depth {frame}/{camera}")
        return data.astype(np.float32) / DEPTH_SCALE_CM

    def semantic(self, frame: int, camera: int) -> np.ndarray:
        """CARLA semantic tags [H, W] uint8 of camera ``camera`` at frame ``frame``."""
        return decode_png(self._ground_truth_bytes("semantic", frame, camera), np.uint8, f"{self.path} semantic {frame}/{camera}")

    def boxes_at(self, frame: int) -> np.ndarray:
        """Other vehicles at ``frame``: [M_i, 5] world x, y, yaw, length, width."""
        off = self.arrays["box_offsets"]
        return self.arrays["boxes"][off[frame] : off[frame + 1]]


def encode_image(rgb: np.ndarray, image_format: str = "png", jpeg_quality: int = 95) -> bytes:
    """Encode an [H, W, 3] uint8 RGB image as PNG or JPEG bytes (stored in standard colour order)."""
    import cv2

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_image expects uint8 [H, W, 3] RGB, got {rgb.dtype} {rgb.shape}")
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if image_format == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    elif image_format == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    if not ok:
        raise ValueError(f"cv2 failed to encode a {rgb.shape} image as {image_format}")
    return buf.tobytes()


def encode_depth_png(depth_m: np.ndarray) -> bytes:
    """[H, W] metres -> 16-bit PNG bytes in centimetres (clipped to 0 ... 655.35 m)."""
    import cv2

    cm = np.clip(np.round(np.asarray(depth_m, np.float64) * DEPTH_SCALE_CM), 0, 65535).astype(np.uint16)
    ok, buf = cv2.imencode(".png", cm)
    if not ok:
        raise ValueError("PNG encoding of a depth image failed")
    return buf.tobytes()


def encode_tags_png(tags: np.ndarray) -> bytes:
    """[H, W] uint8 semantic tags -> 8-bit PNG bytes."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(tags, np.uint8))
    if not ok:
        raise ValueError("PNG encoding of a semantic image failed")
    return buf.tobytes()


def decode_png(data: bytes, dtype: type, where: str) -> np.ndarray:
    """A single-channel PNG of ``dtype`` (uint8 or uint16) -> [H, W] array; EpisodeError if broken."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.dtype != dtype:
        raise EpisodeError(f"{where}: not a single-channel {np.dtype(dtype).name} PNG")
    return img


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Decode PNG/JPEG bytes to [H, W, 3] uint8 RGB."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EpisodeError(f"{where}: image bytes do not decode")
    return np.ascontiguousarray(bgr[..., ::-1])


def content_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array (sorted by name) including name, dtype and shape."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(tuple(a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (what the manifest records per episode)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_arrays(arrays: dict[str, np.ndarray], meta: EpisodeMeta, where: str) -> None:
    bad_channels = sorted(set(meta.ground_truth) - set(GROUND_TRUTH_CHANNELS))
    if bad_channels:
        raise EpisodeError(f"{where}: unknown ground-truth channels {bad_channels}")
    specs = dict(ARRAY_SPECS)
    specs.update({k: v for k, v in GROUND_TRUTH_SPECS.items() if k.split("_")[0] in meta.ground_truth})
    if meta.policy:
        specs.update(ON_POLICY_SPECS)
    missing = sorted(set(specs) - set(arrays))
    if missing:
        raise EpisodeError(f"{where}: missing arrays {missing}")
    extra = sorted(set(arrays) - set(specs))
    if extra:
        raise EpisodeError(f"{where}: unexpected arrays {extra}")
    for name, (dtype, ndim) in specs.items():
        a = arrays[name]
        if str(a.dtype) != dtype or a.ndim != ndim:
            raise EpisodeError(f"{where}: array {name!r} is {a.dtype} ndim {a.ndim}, expected {dtype} ndim {ndim}")
    n, c, t = meta.num_frames, len(meta.cameras), meta.num_waypoints
    for name in PER_FRAME_KEYS + (tuple(ON_POLICY_SPECS) if meta.policy else ()):
        if arrays[name].shape[0] != n:
            raise EpisodeError(f"{where}: array {name!r} has {arrays[name].shape[0]} rows, meta says {n} frames")
    if meta.policy and np.any(arrays["student_drove"] & ~arrays["perturbed"]):
        raise EpisodeError(f"{where}: a frame the student drove is not marked perturbed")
    for name in ("trajectory", "expert_plan"):
        if arrays[name].shape[1:] != (t, 2):
            raise EpisodeError(f"{where}: array {name!r} has shape {arrays[name].shape}, expected [N, {t}, 2]")
    for prefix in ["image", *meta.ground_truth]:
        off = arrays[f"{prefix}_offsets"]
        if off.shape[0] != n * c + 1 or off[0] != 0 or off[-1] != arrays[f"{prefix}_bytes"].shape[0] or np.any(np.diff(off) <= 0):
            raise EpisodeError(f"{where}: {prefix}_offsets do not index {prefix}_bytes for {n} frames x {c} cameras")
    boff = arrays["box_offsets"]
    if boff.shape[0] != n + 1 or boff[0] != 0 or boff[-1] != arrays["boxes"].shape[0] or np.any(np.diff(boff) < 0):
        raise EpisodeError(f"{where}: box_offsets do not index boxes for {n} frames")
    if arrays["boxes"].shape[1] != 5 or arrays["tick_pose"].shape[1] != 4 or arrays["control"].shape[1] != 3:
        raise EpisodeError(f"{where}: boxes/tick_pose/control have wrong widths")
    if arrays["tick_pose"].shape[0] != meta.num_ticks:
        raise EpisodeError(f"{where}: tick_pose has {arrays['tick_pose'].shape[0]} rows, meta says {meta.num_ticks} ticks")
    ff = arrays["future_frame"]
    if np.any((ff < -1) | (ff >= n)):
        raise EpisodeError(f"{where}: future_frame indexes outside [0, {n})")


def write_episode(path: str | Path, meta: EpisodeMeta, arrays: dict[str, np.ndarray]) -> str:
    """Verify and write one episode atomically (``path.tmp`` then rename). Returns the file SHA-256.

    ``meta.content_sha256`` is filled in here. Raises :class:`EpisodeError` if the arrays do not
    match the schema (so a bad episode is never written).
    """
    path = Path(path)
    if path.suffix != EPISODE_SUFFIX:
        raise ValueError(f"episode path must end in {EPISODE_SUFFIX}: {path}")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _check_arrays(arrays, meta, str(path))
    meta.content_sha256 = content_digest(arrays)
    meta_bytes = np.frombuffer(json.dumps(asdict(meta), sort_keys=True).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        np.savez(f, meta_json=meta_bytes, **arrays)
        f.flush()
        os.fsync(f.fileno())
    digest = file_sha256(tmp)
    os.replace(tmp, path)
    return digest


def read_episode(path: str | Path, *, verify: bool = True) -> Episode:
    """Load and verify one episode file.

    Raises:
        EpisodeError: the file is missing, not a complete ``.npz`` (truncated / partial), holds
            pickled objects, has a bad schema or a content checksum that does not match.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise EpisodeError(f"{where}: file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise EpisodeError(f"{where}: not a readable npz archive (truncated or corrupt): {exc}") from exc
    if "meta_json" not in arrays:
        raise EpisodeError(f"{where}: no meta_json")
    meta = EpisodeMeta.from_json(arrays.pop("meta_json").tobytes().decode("utf-8", errors="replace"), where)
    if meta.schema_version != SCHEMA_VERSION:
        raise EpisodeError(f"{where}: schema_version {meta.schema_version}, this reader knows {SCHEMA_VERSION}")
    _check_arrays(arrays, meta, where)
    if verify:
        got = content_digest(arrays)
        if got != meta.content_sha256:
            raise EpisodeError(f"{where}: content checksum mismatch (stored {meta.content_sha256[:12]}, computed {got[:12]})")
    return Episode(path=path, meta=meta, arrays=arrays)


def pack_images(encoded: list[list[bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """Frame-major list of per-camera encoded images -> (``image_bytes``, ``image_offsets``)."""
    flat = [b for frame in encoded for b in frame]
    lengths = np.array([len(b) for b in flat], dtype=np.int64)
    offsets = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.frombuffer(b"".join(flat), dtype=np.uint8) if flat else np.zeros(0, dtype=np.uint8)
    return data.copy(), offsets


def pack_boxes(per_frame: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of [M_i, 5] box arrays -> (``boxes`` [M, 5], ``box_offsets`` [N+1])."""
    counts = np.array([len(b) for b in per_frame], dtype=np.int64)
    offsets = np.zeros(len(per_frame) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    rows = [np.asarray(b, dtype=np.float32).reshape(-1, 5) for b in per_frame]
    boxes = np.concatenate(rows, axis=0) if rows else np.zeros((0, 5), dtype=np.float32)
    return boxes.astype(np.float32), offsets

"""Torch dataset of training samples over verified episodes.

One sample is one kept frame that has (a) a future frame at t + horizon inside its episode (the
horizon recorded at collection, or any multiple of the frame period) and
(b) a full T-waypoint label. Its fields, per sample (collated with a batch dimension B in front):

    images          float32 [C, 3, H, W]  camera images at t, RGB in [0, 1], resized to ``image_size``
    future_images   float32 [C, 3, H, W]  the same cameras at t + horizon (one horizon), or
                    float32 [F, C, 3, H, W] at t + h for each of F horizons (a list of horizons)
    command         int64   []            RoadOption value
    speed           float32 []            m/s
    acceleration    float32 []            m/s^2, longitudinal
    target_point    float32 [2]           ego frame m
    trajectory      float32 [T, 2]        label, ego frame m (see ``perturbed_label``)
    gt_boxes        float32 [T, M, 5]     other vehicles at t + 0.5 s * (j + 1), ego frame of t:
                                          x, y, yaw, length, width (collated: padded M, ``gt_boxes_mask``)
    episode, frame  int64   []            where the sample comes from

With a token cache (:class:`training.token_cache.TokenCache` of a frozen encoder) the images are
replaced by the cached tokens: ``visual_tokens`` float32 [K, D] and ``future_tokens`` float32
[F, K, D]. With ``ground_truth`` (encoder pre-training) a sample also carries ``depth`` float32
[C, H, W] (planar metres) and ``semantic`` int64 [C, H, W] (CARLA tags), resized (nearest) to
``image_size``. With ``with_motion`` (the encoder's ego-motion objective) it carries
``future_position`` float32 [F, 2]: the ego's actual position at each future frame, ego frame of t, m
(x forward, y right; from the recorded ``trajectory``, never the perturbed-label plan). With
``with_future_valid`` it carries ``future_valid`` bool []: False where the label is the expert's plan
(the future was driven by a perturbation or a student), so the future frames show another path.

Images are resized with ``cv2.INTER_AREA`` by :func:`preprocess_image`, which must match what the
agent does at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from training.episodes import Episode
from training.labels import boxes_in_ego


def preprocess_image(rgb: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """[H0, W0, 3] uint8 RGB -> [3, H, W] float32 in [0, 1] at ``image_size`` = (H, W)."""
    import cv2

    h, w = image_size
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0


def frame_images(ep: Episode, frame: int, cameras: Sequence[int], image_size: tuple[int, int]) -> np.ndarray:
    """uint8 [C, 3, H, W]: the stored cameras of one frame, preprocessed and rounded to 8 bits (the
    values every sample and the token cache see, cached or not)."""
    imgs = np.stack([preprocess_image(ep.image(frame, c), image_size) for c in cameras])
    return np.round(np.clip(imgs, 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass
class SampleIndex:
    """Sample ``i`` is frame ``frames[i]`` of episode ``episodes[i]``; ``use_plan[i]`` selects the expert plan label."""

    episodes: np.ndarray  # [S] int64
    frames: np.ndarray  # [S] int64
    use_plan: np.ndarray  # [S] bool


def future_offset(ep: Episode, horizon_s: float | None) -> int:
    """Frames between a frame and its future visual state at ``horizon_s`` (None: as recorded)."""
    if horizon_s is None:
        return ep.meta.future_offset
    n = horizon_s * ep.meta.tick_hz / ep.meta.frame_stride
    if abs(n - round(n)) > 1e-6 or round(n) < 1:
        raise ValueError(
            f"{ep.path}: future horizon {horizon_s} s is not a whole number of frames "
            f"({ep.meta.tick_hz / ep.meta.frame_stride:g} frames/s)"
        )
    return int(round(n))


def future_offsets(ep: Episode, horizon_s: float | Sequence[float] | None) -> list[int]:
    """Frame offsets of the future visual states: one per horizon (a number or None gives one)."""
    if horizon_s is None or isinstance(horizon_s, (int, float)):
        return [future_offset(ep, horizon_s)]
    if not horizon_s:
        raise ValueError("horizons: at least one future horizon is needed")
    return [future_offset(ep, float(h)) for h in horizon_s]


def motion_waypoints(ep: Episode, offsets: Sequence[int]) -> list[int]:
    """Index into the recorded ``trajectory`` (the ego's actual future positions) of each future
    frame offset: where the ego really is when the future frame is taken."""
    out = []
    for off in offsets:
        if off % ep.meta.waypoint_stride or not 1 <= off // ep.meta.waypoint_stride <= ep.meta.num_waypoints:
            raise ValueError(f"{ep.path}: future frame offset {off} is not one of the trajectory's waypoints "
                             f"(every {ep.meta.waypoint_stride} frames, {ep.meta.num_waypoints} of them)")
        out.append(off // ep.meta.waypoint_stride - 1)
    return out


def build_index(
    episodes: Sequence[Episode],
    perturbed_label: Literal["plan", "actual", "drop"] = "plan",
    max_frames: int | None = None,
    horizon_s: float | Sequence[float] | None = None,
) -> SampleIndex:
    """Which frames become samples (see module doc); ``max_frames`` keeps an evenly strided subset;
    ``horizon_s``: time(s) of the future visual state(s) (None: the horizon recorded in each episode)."""
    ep_idx, fr_idx, plan = [], [], []
    for e, ep in enumerate(episodes):
        a = ep.arrays
        ok = (np.arange(ep.num_frames) + max(future_offsets(ep, horizon_s)) < ep.num_frames) & a["trajectory_valid"]
        fut_p = a["future_perturbed"]
        if perturbed_label == "drop":
            ok &= ~fut_p
        use_plan = fut_p & (perturbed_label == "plan")
        if use_plan.any():
            ok &= ~(use_plan & ~np.isfinite(a["expert_plan"]).all(axis=(1, 2)))
        frames = np.nonzero(ok)[0]
        ep_idx.append(np.full(frames.shape, e, dtype=np.int64))
        fr_idx.append(frames.astype(np.int64))
        plan.append(use_plan[frames])
    idx = SampleIndex(
        np.concatenate(ep_idx) if ep_idx else np.zeros(0, np.int64),
        np.concatenate(fr_idx) if fr_idx else np.zeros(0, np.int64),
        np.concatenate(plan) if plan else np.zeros(0, bool),
    )
    n = idx.frames.shape[0]
    if max_frames is not None and n > max_frames:
        keep = np.linspace(0, n - 1, max_frames).round().astype(np.int64)
        idx = SampleIndex(idx.episodes[keep], idx.frames[keep], idx.use_plan[keep])
    return idx


class DrivingDataset(torch.utils.data.Dataset):
    """Samples of :func:`build_index` over ``episodes`` (see module doc for the fields).

    Args:
        episodes: verified episodes (``training.manifest.scan_dataset``).
        image_size: model input (H, W) per camera.
        cameras: names of the stored cameras to use, in the model's order (None = all, stored order).
        perturbed_label: see :class:`training.config.DataConfig`.
        max_frames: keep an evenly strided subset of at most this many samples.
        horizon_s: time of the future visual state (None: as recorded), or a list of times (the
            model's ``config.future.horizons_s``; ``future_images`` then has a frame axis F).
        cache_images: keep decoded, resized images in memory (uint8) after first use.
        with_boxes: include ``gt_boxes`` (validation needs them; training does not).
        preprocess: image preprocessing (default :func:`preprocess_image`).
        tokens: a :class:`training.token_cache.TokenCache` over the same episodes: samples carry
            ``visual_tokens`` / ``future_tokens`` instead of images.
        ground_truth: add each camera's ``depth`` and ``semantic`` ground truth (recorded with
            ``--ground-truth``).
        with_future: add the future frames (images or tokens); False for models that do not use them.
        with_motion: add ``future_position`` (each horizon must be one of the trajectory's waypoints).
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        image_size: tuple[int, int],
        cameras: Sequence[str] | None = None,
        perturbed_label: Literal["plan", "actual", "drop"] = "plan",
        max_frames: int | None = None,
        horizon_s: float | Sequence[float] | None = None,
        cache_images: bool = True,
        with_boxes: bool = True,
        preprocess: Callable[[np.ndarray, tuple[int, int]], np.ndarray] = preprocess_image,
        tokens: Any = None,
        ground_truth: bool = False,
        with_future: bool = True,
        with_motion: bool = False,
        with_future_valid: bool = False,
    ) -> None:
        self.with_future_valid = with_future_valid
        self.episodes = list(episodes)
        self.image_size = tuple(image_size)
        self.index = build_index(self.episodes, perturbed_label, max_frames, horizon_s)
        self.future_offsets = [future_offsets(ep, horizon_s) for ep in self.episodes]
        self.frame_axis = not (horizon_s is None or isinstance(horizon_s, (int, float)))
        self._tokens = None
        self.tokens = tokens
        self.with_motion = with_motion
        self.motion_waypoints = [motion_waypoints(ep, offs) for ep, offs in zip(self.episodes, self.future_offsets)] \
            if with_motion else []
        self.ground_truth = ground_truth
        if ground_truth:
            missing = [str(ep.path) for ep in self.episodes if not {"depth", "semantic"} <= set(ep.meta.ground_truth)]
            if missing:
                raise ValueError(f"ground truth: {len(missing)} episodes were recorded without depth / semantic "
                                 f"ground truth (collect with --ground-truth), e.g. {missing[0]}")
        self.with_future = with_future
        self.preprocess = preprocess
        self.cache_images = cache_images
        self.with_boxes = with_boxes
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._gt_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.camera_ids: list[list[int]] = []
        for ep in self.episodes:
            names = ep.meta.cameras
            if cameras is None:
                self.camera_ids.append(list(range(len(names))))
            else:
                missing = [c for c in cameras if c not in names]
                if missing:
                    raise ValueError(f"{ep.path}: cameras {missing} not recorded (has {names})")
                self.camera_ids.append([names.index(c) for c in cameras])
        ncam = {len(c) for c in self.camera_ids}
        if len(ncam) > 1:
            raise ValueError(f"episodes record different camera counts {sorted(ncam)}; pass `cameras`")
        nwp = {ep.meta.num_waypoints for ep in self.episodes}
        if len(nwp) > 1:
            raise ValueError(f"episodes have different waypoint counts {sorted(nwp)}")
        self.num_waypoints = nwp.pop() if nwp else 0

    @property
    def tokens(self) -> Any:
        """The frozen encoder's token cache (``training.token_cache``), or None: samples carry images."""
        return self._tokens

    @tokens.setter
    def tokens(self, cache: Any) -> None:
        if cache is not None and len(cache) != len(self.episodes):
            raise ValueError(f"tokens: the cache holds {len(cache)} episodes, the dataset {len(self.episodes)}")
        self._tokens = cache

    def __len__(self) -> int:
        return int(self.index.frames.shape[0])

    def _images(self, e: int, frame: int) -> np.ndarray:
        key = (e, frame)
        if key in self._cache:
            return self._cache[key].astype(np.float32) / 255.0
        ep = self.episodes[e]
        if self.preprocess is preprocess_image:
            q = frame_images(ep, frame, self.camera_ids[e], self.image_size)
        else:
            imgs = np.stack([self.preprocess(ep.image(frame, c), self.image_size) for c in self.camera_ids[e]])
            q = np.round(np.clip(imgs, 0.0, 1.0) * 255.0).astype(np.uint8)  # same values cached or not
        if self.cache_images:
            self._cache[key] = q
        return q.astype(np.float32) / 255.0

    def _ground_truth(self, e: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """(depth [C, H, W] float32 m, semantic [C, H, W] int64) at the model's image size (nearest)."""
        import cv2

        key = (e, frame)
        if key in self._gt_cache:
            depth16, tags8 = self._gt_cache[key]
            return depth16.astype(np.float32), tags8.astype(np.int64)
        ep = self.episodes[e]
        h, w = self.image_size
        depth, tags = [], []
        for c in self.camera_ids[e]:
            d, s = ep.depth(frame, c), ep.semantic(frame, c)
            if d.shape != (h, w):
                d = cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)
                s = cv2.resize(s, (w, h), interpolation=cv2.INTER_NEAREST)
            depth.append(d)
            tags.append(s)
        depth16, tags8 = np.stack(depth).astype(np.float16), np.stack(tags).astype(np.uint8)
        if self.cache_images:
            self._gt_cache[key] = (depth16, tags8)  # float16: the same values cached or not
        return depth16.astype(np.float32), tags8.astype(np.int64)

    def gt_boxes(self, e: int, frame: int) -> np.ndarray:
        """[T, M, 5] boxes at each waypoint time in the ego frame of ``frame`` (M = max over T; NaN pads)."""
        ep = self.episodes[e]
        a = ep.arrays
        stride = ep.meta.waypoint_stride
        pose = a["ego_pose"][frame]
        per_t = []
        for j in range(ep.meta.num_waypoints):
            f = frame + (j + 1) * stride
            b = ep.boxes_at(f) if f < ep.num_frames else np.zeros((0, 5), np.float32)
            per_t.append(boxes_in_ego(b, pose[:2], float(pose[2])))
        m = max((len(b) for b in per_t), default=0)
        out = np.full((len(per_t), m, 5), np.nan, dtype=np.float32)
        for j, b in enumerate(per_t):
            out[j, : len(b)] = b
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e = int(self.index.episodes[i])
        f = int(self.index.frames[i])
        ep = self.episodes[e]
        a = ep.arrays
        futures = [f + off for off in self.future_offsets[e]]
        traj = a["expert_plan"][f] if self.index.use_plan[i] else a["trajectory"][f]
        sample: dict[str, torch.Tensor] = {}
        if self.tokens is not None:
            sample["visual_tokens"] = torch.from_numpy(self.tokens.get(e, f))
            if self.with_future:
                sample["future_tokens"] = torch.from_numpy(np.stack([self.tokens.get(e, t) for t in futures]))
        else:
            sample["images"] = torch.from_numpy(self._images(e, f))
            if self.with_future:
                future = [self._images(e, t) for t in futures]
                sample["future_images"] = torch.from_numpy(np.stack(future) if self.frame_axis else future[0])
        if self.with_motion:
            sample["future_position"] = torch.from_numpy(a["trajectory"][f][self.motion_waypoints[e]].astype(np.float32))
        if self.ground_truth:
            depth, tags = self._ground_truth(e, f)
            sample["depth"], sample["semantic"] = torch.from_numpy(depth), torch.from_numpy(tags)
        sample.update({
            "command": torch.tensor(int(a["command"][f]), dtype=torch.int64),
            "speed": torch.tensor(float(a["speed"][f]), dtype=torch.float32),
            "acceleration": torch.tensor(float(a["acceleration"][f]), dtype=torch.float32),
            "target_point": torch.from_numpy(a["target_point"][f].astype(np.float32)),
            "trajectory": torch.from_numpy(np.asarray(traj, dtype=np.float32)),
            "episode": torch.tensor(e, dtype=torch.int64),
            "frame": torch.tensor(f, dtype=torch.int64),
        })
        if self.with_future_valid:
            sample["future_valid"] = torch.tensor(not bool(self.index.use_plan[i]))
        if self.with_boxes:
            sample["gt_boxes"] = torch.from_numpy(self.gt_boxes(e, f))
        return sample

    def recorded(self, key: str) -> np.ndarray:
        """[S, ...] the episode array ``key`` (e.g. "command", "target_point") at each sample's frame."""
        return np.stack([self.episodes[int(e)].arrays[key][int(f)]
                         for e, f in zip(self.index.episodes, self.index.frames)]) if len(self) else np.zeros((0,))

    def recorded_commands(self) -> np.ndarray:
        """[S] int64 the route command recorded with each sample's frame (RoadOption values)."""
        return self.recorded("command").astype(np.int64)

    def all_trajectories(self) -> np.ndarray:
        """[S, T, 2] every sample's label (for fitting the trajectory normaliser), no image decoding."""
        out = np.zeros((len(self), self.num_waypoints, 2), dtype=np.float32)
        for i in range(len(self)):
            e, f = int(self.index.episodes[i]), int(self.index.frames[i])
            a = self.episodes[e].arrays
            out[i] = a["expert_plan"][f] if self.index.use_plan[i] else a["trajectory"][f]
        return out


def turn_repeats(trajectories: np.ndarray, repeat: int, min_lateral_m: float) -> np.ndarray:
    """How often each sample appears per epoch [S] (int64): ``repeat`` for a sample whose labelled
    trajectory [S, T, 2] (ego frame, m) ends at least ``min_lateral_m`` to the side, else 1."""
    if repeat < 1:
        raise ValueError(f"repeat: must be >= 1, got {repeat}")
    if not min_lateral_m > 0:
        raise ValueError(f"min_lateral_m: must be > 0, got {min_lateral_m}")
    turning = np.abs(np.asarray(trajectories)[:, -1, 1]) >= min_lateral_m
    return np.where(turning, repeat, 1).astype(np.int64)


class RepeatedSamples(torch.utils.data.Dataset):
    """``dataset`` with its sample ``i`` listed ``repeats[i]`` times (oversampling of rare frames:
    the trainer's per-epoch permutation then draws it that many times per epoch)."""

    def __init__(self, dataset: Any, repeats: np.ndarray) -> None:
        repeats = np.asarray(repeats, dtype=np.int64)
        if repeats.shape != (len(dataset),) or (repeats < 1).any():
            raise ValueError(f"repeats: expected {len(dataset)} counts >= 1, got shape {repeats.shape}")
        self.dataset = dataset
        self.order = np.repeat(np.arange(len(dataset)), repeats)  # [sum(repeats)] sample ids

    def __len__(self) -> int:
        return int(self.order.size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.dataset[int(self.order[i])]


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples; pad ``gt_boxes`` (when present) to the batch's largest M (NaN) and add
    ``gt_boxes_mask`` [B, T, M]."""
    out: dict[str, torch.Tensor] = {}
    for key in samples[0]:
        if key != "gt_boxes":
            out[key] = torch.stack([s[key] for s in samples])
    if "gt_boxes" not in samples[0]:
        return out
    t = samples[0]["gt_boxes"].shape[0]
    m = max(int(s["gt_boxes"].shape[1]) for s in samples)
    boxes = torch.full((len(samples), t, m, 5), float("nan"))
    for b, s in enumerate(samples):
        boxes[b, :, : s["gt_boxes"].shape[1]] = s["gt_boxes"]
    out["gt_boxes"] = boxes
    out["gt_boxes_mask"] = torch.isfinite(boxes).all(dim=-1)
    return out

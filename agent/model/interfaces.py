"""Typed inputs and outputs of the model family (the contract with the agent and the trainer).

Frames and units follow docs/architecture.md: ego frame x forward, y RIGHT, metres; speeds m/s;
accelerations m/s^2; trajectories are T waypoints at 2 Hz, the first 0.5 s ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


def _check_tensor(name: str, value: object, ndim: int) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dims, got shape {tuple(value.shape)}")
    return value


def _float_to(value: torch.Tensor | None, device: torch.device | str) -> torch.Tensor | None:
    return None if value is None else value.to(device=device, dtype=torch.float32)


@dataclass
class DrivingInputs:
    """What the model reads at one tick (a batch of B samples).

    Attributes:
        images: float [B, N_cam, 3, H, W], RGB in [0, 1], cameras in the rig's order.
        command: int64 [B], leaderboard RoadOption value (-1 VOID, 1 LEFT, 2 RIGHT, 3 STRAIGHT,
            4 LANEFOLLOW, 5 CHANGELANELEFT, 6 CHANGELANERIGHT).
        speed: float [B], m/s.
        acceleration: float [B], m/s^2, longitudinal (forward +).
        target_point: float [B, 2], next route target in the ego frame (x forward, y right), m.
        visual_tokens: optional float [B, K, D_vision], the frozen vision encoder's tokens of
            ``images``, computed earlier (a token cache). When given, the model reads them instead of
            running its encoder, and ``images`` may be ``None``.
    """

    images: torch.Tensor | None
    command: torch.Tensor
    speed: torch.Tensor
    acceleration: torch.Tensor
    target_point: torch.Tensor
    visual_tokens: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.command.shape[0])

    def validate(self, num_cameras: int, image_size: tuple[int, int], token_shape: tuple[int, int] | None = None) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first field that does not fit the model.

        ``token_shape``: (K, D_vision) of the model, checked against ``visual_tokens`` when given."""
        command = _check_tensor("command", self.command, 1)
        b = command.shape[0]
        if self.visual_tokens is not None:
            tokens = _check_tensor("visual_tokens", self.visual_tokens, 3)
            if tokens.shape[0] != b or (token_shape is not None and tuple(tokens.shape[1:]) != tuple(token_shape)):
                want = "K, D" if token_shape is None else f"K={token_shape[0]}, D={token_shape[1]}"
                raise ValueError(f"visual_tokens: expected shape [B={b}, {want}], got {tuple(tokens.shape)}")
        if self.images is None:
            if self.visual_tokens is None:
                raise ValueError("images: None, and no visual_tokens were given instead")
        else:
            images = _check_tensor("images", self.images, 5)
            expected = (b, num_cameras, 3, image_size[0], image_size[1])
            if tuple(images.shape) != expected:
                raise ValueError(
                    f"images: expected shape [B, N_cam={num_cameras}, 3, H={image_size[0]}, W={image_size[1]}], "
                    f"got {tuple(images.shape)}"
                )
            if not images.is_floating_point():
                raise TypeError(f"images: expected a float tensor with values in [0, 1], got {images.dtype}")
        if command.is_floating_point() or command.dtype == torch.bool:
            raise TypeError(f"command: expected an integer tensor (RoadOption), got {command.dtype}")
        for name in ("command", "speed", "acceleration"):
            value = _check_tensor(name, getattr(self, name), 1)
            if value.shape[0] != b:
                raise ValueError(f"{name}: expected shape [B={b}], got {tuple(value.shape)}")
        target = _check_tensor("target_point", self.target_point, 2)
        if tuple(target.shape) != (b, 2):
            raise ValueError(f"target_point: expected shape [B={b}, 2], got {tuple(target.shape)}")
        for name in ("speed", "acceleration", "target_point"):
            value = getattr(self, name)
            if not value.is_floating_point():
                raise TypeError(f"{name}: expected a float tensor, got {value.dtype}")

    def to(self, device: torch.device | str) -> "DrivingInputs":
        """A copy of the inputs on ``device`` (images and numbers as float32, command as int64)."""
        return DrivingInputs(
            images=_float_to(self.images, device),
            command=self.command.to(device=device, dtype=torch.int64),
            speed=self.speed.to(device=device, dtype=torch.float32),
            acceleration=self.acceleration.to(device=device, dtype=torch.float32),
            target_point=self.target_point.to(device=device, dtype=torch.float32),
            visual_tokens=_float_to(self.visual_tokens, device),
        )


@dataclass
class TrainingBatch(DrivingInputs):
    """A training batch: the :class:`DrivingInputs` fields plus the supervision.

    Attributes:
        future_images: float [B, F, N_cam, 3, H, W] in [0, 1], the same cameras at each of the
            model's F future horizons ``future.horizons_s`` (the target of the future-state loss); a
            [B, N_cam, 3, H, W] tensor is one future frame (F = 1). May be ``None`` for the shortcut
            baseline, which does not use it, or when ``future_tokens`` are given.
        future_tokens: optional float [B, F, K, D_vision], the frozen encoder's tokens of the future
            frames (a token cache), used instead of ``future_images``.
        trajectory: float [B, T, 2], the expert's future waypoints in the CURRENT ego frame
            (x forward, y right), m, at t = waypoint_dt, 2 * waypoint_dt, ...
        future_valid: optional bool [B]: whether the future frames show the labelled trajectory
            being driven. False where the label is the expert's plan from a state whose future
            another driver made (a perturbation, a DAgger student). Such samples get no
            future-state loss and no ground-truth teacher forcing. None: every sample is valid.
    """

    future_images: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    future_tokens: torch.Tensor | None = None
    future_valid: torch.Tensor | None = None

    @property
    def inputs(self) -> DrivingInputs:
        return DrivingInputs(**{f.name: getattr(self, f.name) for f in fields(DrivingInputs)})

    def validate_batch(self, num_cameras: int, image_size: tuple[int, int], num_waypoints: int, need_future: bool,
                       num_future_frames: int = 1, token_shape: tuple[int, int] | None = None) -> None:
        """Check the inputs and the supervision tensors; raise naming the bad field."""
        self.validate(num_cameras, image_size, token_shape)
        b = self.batch_size
        trajectory = _check_tensor("trajectory", self.trajectory, 3)
        if tuple(trajectory.shape) != (b, num_waypoints, 2):
            raise ValueError(f"trajectory: expected shape [B={b}, T={num_waypoints}, 2], got {tuple(trajectory.shape)}")
        if self.future_valid is not None and tuple(self.future_valid.shape) != (b,):
            raise ValueError(f"future_valid: expected shape [B={b}], got {tuple(self.future_valid.shape)}")
        if not need_future:
            return
        f = num_future_frames
        if self.future_tokens is not None:
            tokens = _check_tensor("future_tokens", self.future_tokens, 4)
            if tokens.shape[:2] != (b, f) or (token_shape is not None and tuple(tokens.shape[2:]) != tuple(token_shape)):
                raise ValueError(f"future_tokens: expected shape [B={b}, F={f}, K, D], got {tuple(tokens.shape)}")
            return
        if self.images is None:
            raise ValueError("future_tokens: needed with visual_tokens instead of images")
        future = self.future_images
        if isinstance(future, torch.Tensor) and future.ndim == 5 and f == 1:
            future = future[:, None]
        future = _check_tensor("future_images", future, 6)
        if tuple(future.shape) != (b, f, *self.images.shape[1:]):
            raise ValueError(
                f"future_images: expected [B, F={f}] + the image shape {tuple(self.images.shape[1:])}, "
                f"got {tuple(self.future_images.shape)}"
            )

    def to(self, device: torch.device | str) -> "TrainingBatch":
        moved = DrivingInputs.to(self, device)
        return TrainingBatch(
            **{f.name: getattr(moved, f.name) for f in fields(DrivingInputs)},
            future_images=_float_to(self.future_images, device),
            trajectory=_float_to(self.trajectory, device),
            future_tokens=_float_to(self.future_tokens, device),
            future_valid=None if self.future_valid is None else self.future_valid.to(device=device, dtype=torch.bool),
        )


@dataclass
class PlanOutput:
    """What the pipeline returns for one call.

    Attributes:
        trajectory: float32 [B, T, 2], planned waypoints in the ego frame (x forward, y right), m,
            at t = waypoint_dt, 2 * waypoint_dt, ... (2 Hz by default).
        future_tokens: float32 [B, F K, D_vision], the VLA's predicted visual tokens of the F future
            frames, frame-major (K = N_cam * P); ``None`` for the shortcut baseline.
        timings: wall-clock milliseconds per stage: "encoder", "vla", "ik_net" (all denoising steps;
            the regression head for the shortcut baseline) and "total".
    """

    trajectory: torch.Tensor
    future_tokens: torch.Tensor | None
    timings: dict[str, float]


@dataclass
class LossOutput:
    """Training loss.

    Attributes:
        loss: scalar tensor with gradient, the weighted sum the trainer back-propagates.
        terms: detached float scalars for logging. IK model: "future_state", "trajectory" (diffusion
            loss), "future_gt_fraction" (share of samples whose IK net saw ground-truth future
            tokens). Shortcut: "trajectory".
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]

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
    """

    images: torch.Tensor
    command: torch.Tensor
    speed: torch.Tensor
    acceleration: torch.Tensor
    target_point: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])

    def validate(self, num_cameras: int, image_size: tuple[int, int]) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first field that does not fit the model."""
        images = _check_tensor("images", self.images, 5)
        b = images.shape[0]
        expected = (b, num_cameras, 3, image_size[0], image_size[1])
        if tuple(images.shape) != expected:
            raise ValueError(
                f"images: expected shape [B, N_cam={num_cameras}, 3, H={image_size[0]}, W={image_size[1]}], "
                f"got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise TypeError(f"images: expected a float tensor with values in [0, 1], got {images.dtype}")
        command = _check_tensor("command", self.command, 1)
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
            images=self.images.to(device=device, dtype=torch.float32),
            command=self.command.to(device=device, dtype=torch.int64),
            speed=self.speed.to(device=device, dtype=torch.float32),
            acceleration=self.acceleration.to(device=device, dtype=torch.float32),
            target_point=self.target_point.to(device=device, dtype=torch.float32),
        )


@dataclass
class TrainingBatch(DrivingInputs):
    """A training batch: the :class:`DrivingInputs` fields plus the supervision.

    Attributes:
        future_images: float [B, N_cam, 3, H, W] in [0, 1], the same cameras
            ``future.horizon_s`` seconds later (the target of the future-state loss). May be
            ``None`` for the shortcut baseline, which does not use it.
        trajectory: float [B, T, 2], the expert's future waypoints in the CURRENT ego frame
            (x forward, y right), m, at t = waypoint_dt, 2 * waypoint_dt, ...
    """

    future_images: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None

    @property
    def inputs(self) -> DrivingInputs:
        return DrivingInputs(**{f.name: getattr(self, f.name) for f in fields(DrivingInputs)})

    def validate_batch(self, num_cameras: int, image_size: tuple[int, int], num_waypoints: int, need_future: bool) -> None:
        """Check the inputs and the supervision tensors; raise naming the bad field."""
        self.validate(num_cameras, image_size)
        b = self.batch_size
        trajectory = _check_tensor("trajectory", self.trajectory, 3)
        if tuple(trajectory.shape) != (b, num_waypoints, 2):
            raise ValueError(f"trajectory: expected shape [B={b}, T={num_waypoints}, 2], got {tuple(trajectory.shape)}")
        if need_future:
            future = _check_tensor("future_images", self.future_images, 5)
            if future.shape != self.images.shape:
                raise ValueError(
                    f"future_images: expected the shape of images {tuple(self.images.shape)}, got {tuple(future.shape)}"
                )

    def to(self, device: torch.device | str) -> "TrainingBatch":
        moved = DrivingInputs.to(self, device)
        return TrainingBatch(
            **{f.name: getattr(moved, f.name) for f in fields(DrivingInputs)},
            future_images=None if self.future_images is None else self.future_images.to(device=device, dtype=torch.float32),
            trajectory=None if self.trajectory is None else self.trajectory.to(device=device, dtype=torch.float32),
        )


@dataclass
class PlanOutput:
    """What the pipeline returns for one call.

    Attributes:
        trajectory: float32 [B, T, 2], planned waypoints in the ego frame (x forward, y right), m,
            at t = waypoint_dt, 2 * waypoint_dt, ... (2 Hz by default).
        future_tokens: float32 [B, K, D_vision], the VLA's predicted visual tokens of the future frame
            (K = N_cam * P); ``None`` for the shortcut baseline.
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

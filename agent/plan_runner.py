"""Calls the model pipeline for one tick: numpy in, a checked ego-frame trajectory out.

This module imports torch; the agent imports it only in ``setup``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agent.model import DrivingInputs


class PlanError(RuntimeError):
    """The model returned something unusable (wrong shape, NaN/inf)."""


@dataclass(frozen=True)
class Plan:
    """One model plan.

    Attributes:
        trajectory: float64 [T, 2], waypoints in the ego frame of the tick that made it (m, x forward,
            y right), 0.5 s apart, the first 0.5 s ahead.
        timings: stage latencies in ms (the pipeline's own plus "call": the whole call here).
    """

    trajectory: np.ndarray
    timings: dict[str, float]


def model_geometry(pipeline: Any) -> tuple[int, tuple[int, int], int, float]:
    """(num_cameras, (H, W), num_waypoints, waypoint_dt s) of a pipeline, from ``pipeline.config``."""
    config = pipeline.config
    size = tuple(int(v) for v in config.image_size)
    return int(config.num_cameras), (size[0], size[1]), int(config.num_waypoints), float(config.waypoint_dt)


class PlanRunner:
    """Runs ``pipeline`` on one sample with a seeded generator (reproducible per route)."""

    def __init__(self, pipeline: Any, device: str = "cpu", num_inference_steps: int | None = None,
                 seed: int = 0, num_samples: int = 1) -> None:
        self.pipeline = pipeline
        self.device = torch.device(device)
        self.num_inference_steps = num_inference_steps
        self.num_samples = int(num_samples)
        self.num_cameras, self.image_size, self.num_waypoints, self.waypoint_dt = model_geometry(pipeline)
        self.seed = int(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)

    def warm_up(self) -> Plan:
        """One plan on blank inputs (first-call allocations happen here, and a setting the model
        rejects, e.g. too many diffusion steps, fails here), then the generator is re-seeded."""
        blank = np.zeros((self.num_cameras, self.image_size[0], self.image_size[1], 3), dtype=np.uint8)
        plan = self.plan(blank, 4, 0.0, 0.0, np.array([10.0, 0.0]))
        self.generator.manual_seed(self.seed)
        return plan

    def plan(self, images: np.ndarray, command: int, speed: float, acceleration: float,
             target_point: np.ndarray) -> Plan:
        """Plan from uint8 RGB ``images`` [N_cam, H, W, 3], a RoadOption ``command``, ``speed`` (m/s),
        ``acceleration`` (m/s^2) and ``target_point`` [2] (ego frame, m)."""
        start = time.perf_counter()
        expected = (self.num_cameras, self.image_size[0], self.image_size[1], 3)
        if images.shape != expected or images.dtype != np.uint8:
            raise PlanError(f"images: expected uint8 {expected}, got {images.dtype} {images.shape}")
        with torch.inference_mode():
            pixels = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            inputs = DrivingInputs(
                images=pixels.unsqueeze(0),  # [1, N_cam, 3, H, W]
                command=torch.tensor([int(command)], dtype=torch.int64, device=self.device),
                speed=torch.tensor([float(speed)], dtype=torch.float32, device=self.device),
                acceleration=torch.tensor([float(acceleration)], dtype=torch.float32, device=self.device),
                target_point=torch.as_tensor(np.asarray(target_point, dtype=np.float32).reshape(1, 2),
                                             device=self.device),
            )
            output = self.pipeline(inputs, num_inference_steps=self.num_inference_steps, generator=self.generator,
                                   num_samples=self.num_samples)
            trajectory = output.trajectory.detach().to("cpu", torch.float64).numpy()
        if trajectory.shape != (1, self.num_waypoints, 2):
            raise PlanError(f"trajectory: expected shape (1, {self.num_waypoints}, 2), got {trajectory.shape}")
        if not np.isfinite(trajectory).all():
            raise PlanError("trajectory contains NaN or inf")
        timings = {k: float(v) for k, v in dict(getattr(output, "timings", {}) or {}).items()}
        timings["call"] = (time.perf_counter() - start) * 1e3
        return Plan(trajectory=trajectory[0], timings=timings)

"""Runs the model pipeline on plan requests: numpy in, checked ego-frame trajectories out.

The in-process planner backend, and the model server's engine (agent/serve.py): both call
:meth:`PlanRunner.run_batch`, so the same request gives the same plan in both modes. Each request
draws its diffusion noise from its own generator seeded with ``request.seed``.

This module imports torch: the agent imports it only in ``setup`` of the in-process mode.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from agent.model import DrivingInputs
from agent.planning import ModelGeometry, Plan, PlanError, PlanRequest

__all__ = ["Plan", "PlanError", "PlanRunner", "model_geometry"]


def model_geometry(pipeline: Any) -> ModelGeometry:
    """The :class:`ModelGeometry` of a pipeline, from ``pipeline.config``."""
    config = pipeline.config
    size = tuple(int(v) for v in config.image_size)
    return ModelGeometry(num_cameras=int(config.num_cameras), image_size=(size[0], size[1]),
                         num_waypoints=int(config.num_waypoints), waypoint_dt=float(config.waypoint_dt))


class PlanRunner:
    """Plans for :class:`PlanRequest` s with ``pipeline`` on ``device`` (a planner backend)."""

    def __init__(self, pipeline: Any, device: str = "cpu") -> None:
        self.pipeline = pipeline
        self.device = torch.device(device)
        self.geometry = model_geometry(pipeline)
        self.num_cameras = self.geometry.num_cameras
        self.image_size = self.geometry.image_size
        self.num_waypoints = self.geometry.num_waypoints
        self.waypoint_dt = self.geometry.waypoint_dt

    def run(self, request: PlanRequest) -> Plan:
        """The plan of one request; :class:`PlanError` when the model's output is unusable."""
        result = self.run_batch([request])[0]
        if isinstance(result, PlanError):
            raise result
        return result

    def run_batch(self, requests: Sequence[PlanRequest]) -> list[Plan | PlanError]:
        """Plans of requests with the same ``settings`` (steps, samples, slowest fraction), in one model call.

        One result per request: its :class:`Plan`, or a :class:`PlanError` when its trajectory is not
        finite. A request that does not fit the model, or a model exception, raises for the batch."""
        if not requests:
            return []
        settings = requests[0].settings
        for request in requests:
            request.check(self.geometry)
            if request.settings != settings:
                raise PlanError(f"a batch needs one (num_inference_steps, num_samples, slowest_fraction), got {settings} "
                                f"and {request.settings}")
        start = time.perf_counter()
        batch = len(requests)
        with torch.inference_mode():
            images = torch.from_numpy(np.stack([r.images for r in requests]))  # [B, N_cam, H, W, 3]
            pixels = images.to(self.device).permute(0, 1, 4, 2, 3).float().div_(255.0)
            targets = np.stack([np.asarray(r.target_point, dtype=np.float32) for r in requests])
            inputs = DrivingInputs(
                images=pixels,  # [B, N_cam, 3, H, W]
                command=torch.tensor([int(r.command) for r in requests], dtype=torch.int64, device=self.device),
                speed=torch.tensor([float(r.speed) for r in requests], dtype=torch.float32, device=self.device),
                acceleration=torch.tensor([float(r.acceleration) for r in requests], dtype=torch.float32,
                                          device=self.device),
                target_point=torch.from_numpy(targets).to(self.device),
            )
            generators = [torch.Generator(device=self.device).manual_seed(int(r.seed)) for r in requests]
            output = self.pipeline(inputs, num_inference_steps=settings[0], generator=generators,
                                   num_samples=settings[1], slowest_fraction=settings[2])
            trajectory = output.trajectory.detach().to("cpu", torch.float64).numpy()
        expected = (batch, self.num_waypoints, 2)
        if trajectory.shape != expected:
            raise PlanError(f"trajectory: expected shape {expected}, got {trajectory.shape}")
        timings = {k: float(v) for k, v in dict(getattr(output, "timings", {}) or {}).items()}
        timings["call"] = (time.perf_counter() - start) * 1e3
        results: list[Plan | PlanError] = []
        for row in trajectory:
            if np.isfinite(row).all():
                results.append(Plan(trajectory=row.copy(), timings=dict(timings)))
            else:
                results.append(PlanError("trajectory contains NaN or inf"))
        return results

    def close(self) -> None:
        """Release the model (and the CUDA cache when it ran on a GPU)."""
        self.pipeline = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

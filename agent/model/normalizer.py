"""Trajectory normalisation whose statistics live in the state dict (saved with the checkpoint)."""

from __future__ import annotations

import torch
from torch import nn


class TrajectoryNormalizer(nn.Module):
    """Per-waypoint, per-axis standardisation of ego-frame trajectories.

    ``normalize(x) = (x - mean) / std`` with ``mean``, ``std`` of shape [T, 2] fitted from data, so
    each waypoint coordinate has zero mean and unit variance, matching the unit-variance Gaussian
    noise of the diffusion process. Standard deviations are floored at ``min_std`` metres (a lane
    keeping data set has almost no lateral spread at the first waypoint).

    Buffers (persistent, in the state dict): ``mean`` [T, 2] m, ``std`` [T, 2] m, ``fitted`` bool
    scalar. Before :meth:`fit` the map is the identity and ``is_fitted`` is False.
    """

    def __init__(self, num_waypoints: int, min_std: float = 1e-2) -> None:
        super().__init__()
        if num_waypoints < 1:
            raise ValueError(f"num_waypoints: must be >= 1, got {num_waypoints}")
        if not min_std > 0:
            raise ValueError(f"min_std: must be > 0, got {min_std}")
        self.num_waypoints = num_waypoints
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(num_waypoints, 2))
        self.register_buffer("std", torch.ones(num_waypoints, 2))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def _check(self, name: str, x: torch.Tensor) -> None:
        if x.ndim < 2 or tuple(x.shape[-2:]) != (self.num_waypoints, 2):
            raise ValueError(f"{name}: expected shape [..., T={self.num_waypoints}, 2], got {tuple(x.shape)}")

    @torch.no_grad()
    def fit(self, trajectories: torch.Tensor) -> None:
        """Fit mean and std from ego-frame trajectories [N, T, 2] (m), N >= 2, all finite."""
        if not isinstance(trajectories, torch.Tensor):
            trajectories = torch.as_tensor(trajectories)
        self._check("trajectories", trajectories)
        if trajectories.ndim != 3 or trajectories.shape[0] < 2:
            raise ValueError(f"trajectories: expected [N >= 2, T, 2], got {tuple(trajectories.shape)}")
        data = trajectories.detach().to(device=self.mean.device, dtype=torch.float64)
        if not torch.isfinite(data).all():
            raise ValueError("trajectories: contain NaN or inf")
        self.mean.copy_(data.mean(dim=0).to(self.mean.dtype))
        self.std.copy_(data.std(dim=0).clamp_min(self.min_std).to(self.std.dtype))
        self.fitted.fill_(True)

    def normalize(self, trajectory: torch.Tensor) -> torch.Tensor:
        """Metres [..., T, 2] -> normalised units [..., T, 2]."""
        self._check("trajectory", trajectory)
        return (trajectory - self.mean) / self.std

    def unnormalize(self, normalized: torch.Tensor) -> torch.Tensor:
        """Normalised units [..., T, 2] -> metres [..., T, 2] (ego frame)."""
        self._check("normalized", normalized)
        return normalized * self.std + self.mean

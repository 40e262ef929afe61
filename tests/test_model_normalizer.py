"""Trajectory normaliser: fit, round trip, state dict."""

from __future__ import annotations

import pytest
import torch

from agent.model import TrajectoryNormalizer


def test_fit_standardises_each_waypoint_and_round_trips():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(200, 6, 2, generator=g) * torch.tensor([4.0, 0.5]) + torch.tensor([10.0, -1.0])
    norm = TrajectoryNormalizer(6)
    assert not norm.is_fitted
    norm.fit(data)
    assert norm.is_fitted
    z = norm.normalize(data)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(6, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=0), torch.ones(6, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(norm.unnormalize(z), data, atol=1e-5, rtol=1e-5)


def test_statistics_live_in_the_state_dict():
    norm = TrajectoryNormalizer(4)
    norm.fit(torch.arange(40, dtype=torch.float32).view(5, 4, 2))
    state = norm.state_dict()
    assert set(state) == {"mean", "std", "fitted"}
    other = TrajectoryNormalizer(4)
    other.load_state_dict(state)
    assert other.is_fitted and torch.equal(other.mean, norm.mean) and torch.equal(other.std, norm.std)


def test_constant_axis_uses_the_std_floor():
    data = torch.zeros(10, 3, 2)
    data[..., 0] = torch.arange(10, dtype=torch.float32)[:, None]
    norm = TrajectoryNormalizer(3, min_std=0.01)
    norm.fit(data)
    assert torch.all(norm.std[:, 1] == 0.01)
    assert torch.isfinite(norm.normalize(data)).all()


def test_bad_inputs_raise():
    norm = TrajectoryNormalizer(6)
    with pytest.raises(ValueError, match="T=6"):
        norm.fit(torch.zeros(10, 5, 2))
    with pytest.raises(ValueError, match="N >= 2"):
        norm.fit(torch.zeros(1, 6, 2))
    bad = torch.zeros(4, 6, 2)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        norm.fit(bad)
    with pytest.raises(ValueError, match="trajectory"):
        norm.normalize(torch.zeros(2, 6, 3))

"""The collapse check for visual tokens."""

from __future__ import annotations

import pytest
import torch

from agent.model import build_preset, collapse_stats, effective_rank, is_collapsed


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_healthy_tokens_are_not_collapsed():
    tokens = torch.randn(16, 32, 24, generator=gen())
    stats = collapse_stats(tokens)
    assert stats["relative_frame_std"] > 0.5
    assert stats["effective_rank"] > 15
    assert not is_collapsed(stats)


def test_constant_tokens_across_frames_are_collapsed_even_if_positions_differ():
    per_position = torch.randn(1, 32, 24, generator=gen())
    tokens = per_position.expand(16, -1, -1) + 1e-4 * torch.randn(16, 32, 24, generator=gen(1))
    stats = collapse_stats(tokens)
    assert stats["relative_frame_std"] < 1e-3
    assert stats["mean_dim_std"] > 0.5  # positions still differ: per-dim std alone would miss it
    assert is_collapsed(stats)


def test_variation_along_one_direction_is_collapsed():
    base = torch.randn(1, 32, 24, generator=gen())
    direction = torch.randn(24, generator=gen(1))
    amount = torch.randn(16, 32, 1, generator=gen(2))
    stats = collapse_stats(base + amount * direction)
    assert stats["relative_frame_std"] > 0.05  # frames do differ ...
    assert stats["effective_rank"] < 1.5  # ... but only along one direction
    assert is_collapsed(stats)


def test_all_zero_tokens_are_collapsed():
    stats = collapse_stats(torch.zeros(4, 8, 8))
    assert stats["effective_rank"] == 0.0 and stats["relative_frame_std"] == 0.0
    assert is_collapsed(stats)


def test_effective_rank_of_known_matrices():
    assert effective_rank(torch.eye(5)) == pytest.approx(5.0)
    assert effective_rank(torch.ones(6, 4)) == pytest.approx(1.0)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="N_frames"):
        collapse_stats(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="2 frames"):
        collapse_stats(torch.zeros(1, 8, 8))


def test_tiny_random_encoder_tokens_are_healthy_on_varied_images():
    model = build_preset("tiny")
    with torch.no_grad():
        tokens = model.vision(torch.rand(8, 1, 3, 128, 128, generator=gen()))
    assert not is_collapsed(collapse_stats(tokens))

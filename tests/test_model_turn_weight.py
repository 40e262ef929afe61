"""The turn-weighted future-state loss: turning samples weigh more in the VLA's future-token loss."""

from __future__ import annotations

import pytest
import torch

from agent.model import build_preset, future_state_loss
from agent.model.configuration import FutureStateConfig
from agent.model.modeling import turn_weights
from tests.test_model_ik import build, make_batch

torch.set_num_threads(1)


def _trajectories(lateral_end_m: list[float]) -> torch.Tensor:
    t = torch.zeros(len(lateral_end_m), 6, 2)
    t[..., 0] = torch.arange(1, 7).float() * 4.0
    for i, y in enumerate(lateral_end_m):
        t[i, :, 1] = torch.linspace(0.0, y, 6)
    return t


def test_turn_weights_grow_with_the_lateral_offset_and_average_one():
    assert turn_weights(_trajectories([0.0, 9.0]), 0.0, 5.0) is None
    w = turn_weights(_trajectories([0.0, 2.5, -5.0, 20.0]), 4.0, 5.0)
    assert torch.allclose(w.mean(), torch.tensor(1.0))
    # raw weights 1, 3, 5, 5: half the scale gets half the extra weight, beyond the scale it is capped
    assert torch.allclose(w / w[0], torch.tensor([1.0, 3.0, 5.0, 5.0]))


def test_weighted_future_loss_is_the_plain_mean_with_equal_weights_and_follows_the_weights():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    for kind in ("mse", "cosine"):
        plain = future_state_loss(pred, target, kind)
        assert torch.allclose(future_state_loss(pred, target, kind, torch.ones(3)), plain)
        per_sample = torch.stack([future_state_loss(pred[i:i + 1], target[i:i + 1], kind) for i in range(3)])
        w = torch.tensor([0.5, 0.5, 2.0])
        assert torch.allclose(future_state_loss(pred, target, kind, w), (per_sample * w).mean())
    with pytest.raises(ValueError, match="sample_weights"):
        future_state_loss(pred, target, "mse", torch.ones(2))


def test_the_model_weighs_the_turning_sample_of_a_batch():
    plain, weighted = build(seed=3), build(seed=3, future_turn_weight=4.0)
    assert weighted.config.future.turn_weight == 4.0 and plain.config.future.turn_weight == 0.0
    batch = make_batch(plain.config, 2)
    batch.trajectory = _trajectories([0.0, 8.0])
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    with torch.no_grad():
        current, target = plain.batch_tokens(batch)
        ids, mask = plain.tokenize(batch)
        pred = plain.vla(ids, mask, current)
        per_sample = [future_state_loss(pred[i:i + 1], target[i:i + 1], "mse") for i in range(2)]
        a = plain.compute_loss(batch, generator=gen()).terms["future_state"]
        b = weighted.compute_loss(batch, generator=gen()).terms["future_state"]
    assert torch.allclose(a, (per_sample[0] + per_sample[1]) / 2)
    assert torch.allclose(b, (per_sample[0] * 1 / 3 + per_sample[1] * 5 / 3) / 2)  # raw weights 1 and 5


def test_turn_weight_settings_are_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match="turn_weight"):
        FutureStateConfig(turn_weight=-1.0)
    with pytest.raises(ValueError, match="turn_scale_m"):
        FutureStateConfig(turn_scale_m=0.0)
    model = build_preset("tiny", seed=0, image_size=(32, 32), future_turn_weight=2.0)
    model.normalizer.fit(torch.randn(8, 6, 2))
    model.save_pretrained(tmp_path / "m")
    from agent.model.pipeline import load_model

    assert load_model(tmp_path / "m").config.future.turn_weight == 2.0

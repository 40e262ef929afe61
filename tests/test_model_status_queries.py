"""The prompt's numbers as a vector added to the LLM's queries (``LLMConfig.status_queries``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from agent.model import build_preset
from agent.model.interfaces import DrivingInputs, TrainingBatch
from agent.model.tokenization import STATUS_SIZE, status_features

B = 4


def _inputs(model, **changes) -> DrivingInputs:
    k, d = model.token_shape
    g = torch.Generator().manual_seed(3)
    fields = dict(images=None, command=torch.tensor([4, 1, 2, -1]), speed=torch.tensor([0.0, 5.0, 12.0, 30.0]),
                  acceleration=torch.tensor([0.0, -1.0, 2.0, 40.0]),
                  target_point=torch.tensor([[10.0, 0.0], [16.0, -11.5], [16.0, 11.5], [200.0, -300.0]]),
                  visual_tokens=torch.randn(B, k, d, generator=g))
    fields.update(changes)
    return DrivingInputs(**fields)


def _model(kind: str = "ik", status: bool = True, seed: int = 0):
    model = build_preset("tiny", seed=seed, model_type="shortcut" if kind == "shortcut" else None,
                         image_size=(32, 32), future_horizons_s=(1.0,) if kind == "ik" else None,
                         status_queries=status)
    model.set_vision_frozen(True)
    model.normalizer.fit(torch.randn(64, 6, 2).cumsum(dim=1))
    return model.eval()


def test_status_features_are_the_scaled_prompt_numbers():
    f = status_features(torch.tensor([4, 1, 2, -1]), torch.tensor([0.0, 5.0, 12.0, 30.0]),
                        torch.tensor([0.0, -1.0, 2.0, 40.0]),
                        torch.tensor([[10.0, 0.0], [16.0, -11.5], [16.0, 11.5], [200.0, -300.0]]))
    assert f.shape == (B, STATUS_SIZE) and f.dtype == torch.float32
    # one-hot over LEFT, RIGHT, STRAIGHT, LANEFOLLOW, CHANGELANELEFT, CHANGELANERIGHT; VOID = LANEFOLLOW
    assert f[:, :6].argmax(dim=1).tolist() == [3, 0, 1, 3] and f[:, :6].sum(dim=1).tolist() == [1.0] * B
    assert f[1, 6:].tolist() == pytest.approx([0.5, -0.2, 0.8, -0.575])
    assert f[3, 6:].tolist() == pytest.approx([3.0, 5.0, 5.0, -5.0])  # clipped to +-5
    with pytest.raises(ValueError, match="unknown RoadOption value"):
        status_features(torch.tensor([7]), torch.zeros(1), torch.zeros(1), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="target_y: status numbers must be finite"):
        status_features(torch.tensor([4]), torch.zeros(1), torch.zeros(1), torch.tensor([[1.0, float("nan")]]))


@pytest.mark.parametrize("kind", ["ik", "shortcut"])
def test_zero_projector_plans_as_the_model_without_it_and_a_trained_one_reads_the_route(kind):
    plain, status = _model(kind, status=False), _model(kind, status=True)
    missing, unexpected = status.load_state_dict(plain.state_dict(), strict=False)
    prefix = "vla.reader." if kind == "ik" else "vla."
    assert not unexpected and sorted(missing) == [prefix + "status_projector.bias", prefix + "status_projector.weight"]
    inputs = _inputs(plain)
    ids, mask = plain.tokenize(inputs)
    current = inputs.visual_tokens
    assert plain.prompt_status(inputs) is None
    with torch.no_grad():
        base = plain.vla(ids, mask, current)
        same = status.vla(ids, mask, current, status.prompt_status(inputs))
        assert torch.equal(base, same)
        projector = (status.vla.reader if kind == "ik" else status.vla).status_projector
        projector.weight.normal_(std=0.5)
        moved = status.vla(ids, mask, current, status.prompt_status(inputs))
        assert not torch.allclose(moved, base)
        # the same text prompt with another status vector: only the direct path changes the output
        other = status.prompt_status(_inputs(plain, target_point=torch.zeros(B, 2)))
        assert not torch.allclose(status.vla(ids, mask, current, other), moved)
        with pytest.raises(ValueError, match="status: this LLM adds the prompt's numbers"):
            status.vla(ids, mask, current)
        with pytest.raises(ValueError, match="built without status_queries"):
            plain.vla(ids, mask, current, other)


def test_training_reaches_the_projector_and_a_save_keeps_it(tmp_path):
    from agent.model.modeling import IKDriveModel

    model = _model("ik").train()
    inputs = _inputs(model)
    k, d = model.token_shape
    batch = TrainingBatch(**{f.name: getattr(inputs, f.name) for f in dataclasses.fields(DrivingInputs)},
                          trajectory=torch.randn(B, 6, 2).cumsum(dim=1), future_tokens=torch.randn(B, 1, k, d))
    model.compute_loss(batch, torch.Generator().manual_seed(0)).loss.backward()
    grad = model.vla.reader.status_projector.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    with torch.no_grad():
        model.vla.reader.status_projector.weight.normal_()
    model.save_pretrained(tmp_path / "m")
    loaded = IKDriveModel.from_pretrained(tmp_path / "m")
    assert loaded.config.llm.status_queries is True
    assert torch.equal(loaded.vla.reader.status_projector.weight, model.vla.reader.status_projector.weight)


def test_init_from_adds_the_projector_to_a_saved_model(tmp_path):
    from training.config import ConfigError
    from training.train import adapt_saved_model

    plain = _model("ik", status=False)
    adapted = adapt_saved_model(plain, {"status_queries": True, "future_turn_weight": 2.0})
    assert adapted.config.llm.status_queries and adapted.config.future.turn_weight == 2.0
    inputs = _inputs(plain)
    ids, mask = plain.tokenize(inputs)
    with torch.no_grad():
        assert torch.equal(plain.vla(ids, mask, inputs.visual_tokens),
                           adapted.vla(ids, mask, inputs.visual_tokens, adapted.prompt_status(inputs)))
    assert adapt_saved_model(plain, {}) is plain
    with pytest.raises(ConfigError, match="does not fit"):
        adapt_saved_model(adapted, {"status_queries": False})  # the trained projector would be dropped
    with pytest.raises(ConfigError, match="only for an IK model"):
        adapt_saved_model(_model("shortcut", status=False), {"future_turn_weight": 1.0})
    graded = adapt_saved_model(plain, {"ik_future_gradient": 1.0})
    assert graded.config.ik_net.future_gradient == 1.0 and graded.config.ik_net == dataclasses.replace(
        plain.config.ik_net, future_gradient=1.0)
    assert all(torch.equal(a, b) for a, b in zip(graded.state_dict().values(), plain.state_dict().values()))
    with pytest.raises(ConfigError, match="ik_future_gradient: only for an IK model"):
        adapt_saved_model(_model("shortcut", status=False), {"ik_future_gradient": 1.0})

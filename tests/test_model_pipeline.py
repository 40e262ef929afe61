"""Tiny IK model and shortcut baseline end to end: shapes, determinism, checkpoints, padding."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from agent.model import (
    CheckpointError,
    DrivingInputs,
    IKDriveModel,
    IKDrivePipeline,
    PlanOutput,
    ShortcutModel,
    ShortcutPipeline,
    TrainingBatch,
    build_pipeline,
    build_preset,
    load_pipeline,
)
from agent.model.checkpoint import WEIGHTS_NAME

torch.set_num_threads(1)


def make_inputs(config, batch: int, seed: int = 0) -> DrivingInputs:
    g = torch.Generator().manual_seed(seed)
    h, w = config.image_size
    return DrivingInputs(
        images=torch.rand(batch, config.num_cameras, 3, h, w, generator=g),
        command=torch.randint(1, 7, (batch,), generator=g),
        speed=torch.rand(batch, generator=g) * 12.0,
        acceleration=torch.randn(batch, generator=g),
        target_point=torch.randn(batch, 2, generator=g) * 10.0,
    )


def fitted(model):
    g = torch.Generator().manual_seed(1)
    model.normalizer.fit(torch.randn(64, model.config.num_waypoints, 2, generator=g).cumsum(dim=1) * 2.0)
    return model


@pytest.fixture(scope="module")
def ik_model() -> IKDriveModel:
    return fitted(build_preset("tiny", seed=0))


@pytest.fixture(scope="module")
def shortcut_model() -> ShortcutModel:
    return fitted(build_preset("tiny", seed=0, model_type="shortcut"))


def test_ik_pipeline_output_shapes_and_timings(ik_model):
    pipe = build_pipeline(ik_model)
    assert isinstance(pipe, IKDrivePipeline)
    cfg = pipe.config
    assert (cfg.num_cameras, cfg.image_size, cfg.num_waypoints, cfg.waypoint_dt) == (1, (128, 128), 6, 0.5)
    out = pipe(make_inputs(cfg, 3), generator=torch.Generator().manual_seed(0))
    assert isinstance(out, PlanOutput)
    assert out.trajectory.shape == (3, 6, 2) and out.trajectory.dtype == torch.float32
    assert out.future_tokens.shape == (3, 64, 128)
    assert torch.isfinite(out.trajectory).all() and torch.isfinite(out.future_tokens).all()
    assert set(out.timings) == {"encoder", "vla", "ik_net", "total"}
    assert all(v >= 0 for v in out.timings.values())
    parts = out.timings["encoder"] + out.timings["vla"] + out.timings["ik_net"]
    assert out.timings["total"] >= parts * 0.999


def test_multi_camera_tiny_shapes():
    model = fitted(build_preset("tiny", num_cameras=3, image_size=(96, 160)))
    out = build_pipeline(model)(make_inputs(model.config, 2), generator=torch.Generator().manual_seed(0))
    assert out.trajectory.shape == (2, 6, 2)
    assert out.future_tokens.shape == (2, 3 * 6 * 10, 128)


def test_same_generator_seed_gives_identical_plans_and_different_seeds_differ(ik_model):
    pipe = build_pipeline(ik_model)
    inputs = make_inputs(pipe.config, 2)
    a = pipe(inputs, generator=torch.Generator().manual_seed(7)).trajectory
    b = pipe(inputs, generator=torch.Generator().manual_seed(7)).trajectory
    c = pipe(inputs, generator=torch.Generator().manual_seed(8)).trajectory
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_num_inference_steps_is_used_and_validated(ik_model):
    pipe = build_pipeline(ik_model)
    inputs = make_inputs(pipe.config, 1)
    one = pipe(inputs, num_inference_steps=1, generator=torch.Generator().manual_seed(0)).trajectory
    four = pipe(inputs, num_inference_steps=4, generator=torch.Generator().manual_seed(0)).trajectory
    assert not torch.equal(one, four)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="num_inference_steps"):
            pipe(inputs, num_inference_steps=bad)


def test_bad_inputs_name_the_field(ik_model):
    pipe = build_pipeline(ik_model)
    good = make_inputs(pipe.config, 2)
    with pytest.raises(ValueError, match="images"):
        pipe(DrivingInputs(torch.rand(2, 2, 3, 128, 128), good.command, good.speed, good.acceleration, good.target_point))
    with pytest.raises(ValueError, match="target_point"):
        pipe(DrivingInputs(good.images, good.command, good.speed, good.acceleration, torch.zeros(2, 3)))
    with pytest.raises(TypeError, match="command"):
        pipe(DrivingInputs(good.images, good.command.float(), good.speed, good.acceleration, good.target_point))
    with pytest.raises(ValueError, match="speed"):
        pipe(DrivingInputs(good.images, good.command, torch.zeros(3), good.acceleration, good.target_point))


def test_prompt_padding_does_not_change_a_sample(ik_model):
    """A sample planned alone equals the same sample batched with a longer (more padded) prompt."""
    pipe = build_pipeline(ik_model)
    inputs = make_inputs(pipe.config, 2)
    inputs.command = torch.tensor([4, 6])  # "follow lane" is shorter than "change lane right"
    inputs.speed = torch.tensor([1.0, 12.5])
    inputs.target_point = torch.tensor([[1.0, 0.0], [-120.5, -45.5]])
    batched = pipe(inputs, generator=torch.Generator().manual_seed(0))
    ids, mask = ik_model.tokenize(inputs)
    assert mask[0].sum() < mask[1].sum()  # sample 0 is padded
    first = DrivingInputs(*(getattr(inputs, f)[:1] for f in ("images", "command", "speed", "acceleration", "target_point")))
    alone = pipe(first, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(alone.future_tokens[0], batched.future_tokens[0], rtol=1e-4, atol=1e-4)


def test_save_load_round_trip_gives_identical_outputs(ik_model, tmp_path):
    path = ik_model.save_pretrained(tmp_path / "ik-tiny")
    names = {p.name for p in path.iterdir()}
    assert {"config.json", WEIGHTS_NAME, "tokenizer.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    assert "normalizer.mean" in load_file(str(path / WEIGHTS_NAME))
    pipe = load_pipeline(path, device="cpu")
    assert isinstance(pipe, IKDrivePipeline)
    assert pipe.model.normalizer.is_fitted
    inputs = make_inputs(ik_model.config, 2)
    a = build_pipeline(ik_model)(inputs, generator=torch.Generator().manual_seed(3))
    b = pipe(inputs, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.trajectory, b.trajectory)
    assert torch.equal(a.future_tokens, b.future_tokens)


def test_save_replaces_a_checkpoint_but_refuses_other_folders(ik_model, tmp_path):
    target = tmp_path / "ckpt"
    ik_model.save_pretrained(target)
    ik_model.save_pretrained(target)  # replacing a checkpoint is fine
    assert (target / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp folders left behind
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="refusing"):
        ik_model.save_pretrained(other)
    assert (other / "keep.txt").is_file()


def test_strict_load_names_missing_and_unexpected_tensors(ik_model, tmp_path):
    path = ik_model.save_pretrained(tmp_path / "ckpt")
    weights = path / WEIGHTS_NAME
    state = load_file(str(weights))
    del state["ik_net.out.weight"]
    state["ik_net.extra_head.weight"] = torch.zeros(2)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\): ik_net\.out\.weight") as info:
        load_pipeline(path)
    assert "ik_net.extra_head.weight" in str(info.value)


def test_strict_load_names_shape_mismatch(ik_model, tmp_path):
    path = ik_model.save_pretrained(tmp_path / "ckpt")
    weights = path / WEIGHTS_NAME
    state = load_file(str(weights))
    state["normalizer.mean"] = torch.zeros(5, 2)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="normalizer.mean"):
        load_pipeline(path)


def test_loading_as_the_wrong_class_or_a_broken_config_fails(ik_model, tmp_path):
    path = ik_model.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="ik_drive"):
        ShortcutModel.from_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["ik_net"]["num_inference_steps"] = 0
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="num_inference_steps"):
        load_pipeline(path)


def test_shortcut_pipeline_shapes_and_round_trip(shortcut_model, tmp_path):
    pipe = build_pipeline(shortcut_model)
    assert isinstance(pipe, ShortcutPipeline)
    inputs = make_inputs(pipe.config, 2)
    out = pipe(inputs, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert out.trajectory.shape == (2, 6, 2) and out.future_tokens is None
    assert set(out.timings) == {"encoder", "vla", "ik_net", "total"}
    loaded = load_pipeline(shortcut_model.save_pretrained(tmp_path / "shortcut"))
    assert isinstance(loaded, ShortcutPipeline)
    assert torch.equal(loaded(inputs).trajectory, out.trajectory)


def test_shortcut_loss_trains_the_llm_and_head():
    model = fitted(build_preset("tiny", model_type="shortcut", seed=0)).train()
    inputs = make_inputs(model.config, 2)
    batch = TrainingBatch(**vars(inputs), future_images=None, trajectory=torch.randn(2, 6, 2))
    out = model.compute_loss(batch)
    assert set(out.terms) == {"trajectory"} and out.loss.ndim == 0 and out.loss > 0
    out.loss.backward()
    assert model.head[0].weight.grad.abs().sum() > 0
    assert model.vla.llm.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert model.vla.projector.weight.grad.abs().sum() > 0


def test_pipeline_restores_training_mode(ik_model):
    ik_model.train()
    try:
        build_pipeline(ik_model)(make_inputs(ik_model.config, 1))
        assert ik_model.training
    finally:
        ik_model.eval()


def test_loss_requires_a_fitted_normalizer():
    model = build_preset("tiny")
    inputs = make_inputs(model.config, 1)
    batch = TrainingBatch(**vars(inputs), future_images=inputs.images, trajectory=torch.zeros(1, 6, 2))
    with pytest.raises(RuntimeError, match="normalizer"):
        model.compute_loss(batch)


def test_num_samples_averages_diffusion_draws(ik_model, shortcut_model):
    pipe = build_pipeline(ik_model)
    inputs = make_inputs(ik_model.config, 2)

    def plan(seed, samples):
        return pipe(inputs, generator=torch.Generator().manual_seed(seed), num_samples=samples).trajectory

    one = plan(3, 1)
    assert torch.equal(one, pipe(inputs, generator=torch.Generator().manual_seed(3)).trajectory)
    many = plan(3, 8)
    assert many.shape == one.shape and torch.equal(many, plan(3, 8))
    # The mean of 8 draws varies less across noise seeds than a single draw does.
    spread_one = torch.stack([plan(s, 1) for s in range(6)]).std(dim=0).mean()
    spread_many = torch.stack([plan(s, 8) for s in range(6)]).std(dim=0).mean()
    assert spread_many < 0.6 * spread_one
    with pytest.raises(ValueError, match="num_samples"):
        pipe(inputs, num_samples=0)
    # The shortcut's head is deterministic: every sample is the same plan.
    sc = build_pipeline(shortcut_model)
    sc_inputs = make_inputs(shortcut_model.config, 2)
    assert torch.equal(sc(sc_inputs, num_samples=4).trajectory, sc(sc_inputs).trajectory)


def test_reduce_samples_keeps_the_slowest_draws():
    from agent.model.pipeline import reduce_samples

    t = torch.arange(1, 7, dtype=torch.float32)
    speeds = torch.tensor([4.0, 1.0, 3.0, 2.0])  # m per waypoint; draw 1 is the slowest
    lateral = torch.tensor([0.0, 1.0, -1.0, 2.0])
    samples = torch.stack([torch.stack([v * t, torch.full_like(t, y)], dim=-1) for v, y in zip(speeds, lateral)])[None]
    assert torch.equal(reduce_samples(samples, 1.0), samples.mean(dim=1))  # the default: every draw
    assert torch.allclose(reduce_samples(samples, 0.5), samples[:, [1, 3]].mean(dim=1))  # speeds 1 and 2
    assert torch.equal(reduce_samples(samples, 0.25), samples[:, 1])
    assert torch.equal(reduce_samples(samples, 0.3), reduce_samples(samples, 0.5))  # ceil(0.3 x 4) = 2 draws
    # Inputs of a batch are reduced independently.
    both = torch.cat([samples, samples.flip(1)])
    assert torch.equal(reduce_samples(both, 0.25), samples[:, 1].expand(2, -1, -1))
    for bad in (0.0, 1.5, True, "half"):
        with pytest.raises(ValueError, match="slowest_fraction"):
            reduce_samples(samples, bad)


def test_the_pipeline_reduces_its_draws_with_slowest_fraction(ik_model, monkeypatch):
    import agent.model.pipeline as pipeline_module

    pipe = build_pipeline(ik_model)
    inputs = make_inputs(ik_model.config, 2)

    def plan(**kw):
        return pipe(inputs, generator=torch.Generator().manual_seed(7), num_samples=4, **kw).trajectory

    mean = plan()
    assert torch.equal(plan(slowest_fraction=1.0), mean)
    seen = []
    original = pipeline_module.reduce_samples
    monkeypatch.setattr(pipeline_module, "reduce_samples", lambda x, f: seen.append((x.clone(), f)) or original(x, f))
    slow = plan(slowest_fraction=0.25)
    (draws, fraction), = seen
    assert draws.shape == (2, 4, 6, 2) and fraction == 0.25
    assert torch.allclose(draws.mean(dim=1), mean, atol=1e-5)  # the same four draws
    assert torch.equal(slow, original(draws, 0.25)) and not torch.allclose(slow, mean)
    with pytest.raises(ValueError, match="slowest_fraction"):
        pipe(inputs, num_samples=4, slowest_fraction=0.0)


def test_decode_is_the_ik_half_of_the_pipeline(ik_model):
    pipe = build_pipeline(ik_model)
    inputs = make_inputs(ik_model.config, 2)
    out = pipe(inputs, generator=torch.Generator().manual_seed(5), num_samples=3)
    with torch.inference_mode():
        current = ik_model.vision(inputs.images)
    decoded = pipe.decode(current, out.future_tokens, generator=torch.Generator().manual_seed(5), num_samples=3)
    assert torch.allclose(decoded, out.trajectory, atol=1e-5)
    # other future tokens, other plan: the IK net reads them
    other = pipe.decode(current, torch.zeros_like(out.future_tokens), generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(other, pipe.decode(current, out.future_tokens, generator=torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="num_samples"):
        pipe.decode(current, out.future_tokens, num_samples=0)

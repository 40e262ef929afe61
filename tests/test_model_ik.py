"""The IK model's grounding properties: what the IK net can see, and where gradients flow."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from agent.model import DrivingInputs, IKDriveModel, IKNet, TrainingBatch, build_pipeline, build_preset
from agent.model.configuration import IKNetConfig

torch.set_num_threads(1)


def make_batch(config, batch: int, seed: int = 0) -> TrainingBatch:
    g = torch.Generator().manual_seed(seed)
    h, w = config.image_size
    shape = (batch, config.num_cameras, 3, h, w)
    return TrainingBatch(
        images=torch.rand(shape, generator=g),
        command=torch.randint(1, 7, (batch,), generator=g),
        speed=torch.rand(batch, generator=g) * 12.0,
        acceleration=torch.randn(batch, generator=g),
        target_point=torch.randn(batch, 2, generator=g) * 10.0,
        future_images=torch.rand(shape, generator=g),
        trajectory=torch.randn(batch, config.num_waypoints, 2, generator=g).cumsum(dim=1),
    )


def build(seed: int = 0, **overrides) -> IKDriveModel:
    model = build_preset("tiny", seed=seed, **overrides)
    g = torch.Generator().manual_seed(5)
    model.normalizer.fit(torch.randn(32, model.config.num_waypoints, 2, generator=g).cumsum(dim=1))
    return model.train()


def grad_norm(module: torch.nn.Module) -> float:
    return float(sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None))


def test_ik_net_forward_takes_only_tensors_of_trajectory_time_and_tokens():
    params = inspect.signature(IKNet.forward).parameters
    assert list(params) == ["self", "noisy_traj", "timestep", "current_tokens", "future_tokens"]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in list(params.values())[1:])
    with pytest.raises(TypeError):
        IKNet(IKNetConfig(hidden_size=32, num_layers=1, num_heads=2), 16, 4, 6)(
            torch.zeros(1, 6, 2), torch.zeros(1), torch.zeros(1, 4, 16), torch.zeros(1, 4, 16), speed=torch.zeros(1)
        )


def test_trajectory_ignores_ego_status_and_command_when_visual_tokens_are_fixed():
    """Changing speed/command/target changes the prompt and so the VLA's prediction; fixing the
    visual tokens fed to the IK net, the plan must not move at all."""
    model = build().eval()
    batch = make_batch(model.config, 2)
    with torch.no_grad():
        current = model.vision(batch.images)
        ids, mask = model.tokenize(batch)
        future = model.vla(ids, mask, current)
        changed = dataclasses.replace(
            batch.inputs, command=torch.tensor([2, 5]), speed=batch.speed + 7.0,
            acceleration=batch.acceleration - 2.0, target_point=batch.target_point * -1.0,
        )
        ids2, mask2 = model.tokenize(changed)
        future2 = model.vla(ids2, mask2, current)
        assert not torch.allclose(future, future2)  # the prompt does reach the VLA

        x = torch.randn(2, 6, 2, generator=torch.Generator().manual_seed(0))
        t = torch.tensor([10, 500])
        out = model.ik_net(x, t, current, future)
        # Same visual tokens, whatever the ego status: the IK net has no other input.
        assert torch.equal(out, model.ik_net(x, t, current.clone(), future.clone()))
        # Different visual tokens (current or future) do change the output.
        assert not torch.allclose(out, model.ik_net(x, t, current + 0.5 * torch.randn_like(current), future))
        assert not torch.allclose(out, model.ik_net(x, t, current, future2))


def test_plan_changes_when_only_the_image_changes():
    model = build().eval()
    pipe = build_pipeline(model)
    batch = make_batch(model.config, 1)
    inputs = batch.inputs
    a = pipe(inputs, generator=torch.Generator().manual_seed(0))
    other = dataclasses.replace(inputs, images=torch.rand_like(inputs.images))
    b = pipe(other, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a.trajectory, b.trajectory)


def test_trajectory_loss_gradients_do_not_reach_the_vla_or_encoder():
    model = build(teacher_forcing="predicted")
    # Back-propagate the diffusion (trajectory) term alone.
    loss_traj = _trajectory_term(model, make_batch(model.config, 2))
    loss_traj.backward()
    assert grad_norm(model.ik_net) > 0
    assert grad_norm(model.vla) == 0.0
    assert grad_norm(model.vision) == 0.0
    # ... while the future-state term does train the VLA and the (trainable) encoder.
    model.zero_grad(set_to_none=True)
    out = model.compute_loss(make_batch(model.config, 2), generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert grad_norm(model.vla) > 0 and grad_norm(model.vision.backbone) > 0


def _trajectory_term(model: IKDriveModel, batch: TrainingBatch) -> torch.Tensor:
    """compute_loss with the future-state weight set to zero: only the trajectory term has gradient."""
    cfg = model.config
    model.config = dataclasses.replace(cfg, future=dataclasses.replace(cfg.future, loss_weight=0.0))
    try:
        out = model.compute_loss(batch, generator=torch.Generator().manual_seed(0))
    finally:
        model.config = cfg
    assert out.terms["trajectory"] > 0
    return out.loss


def test_future_gradient_carries_the_trajectory_loss_into_the_vla_alone():
    """ik_future_gradient > 0: the trajectory term reaches the VLA through the predicted future,
    scaled exactly by the setting; the loss values do not change."""
    batch = make_batch(build().config, 2)
    grads, losses = {}, {}
    for scale in (0.0, 1.0, 3.0):
        model = build(teacher_forcing="predicted", ik_future_gradient=scale)
        loss = _trajectory_term(model, batch)
        loss.backward()
        grads[scale] = [p.grad.clone() if p.grad is not None else None for p in model.vla.parameters()]
        losses[scale] = float(loss)
        # A trainable encoder gets it only through the VLA's input tokens.
        assert (grad_norm(model.vision) > 0) == (scale > 0)
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in grads[0.0])
    assert losses[0.0] == losses[1.0] == losses[3.0]
    pairs = [(a, b) for a, b in zip(grads[1.0], grads[3.0]) if a is not None and float(a.abs().sum()) > 0]
    assert pairs, "the VLA got no gradient from the trajectory term"
    for a, b in pairs:
        torch.testing.assert_close(b, 3.0 * a, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="future_gradient"):
        IKNetConfig(future_gradient=-1.0)


def test_future_gradient_never_reaches_through_ground_truth_futures():
    model = build(teacher_forcing="ground_truth", ik_future_gradient=1.0)
    _trajectory_term(model, make_batch(model.config, 2)).backward()
    assert grad_norm(model.vla) == 0.0 and grad_norm(model.ik_net) > 0


def test_future_state_target_receives_no_gradient():
    model = build()  # trainable encoder: the current frame's tokens do carry gradient
    batch = make_batch(model.config, 2)
    batch.images.requires_grad_(True)
    batch.future_images.requires_grad_(True)
    out = model.compute_loss(batch, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert batch.images.grad is not None and batch.images.grad.abs().sum() > 0
    assert batch.future_images.grad is None


def test_frozen_encoder_gets_no_gradient_and_stays_in_eval_mode():
    model = build(freeze_vision=True)
    assert model.vision_frozen and not model.vision.backbone.training
    out = model.compute_loss(make_batch(model.config, 2), generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert all(p.grad is None for p in model.vision.backbone.parameters())
    assert grad_norm(model.vla) > 0
    model.set_vision_frozen(False)
    assert model.vision.backbone.training and not model.config.vision.freeze
    model.set_vision_frozen(True)
    assert model.config.vision.freeze


@pytest.mark.parametrize(("mode", "prob", "expected"), [("ground_truth", 0.5, 1.0), ("predicted", 0.5, 0.0), ("mix", 1.0, 1.0), ("mix", 0.0, 0.0)])
def test_teacher_forcing_modes(mode, prob, expected):
    model = build(teacher_forcing=mode, teacher_forcing_gt_prob=prob)
    out = model.compute_loss(make_batch(model.config, 4), generator=torch.Generator().manual_seed(0))
    assert float(out.terms["future_gt_fraction"]) == expected


def test_teacher_forcing_mix_selects_per_sample():
    model = build()
    target = torch.zeros(64, 3, 5)
    predicted = torch.ones(64, 3, 5, requires_grad=True)
    chosen, flags = model.teacher_forced_future(target, predicted, torch.Generator().manual_seed(0))
    assert not chosen.requires_grad
    per_sample = chosen[:, 0, 0]
    assert torch.equal(per_sample, 1.0 - flags)  # gt (0) where flagged, prediction (1) elsewhere
    assert 0 < flags.sum() < 64


def test_compute_loss_is_deterministic_with_a_generator():
    model = build().eval()  # eval: no dropout anywhere
    batch = make_batch(model.config, 3)
    a = model.compute_loss(batch, generator=torch.Generator().manual_seed(11))
    b = model.compute_loss(batch, generator=torch.Generator().manual_seed(11))
    c = model.compute_loss(batch, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a.loss, b.loss)
    assert not torch.equal(a.terms["trajectory"], c.terms["trajectory"])


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_both_future_losses_and_prediction_types_train(loss):
    for prediction_type in ("sample", "epsilon"):
        model = build(future_loss=loss, prediction_type=prediction_type)
        out = model.compute_loss(make_batch(model.config, 2), generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out.loss) and out.terms["future_state"] > 0
        out.loss.backward()
        assert grad_norm(model.ik_net) > 0


def test_a_few_steps_reduce_the_loss_on_one_batch():
    model = build(seed=1)
    batch = make_batch(model.config, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(12):
        out = model.compute_loss(batch, generator=torch.Generator().manual_seed(step % 2))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert min(losses[-3:]) < losses[0]


def test_missing_future_images_are_reported():
    model = build()
    batch = make_batch(model.config, 1)
    batch.future_images = None
    with pytest.raises(TypeError, match="future_images"):
        model.compute_loss(batch)


def test_driving_inputs_are_a_subset_of_training_batch_fields():
    names = [f.name for f in dataclasses.fields(DrivingInputs)]
    batch_names = [f.name for f in dataclasses.fields(TrainingBatch)]
    assert batch_names == names + ["future_images", "trajectory", "future_tokens", "future_valid"]


def test_future_target_is_the_eval_mode_encoder_output_while_training():
    """With DINOv3's RoPE augmentation on and the encoder training, only the current frame jitters."""
    base = build_preset("tiny")
    cfg = base.config
    vision = dataclasses.replace(cfg.vision, backbone=dict(cfg.vision.backbone, pos_embed_rescale=2.0))
    model = IKDriveModel(dataclasses.replace(cfg, vision=vision), base.tokenizer).train()
    batch = make_batch(model.config, 2)
    torch.manual_seed(0)
    current_a, target_a = model.encode_frames(batch.images, batch.future_images)
    current_b, target_b = model.encode_frames(batch.images, batch.future_images)
    assert model.vision.backbone.training  # restored
    assert not torch.allclose(current_a, current_b)  # augmentation is active for the current frame
    assert torch.equal(target_a, target_b)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(target_a, model.vision(batch.future_images))


def test_token_matcher_reads_a_known_shift_of_the_grid():
    """Future tokens = current tokens moved one row down the grid: with a sharp softmax, every token
    whose match is inside the grid finds it one row down, same column, with a peaked weight."""
    from agent.model.ik_net import TokenMatcher

    torch.manual_seed(0)
    matcher = TokenMatcher(vision_size=32, width=16, heads=2, grid=(1, 4, 4))
    with torch.no_grad():
        matcher.log_scale.fill_(3.0)
    captured = {}
    matcher.out.register_forward_hook(lambda m, inp, out: captured.update(feats=inp[0]))
    current = torch.randn(1, 16, 32)
    future = torch.roll(current.view(1, 4, 4, 32), shifts=1, dims=1).reshape(1, 16, 32)
    out = matcher(current, future)
    assert out.shape == (1, 16, 16)
    feats = captured["feats"].view(4, 4, 2, 3)  # [rows, cols, heads, (d_row, d_col, peak)]
    interior = feats[:3]  # rows 0-2 moved to rows 1-3 (row 3 wrapped to row 0)
    assert torch.allclose(interior[..., 0], torch.ones_like(interior[..., 0]), atol=0.05)
    assert torch.allclose(interior[..., 1], torch.zeros_like(interior[..., 1]), atol=0.05)
    assert (interior[..., 2] > 0.9).all()


def test_matcher_and_memory_layers_change_the_plan_and_keep_shapes():
    base = build().eval()
    rich = build(ik_flow_heads=2, ik_memory_layers=1).eval()
    assert rich.config.ik_net.flow_heads == 2 and rich.config.ik_net.memory_layers == 1
    assert rich.ik_net.matcher is not None and len(rich.ik_net.memory_blocks) == 1
    assert base.ik_net.matcher is None and len(base.ik_net.memory_blocks) == 0
    batch = make_batch(rich.config, 2)
    out = build_pipeline(rich)(
        DrivingInputs(batch.images, batch.command, batch.speed, batch.acceleration, batch.target_point),
        generator=torch.Generator().manual_seed(0),
    )
    assert out.trajectory.shape == (2, rich.config.num_waypoints, 2) and torch.isfinite(out.trajectory).all()
    # The matcher is fed by both frames: changing only the future tokens changes its features.
    current = torch.randn(1, 64, 128)
    a = rich.ik_net.matcher(current, torch.randn(1, 64, 128))
    b = rich.ik_net.matcher(current, torch.randn(1, 64, 128))
    assert not torch.allclose(a, b)


def test_ik_net_config_errors_name_the_field():
    with pytest.raises(ValueError, match="memory_layers"):
        IKNetConfig(memory_layers=-1)
    with pytest.raises(ValueError, match="flow_heads"):
        IKNetConfig(flow_heads=1.5)
    with pytest.raises(ValueError, match="token_grid"):
        IKNet(IKNetConfig(hidden_size=32, num_layers=1, num_heads=2, flow_heads=1), 16, 4, 6, token_grid=(1, 3, 3))
    with pytest.raises(ValueError, match="patch_size"):
        build_preset("0.5b-random", patch_size=8)


def test_several_future_frames_and_cached_tokens_give_the_same_loss():
    """F = 3 future frames: the VLA predicts 3 K tokens, the IK net reads all of them, and a batch
    carrying the frozen encoder's cached tokens gives exactly the loss of the same batch's images."""
    model = build_preset("tiny", seed=0, future_horizons_s=(1.0, 2.0, 3.0), freeze_vision=True)
    k, d = model.token_shape
    assert model.config.future.num_queries == 3 * k
    assert model.ik_net.type_embedding.num_embeddings == 4
    g = torch.Generator().manual_seed(0)
    b = 2
    images = torch.rand(b, 1, 3, 128, 128, generator=g)
    future = torch.rand(b, 3, 1, 3, 128, 128, generator=g)
    traj = torch.cumsum(torch.rand(b, 6, 2, generator=g), dim=1)
    model.normalizer.fit(traj)
    common = dict(command=torch.tensor([4, 1]), speed=torch.tensor([5.0, 8.0]), acceleration=torch.zeros(b),
                  target_point=torch.tensor([[20.0, 0.0], [15.0, -3.0]]), trajectory=traj)
    from_images = model.compute_loss(TrainingBatch(images=images, future_images=future, **common),
                                      generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = model.vision(images)
        future_tokens = model.vision(future.flatten(0, 1)).view(b, 3, k, d)
    cached = model.compute_loss(TrainingBatch(images=None, visual_tokens=tokens, future_tokens=future_tokens, **common),
                                generator=torch.Generator().manual_seed(1))
    assert torch.allclose(from_images.loss, cached.loss, atol=1e-5)
    with pytest.raises(ValueError, match="future_tokens"):
        model.compute_loss(TrainingBatch(images=None, visual_tokens=tokens, future_tokens=future_tokens[:, :2], **common))
    with pytest.raises(ValueError, match="future_images"):
        model.compute_loss(TrainingBatch(images=images, future_images=future[:, :2], **common))


def test_precomputed_memory_keys_values_give_the_same_prediction():
    model = build_preset("tiny", seed=0, future_horizons_s=(1.0, 3.0))
    net = model.ik_net.eval()
    g = torch.Generator().manual_seed(0)
    k, d = model.token_shape
    cur, fut = torch.randn(2, k, d, generator=g), torch.randn(2, 2 * k, d, generator=g)
    memory = net.encode_memory(cur, fut)
    x = torch.randn(6, 6, 2, generator=g)
    t = torch.tensor([10, 10, 10, 500, 500, 500])
    plain = net.denoise(x, t, memory.repeat_interleave(3, dim=0))
    cached = net.denoise(x, t, None, memory_kv=net.memory_keys_values(memory, repeats=3))
    assert torch.allclose(plain, cached, atol=1e-5)
    with pytest.raises(ValueError, match="memory_kv"):
        net.denoise(x[:2], t[:2], None, memory_kv=net.memory_keys_values(memory, repeats=3))


def test_matcher_compared_features_reach_the_memory():
    """flow_values > 0: the matcher also compares learned features of a token and of its match; a
    future frame equal to the current one gives zero change, another future frame does not."""
    model = build_preset("tiny", seed=0, ik_flow_heads=2, ik_flow_values=4)
    matcher = model.ik_net.matcher
    assert matcher.value_proj is not None and matcher.out[0].in_features == (3 + 4) * 2
    k, d = model.token_shape
    cur = torch.randn(1, k, d, generator=torch.Generator().manual_seed(0))
    same = model.ik_net.encode_memory(cur, cur)
    moved = model.ik_net.encode_memory(cur, torch.roll(cur, 1, dims=1))
    assert not torch.allclose(same, moved)


def test_future_valid_masks_the_future_state_loss_and_the_ground_truth_condition():
    """A sample whose future frames show another driver's path (label: the expert's plan) gets no
    future-state loss and never conditions the IK net on its real future."""
    model = build(teacher_forcing="ground_truth", freeze_vision=True).eval()
    batch = make_batch(model.config, 4)

    def terms(valid):
        b = dataclasses.replace(batch, future_valid=None if valid is None else torch.tensor(valid))
        return model.compute_loss(b, generator=torch.Generator().manual_seed(0)).terms

    def per_sample(i):
        one = dataclasses.replace(batch, **{f: getattr(batch, f)[i:i + 1] for f in (
            "images", "command", "speed", "acceleration", "target_point", "future_images", "trajectory")})
        return float(model.compute_loss(one, generator=torch.Generator().manual_seed(0)).terms["future_state"])

    with torch.no_grad():
        full, mixed, none = terms(None), terms([True, False, True, False]), terms([False] * 4)
        singles = [per_sample(i) for i in range(4)]
    assert float(full["future_gt_fraction"]) == 1.0 and float(mixed["future_gt_fraction"]) == 0.5
    assert float(none["future_gt_fraction"]) == 0.0 and float(none["future_state"]) == 0.0
    torch.testing.assert_close(float(full["future_state"]), sum(singles) / 4, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(float(mixed["future_state"]), (singles[0] + singles[2]) / 2, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="future_valid"):
        terms([True, False])

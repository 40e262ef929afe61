"""The IK-grounded driving VLA: encoder -> VLA (future visual state) -> IK net (trajectory).

Training objective (one batch, B samples)::

    z_t     = E(I_t)                      current tokens          [B, K, D]
    z_{t+h} = sg(E(I_{t+h}))              future target tokens    [B, F K, D]  (stop-gradient; one
                                          frame per horizon h in future.horizons_s, frame-major)
    z^_{t+h} = VLA(prompt, z_t)           predicted future tokens [B, F K, D]
    L_future = MSE or 1 - cos(z^_{t+h}, z_{t+h})
    c       = teacher forcing: z_{t+h}, sg(z^_{t+h}) or a per-sample mix
    x_0     = normalise(trajectory);  x_k = sqrt(a_k) x_0 + sqrt(1 - a_k) eps,  k ~ U{0..N-1}
    L_traj  = || IK(x_k, k, sg(z_t), sg(c)) - (x_0 or eps) ||^2
    L       = w_future * L_future + w_traj * L_traj

The stop-gradients on the IK net's conditioning mean the trajectory loss trains the IK net only.
With a frozen encoder the batch may carry the cached tokens (``visual_tokens``, ``future_tokens``)
instead of the images; the loss is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import DrivingModelBase
from .configuration import IKDriveConfig
from .diffusion import build_train_scheduler, random_normal, random_timesteps, random_uniform
from .ik_net import IKNet
from .interfaces import LossOutput, TrainingBatch
from .vla import FutureStatePredictor


def future_state_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str,
                      sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Regression loss between predicted and target tokens [B, K, D] ("mse" or "cosine").

    ``sample_weights`` [B] (mean 1, see :func:`turn_weights`) weight each sample's mean loss; None
    weighs them alike (the plain mean)."""
    if predicted.shape != target.shape:
        raise ValueError(f"future tokens: predicted {tuple(predicted.shape)} vs target {tuple(target.shape)}")
    if kind == "mse":
        per_sample = (predicted - target).pow(2).flatten(1).mean(dim=1)  # [B]
    elif kind == "cosine":
        per_sample = (1.0 - F.cosine_similarity(predicted, target, dim=-1, eps=1e-6)).flatten(1).mean(dim=1)
    else:
        raise ValueError(f"future.loss: unknown value {kind!r}")
    if sample_weights is None:
        return per_sample.mean()
    if sample_weights.shape != per_sample.shape:
        raise ValueError(f"sample_weights: expected shape {tuple(per_sample.shape)}, got {tuple(sample_weights.shape)}")
    return (per_sample * sample_weights.to(per_sample.dtype)).mean()


def turn_weights(trajectory: torch.Tensor, turn_weight: float, turn_scale_m: float) -> torch.Tensor | None:
    """Per-sample weights [B] of the future-state loss from the labelled trajectories [B, T, 2] (m):
    ``1 + turn_weight * min(|y_T| / turn_scale_m, 1)`` normalised to mean 1 (None when
    ``turn_weight`` is 0). ``y_T``: the last waypoint's lateral offset (ego frame, m)."""
    if turn_weight == 0.0:
        return None
    lateral = trajectory[:, -1, 1].abs().float()  # [B] m
    weights = 1.0 + turn_weight * (lateral / turn_scale_m).clamp(max=1.0)
    return weights / weights.mean()


class IKDriveModel(DrivingModelBase):
    """Vision encoder + future-state VLA + IK net + trajectory normaliser.

    Submodules: ``vision`` [B, N_cam, 3, H, W] -> [B, K, D_vision]; ``vla`` (prompt, current tokens)
    -> predicted future tokens [B, F K, D_vision]; ``ik_net`` (noisy trajectory, timestep, current,
    future tokens) -> [B, T, 2]; ``normalizer``. Inference lives in :class:`IKDrivePipeline`.
    """

    config_class = IKDriveConfig

    def __init__(
        self,
        config: IKDriveConfig,
        tokenizer,
        vision_backbone: nn.Module | None = None,
        llm_backbone: nn.Module | None = None,
    ) -> None:
        super().__init__(config, tokenizer, vision_backbone=vision_backbone)
        d_vision, k = config.vision.hidden_size, config.vision.tokens_per_frame
        frames = config.future.num_frames
        self.vla = FutureStatePredictor(config.llm, d_vision, k * frames, llm=llm_backbone)
        grid = (config.vision.num_cameras, *config.vision.grid_size)
        self.ik_net = IKNet(config.ik_net, d_vision, k, config.trajectory.num_waypoints, token_grid=grid,
                            num_future_frames=frames)
        self.train_scheduler = build_train_scheduler(config.ik_net)

    def encode_frames(self, images: torch.Tensor, future_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Current tokens [B, K, D] (with gradient where the encoder trains) and stop-gradient future
        tokens [B, F K, D] of future images [B, F, N_cam, 3, H, W] ([B, N_cam, 3, H, W]: F = 1).

        The future tokens are always computed with the backbone in eval mode and without autograd.
        """
        b = images.shape[0]
        if future_images.ndim == images.ndim:
            future_images = future_images[:, None]
        flat_future = future_images.flatten(0, 1)  # [B F, N_cam, 3, H, W]
        if self.vision.frozen:
            tokens = self.vision(torch.cat([images, flat_future], dim=0))  # [B + B F, K, D], one pass
            return tokens[:b], tokens[b:].reshape(b, -1, tokens.shape[-1]).detach()
        current = self.vision(images)  # [B, K, D]
        backbone = self.vision.backbone
        was_training = backbone.training
        try:
            backbone.eval()  # the target is the deterministic encoder output (no RoPE jitter, no drop-path)
            with torch.no_grad():
                target = self.vision(flat_future)  # [B F, K, D], no graph at all
        finally:
            backbone.train(was_training)
        return current, target.reshape(b, -1, target.shape[-1])

    def batch_tokens(self, batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(current [B, K, D], future target [B, F K, D]) of a batch: its cached tokens when it
        carries them (frozen encoder only), else :meth:`encode_frames` of its images."""
        if batch.visual_tokens is not None and batch.future_tokens is not None:
            if not self.vision.frozen:
                raise ValueError("visual_tokens / future_tokens: precomputed tokens need a frozen vision encoder")
            return batch.visual_tokens, batch.future_tokens.flatten(1, 2).detach()
        return self.encode_frames(batch.images, batch.future_images)

    def teacher_forced_future(
        self, target: torch.Tensor, predicted: torch.Tensor, generator: torch.Generator | None,
        future_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The future tokens the IK net trains on, and the per-sample ground-truth flag [B] (float).

        "ground_truth": the encoder's tokens of the real future frame; "predicted": the VLA's
        prediction; "mix": ground truth with probability ``teacher_forcing_gt_prob`` per sample.
        The ground truth is detached; the prediction carries the trajectory loss's gradient into
        the VLA scaled by ``ik_net.future_gradient`` (0: detached). The values do not depend on it.
        ``future_valid`` [B] bool: samples whose real future does not show their label never take
        the ground truth (the coin flips are drawn all the same).
        """
        cfg = self.config.ik_net
        b = target.shape[0]
        if cfg.teacher_forcing == "ground_truth":
            use_gt = torch.ones(b, dtype=torch.bool, device=target.device)
        elif cfg.teacher_forcing == "predicted":
            use_gt = torch.zeros(b, dtype=torch.bool, device=target.device)
        else:
            use_gt = random_uniform((b,), generator, target.device) < cfg.teacher_forcing_gt_prob
        if future_valid is not None:
            use_gt = use_gt & future_valid.to(device=target.device, dtype=torch.bool)
        scale = cfg.future_gradient
        if scale > 0:  # same values as predicted; d(condition)/d(predicted) = scale
            predicted = predicted.detach() + scale * (predicted - predicted.detach())
        else:
            predicted = predicted.detach()
        chosen = torch.where(use_gt[:, None, None], target.detach(), predicted)  # [B, F K, D]
        return chosen, use_gt.float()

    def compute_loss(self, batch: TrainingBatch, generator: torch.Generator | None = None) -> LossOutput:
        """Future-state loss + diffusion loss for one batch (see the module docstring).

        ``generator`` draws the diffusion noise, the timesteps and the teacher-forcing coin flips.
        """
        cfg = self.config
        batch.validate_batch(cfg.num_cameras, cfg.image_size, cfg.num_waypoints, need_future=True,
                             num_future_frames=cfg.future.num_frames, token_shape=self.token_shape)
        self._require_fitted_normalizer()
        batch = batch.to(self.device)
        b = batch.batch_size

        current, target = self.batch_tokens(batch)  # [B, K, D], [B, F K, D]
        input_ids, attention_mask = self.tokenize(batch)
        predicted = self.vla(input_ids, attention_mask, current, self.prompt_status(batch))  # [B, F K, D]
        weights = turn_weights(batch.trajectory, cfg.future.turn_weight, cfg.future.turn_scale_m)
        if batch.future_valid is not None:  # the mean over the samples whose future shows their label
            valid = batch.future_valid.to(device=predicted.device, dtype=predicted.dtype)
            weights = (valid if weights is None else weights * valid) * (b / valid.sum().clamp(min=1.0))
        loss_future = future_state_loss(predicted, target, cfg.future.loss, weights)

        condition, gt_flags = self.teacher_forced_future(target, predicted, generator, batch.future_valid)  # [B, F K, D], [B]
        x0 = self.normalizer.normalize(batch.trajectory)  # [B, T, 2]
        noise = random_normal(tuple(x0.shape), generator, x0.device)
        steps = random_timesteps(b, cfg.ik_net.num_train_timesteps, generator, x0.device)
        noisy = self.train_scheduler.add_noise(x0, noise, steps)  # x_k
        output = self.ik_net(noisy, steps, current.detach(), condition)  # [B, T, 2]
        diffusion_target = x0 if cfg.ik_net.prediction_type == "sample" else noise
        loss_traj = F.mse_loss(output, diffusion_target)

        loss = cfg.future.loss_weight * loss_future + cfg.ik_net.loss_weight * loss_traj
        terms = {
            "future_state": loss_future.detach(),
            "trajectory": loss_traj.detach(),
            "future_gt_fraction": gt_flags.mean().detach(),
        }
        return LossOutput(loss=loss, terms=terms)

"""Stage (a): pre-train the vision encoder so that the future-state target cannot collapse.

The model's encoder is trained from scratch here (no pretrained DINOv3 weights are available), and
stage (b) regresses the VLA's predicted tokens onto the encoder's tokens of the future frame. If the
encoder were trained jointly, constant tokens would make that loss zero. So the encoder first learns
to describe the image on its own: every patch token must reconstruct its patch of the camera image
(downsampled by ``target_downsample``) through a linear head (MAE-style, without masking). Pixels that
differ from the image's median colour (vehicles, lane marks) weigh ``foreground_weight`` times more,
so small objects matter. Stage (b) then loads the encoder and freezes it: the target is fixed.

Dense geometry and semantics (``depth_weight`` / ``semantic_weight`` > 0, episodes recorded with
``--ground-truth``; CARLA's depth and semantic cameras give the same channels): the same tokens also
predict, per cell of the same sub-patch grid, the log of the planar depth (clipped to
[``min_depth_m``, ``max_depth_m``], L1 loss) and the CARLA semantic tag (cross-entropy over
``num_semantic_classes``). Both make a token describe where, inside its patch and in depth, the
road edge, the lane mark or the car lies: the sub-patch geometry that lets the IK net read the
motion between two frames from their tokens.

Ego motion (``motion_weight`` > 0, a cross-view objective): the encoder also encodes one future
frame per sample (a random horizon of the model's ``future.horizons_s``), and a :class:`MotionHead`
(the IK net's token matcher, the same soft camera-by-camera matching, then an MLP over the K matched
features) regresses where the ego is at that frame, from the two token grids alone. The gradient
shapes the tokens so that a patch can be found again in a later frame and its displacement read,
which is what the IK net has to do; the head is dropped afterwards.

Output folder: ``encoder.safetensors`` (the vision encoder's state dict, keys as in
``model.get_vision_encoder().state_dict()``), ``head.safetensors`` and ``pretrain.json``
(vision config, head shape, metrics).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from training.config import PretrainConfig

ENCODER_WEIGHTS = "encoder.safetensors"
HEAD_WEIGHTS = "head.safetensors"
PRETRAIN_META = "pretrain.json"


class PatchReconstructionHead(nn.Module):
    """Linear map from each patch token to ``channels`` values per cell of its patch.

    ``forward(tokens [B, N_cam * P, D]) -> maps [B, N_cam, channels, H / s, W / s]`` where P is the
    patch grid (rows x cols, row-major, camera-major, as the encoder orders tokens) and s the
    downsample (3 channels: the pixels; 1: log depth; classes: semantic logits).
    """

    def __init__(self, hidden_size: int, patch_size: int, grid: tuple[int, int], num_cameras: int, downsample: int,
                 channels: int = 3) -> None:
        super().__init__()
        if patch_size % downsample:
            raise ValueError(f"pretrain.target_downsample {downsample} does not divide the patch size {patch_size}")
        self.cell = patch_size // downsample  # output pixels per patch side
        self.grid = grid
        self.num_cameras = num_cameras
        self.channels = channels
        self.norm = nn.LayerNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, channels * self.cell * self.cell)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        rows, cols, c, ch = self.grid[0], self.grid[1], self.cell, self.channels
        x = self.proj(self.norm(tokens))  # [B, N_cam * P, ch c c]
        x = x.view(b, self.num_cameras, rows, cols, ch, c, c)
        x = x.permute(0, 1, 4, 2, 5, 3, 6)  # [B, N_cam, ch, rows, c, cols, c]
        return x.reshape(b, self.num_cameras, ch, rows * c, cols * c)


class MotionHead(nn.Module):
    """``forward(current [B, K, D], future [B, K, D]) -> [B, 2]``: the ego's position at the future
    frame, ego frame of the current one, in units of ``motion_scale_m`` (x forward, y right)."""

    def __init__(self, hidden_size: int, grid: tuple[int, int], num_cameras: int, width: int = 32, heads: int = 4,
                 values: int = 8) -> None:
        super().__init__()
        from agent.model.ik_net import TokenMatcher

        num_tokens = num_cameras * grid[0] * grid[1]
        self.matcher = TokenMatcher(hidden_size, width, heads, (num_cameras, grid[0], grid[1]), 1, values=values)
        self.out = nn.Sequential(nn.Linear(num_tokens * width, 128), nn.GELU(), nn.Linear(128, 2))

    def forward(self, current: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        return self.out(self.matcher(current, future).flatten(1))  # [B, K, width] -> [B, 2]


def depth_target(depth: torch.Tensor, downsample: int, min_m: float, max_m: float) -> torch.Tensor:
    """[B, N, H, W] planar depth (m) -> [B, N, 1, H / s, W / s] mean log depth per cell, clipped."""
    b, n, h, w = depth.shape
    x = torch.log(depth.clamp(min_m, max_m)).reshape(b * n, 1, h, w)
    x = F.avg_pool2d(x, downsample) if downsample > 1 else x
    return x.reshape(b, n, 1, x.shape[-2], x.shape[-1])


def semantic_target(tags: torch.Tensor, downsample: int, num_classes: int) -> torch.Tensor:
    """[B, N, H, W] CARLA tags -> [B, N, H / s, W / s] the tag at each cell's top-left pixel
    (tags >= ``num_classes`` become class 0, "unlabelled")."""
    x = tags[..., ::downsample, ::downsample]
    return torch.where(x < num_classes, x, torch.zeros_like(x))


def reconstruction_target(images: torch.Tensor, downsample: int) -> torch.Tensor:
    """[B, N_cam, 3, H, W] in [0, 1] -> average-pooled [B, N_cam, 3, H / s, W / s]."""
    b, n, ch, h, w = images.shape
    x = F.avg_pool2d(images.reshape(b * n, ch, h, w), downsample) if downsample > 1 else images.reshape(b * n, ch, h, w)
    return x.reshape(b, n, ch, x.shape[-2], x.shape[-1])


def foreground_weights(target: torch.Tensor, weight: float, threshold: float = 0.1) -> torch.Tensor:
    """[B, N, 3, h, w] -> [B, N, 1, h, w]: ``weight`` where a pixel differs from its image's median
    colour by more than ``threshold`` (max over channels), 1 elsewhere."""
    median = target.flatten(-2).median(dim=-1).values[..., None, None]  # [B, N, 3, 1, 1]
    fg = (target - median).abs().amax(dim=2, keepdim=True) > threshold
    return torch.where(fg, torch.full_like(fg, weight, dtype=target.dtype), torch.ones_like(fg, dtype=target.dtype))


def token_std(tokens: torch.Tensor) -> float:
    """Mean over token positions and channels of the std across the batch: 0 means collapsed."""
    if tokens.shape[0] < 2:
        return float("nan")
    return float(tokens.float().std(dim=0).mean())


class EncoderPretrainModule(nn.Module):
    """Vision encoder + reconstruction head; ``forward(images, generator) -> (loss, terms)``."""

    def __init__(self, encoder: nn.Module, cfg: PretrainConfig) -> None:
        super().__init__()
        vc = encoder.config
        self.encoder = encoder
        self.cfg = cfg
        args = (vc.hidden_size, vc.patch_size, vc.grid_size, vc.num_cameras, cfg.target_downsample)
        self.head = PatchReconstructionHead(*args)
        self.depth_head = PatchReconstructionHead(*args, channels=1) if cfg.depth_weight > 0 else None
        self.semantic_head = (PatchReconstructionHead(*args, channels=cfg.num_semantic_classes)
                              if cfg.semantic_weight > 0 else None)
        self.motion_head = MotionHead(vc.hidden_size, vc.grid_size, vc.num_cameras) if cfg.motion_weight > 0 else None

    @property
    def needs_ground_truth(self) -> bool:
        return self.depth_head is not None or self.semantic_head is not None

    @property
    def needs_motion(self) -> bool:
        """Samples must carry future frames and the ego's position at them."""
        return self.motion_head is not None

    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.encoder(images)  # [B, K, D]
        return self.head(tokens), tokens

    def forward(self, batch: torch.Tensor | dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``batch``: images [B, N, 3, H, W], or a dict with ``images`` and, for the dense targets,
        ``depth`` [B, N, H, W] (m) and ``semantic`` [B, N, H, W] (tags); for the ego-motion target,
        ``future_images`` [B, F, N, 3, H, W] and ``future_position`` [B, F, 2] (m). Training draws one
        horizon per sample with ``generator``; in eval mode every horizon is scored."""
        cfg = self.cfg
        images = batch["images"] if isinstance(batch, dict) else batch
        tokens = self.encoder(images)  # [B, K, D]
        pred = self.head(tokens)
        target = reconstruction_target(images, cfg.target_downsample)
        w = foreground_weights(target, cfg.foreground_weight)
        loss = cfg.rgb_weight * ((pred - target) ** 2 * w).sum() / (w.sum() * 3)
        terms = {"recon_mse": F.mse_loss(pred.detach(), target), "token_std": torch.tensor(token_std(tokens.detach()))}
        if self.needs_ground_truth:
            if not isinstance(batch, dict) or "depth" not in batch or "semantic" not in batch:
                raise ValueError("pretrain: depth / semantic targets need episodes recorded with --ground-truth")
        if self.depth_head is not None:
            d_pred = self.depth_head(tokens)  # [B, N, 1, h, w]
            d_true = depth_target(batch["depth"], cfg.target_downsample, cfg.min_depth_m, cfg.max_depth_m)
            depth_l1 = (d_pred - d_true).abs().mean()
            loss = loss + cfg.depth_weight * depth_l1
            terms["depth_log_l1"] = depth_l1.detach()
        if self.semantic_head is not None:
            logits = self.semantic_head(tokens)  # [B, N, C, h, w]
            tags = semantic_target(batch["semantic"], cfg.target_downsample, cfg.num_semantic_classes)
            ce = F.cross_entropy(logits.flatten(0, 1), tags.flatten(0, 1))
            loss = loss + cfg.semantic_weight * ce
            terms["semantic_ce"] = ce.detach()
            terms["semantic_acc"] = (logits.detach().argmax(dim=2) == tags).float().mean()
        if self.motion_head is not None:
            motion_loss, motion_terms = self.motion_loss(batch, tokens, generator)
            loss = loss + cfg.motion_weight * motion_loss
            terms.update(motion_terms)
        return loss, terms

    def motion_loss(self, batch: Any, tokens: torch.Tensor,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Smooth L1 of the ego position at the future frame(s), and its mean L2 error in metres."""
        if not isinstance(batch, dict) or "future_images" not in batch or "future_position" not in batch:
            raise ValueError("pretrain: the ego-motion target needs future_images and future_position in the batch")
        future, position = batch["future_images"], batch["future_position"]  # [B, F, N, 3, H, W], [B, F, 2]
        if future.ndim != 6 or position.shape[:2] != future.shape[:2]:
            raise ValueError(f"pretrain: future_images {tuple(future.shape)} / future_position {tuple(position.shape)} "
                             "must be [B, F, N, 3, H, W] / [B, F, 2]")
        b, nf = position.shape[:2]
        if self.training:
            pick = torch.randint(0, nf, (b,), generator=generator).to(future.device)
            rows = torch.arange(b, device=future.device)
            frames, targets, current = future[rows, pick], position[rows, pick], tokens
        else:  # every horizon: [F B, ...], horizon-major
            frames, targets = future.transpose(0, 1).flatten(0, 1), position.transpose(0, 1).flatten(0, 1)
            current = tokens.repeat(nf, 1, 1)
        pred = self.motion_head(current, self.encoder(frames)) * self.cfg.motion_scale_m  # [B', 2] m
        loss = F.smooth_l1_loss(pred / self.cfg.motion_scale_m, targets / self.cfg.motion_scale_m)
        err = (pred.detach() - targets).norm(dim=-1)  # [B'] m
        terms = {"motion_l2_m": err.mean()}
        if not self.training:
            for j, e in enumerate(err.view(nf, b)):
                terms[f"motion_l2_m_frame{j}"] = e.mean()
        return loss, terms


class EncoderPretrainTask:
    """:class:`training.trainer.Task` of stage (a)."""

    def __init__(self, encoder: nn.Module, cfg: PretrainConfig, vision_config: dict[str, Any]) -> None:
        encoder.set_frozen(False)
        self.module = EncoderPretrainModule(encoder, cfg)
        self.vision_config = vision_config

    @property
    def needs_ground_truth(self) -> bool:
        """The datasets must carry depth and semantic ground truth."""
        return self.module.needs_ground_truth

    @property
    def needs_motion(self) -> bool:
        """The datasets must carry future frames and ``future_position`` (``with_motion``)."""
        return self.module.needs_motion

    def make_batch(self, samples: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor | dict[str, torch.Tensor]:
        if not (self.module.needs_ground_truth or self.module.needs_motion):
            return samples["images"].to(device)
        keys = ["images"]
        keys += ["depth", "semantic"] if self.module.needs_ground_truth else []
        keys += ["future_images", "future_position"] if self.module.needs_motion else []
        return {k: samples[k].to(device) for k in keys}

    @torch.no_grad()
    def evaluate(self, module: nn.Module, val_dataset: Any, device: torch.device) -> dict[str, float]:
        from training.dataset import collate

        module.eval()
        sums: dict[str, float] = {}
        n, toks = 0, []
        for start in range(0, len(val_dataset), 32):
            batch = self.make_batch(collate([val_dataset[i] for i in range(start, min(start + 32, len(val_dataset)))]), device)
            images = batch["images"] if isinstance(batch, dict) else batch
            loss, terms = module(batch)
            k = images.shape[0]
            for name, value in [("loss", loss), *terms.items()]:
                if name != "token_std":
                    sums[name] = sums.get(name, 0.0) + float(value) * k
            n += k
            toks.append(module.encoder(images).float().cpu())
        from agent.model.collapse import collapse_stats, is_collapsed

        metrics = {name: total / max(n, 1) for name, total in sums.items()}
        tokens = torch.cat(toks)  # [N, K, D]
        if tokens.shape[0] >= 2:
            stats = collapse_stats(tokens)
            metrics.update(token_relative_frame_std=stats["relative_frame_std"],
                           token_effective_rank=stats["effective_rank"], token_collapsed=float(is_collapsed(stats)))
        return metrics

    def save(self, module: nn.Module, path: Path) -> None:
        save_pretrained_encoder(module, path, self.vision_config)

    def load(self, module: nn.Module, path: Path) -> None:
        module.encoder.load_state_dict(load_file(str(Path(path) / ENCODER_WEIGHTS)), strict=True)
        heads = load_file(str(Path(path) / HEAD_WEIGHTS))
        prefixes = tuple(prefix for prefix, _ in _prefixed_heads(module))
        module.head.load_state_dict({k: v for k, v in heads.items() if not k.startswith(prefixes)}, strict=True)
        for prefix, head in _prefixed_heads(module):
            if head is not None:
                head.load_state_dict({k[len(prefix):]: v for k, v in heads.items() if k.startswith(prefix)}, strict=True)


def _prefixed_heads(module: EncoderPretrainModule) -> list[tuple[str, nn.Module | None]]:
    return [("depth.", module.depth_head), ("semantic.", module.semantic_head), ("motion.", module.motion_head)]


def _heads_state(module: EncoderPretrainModule) -> dict[str, torch.Tensor]:
    """Every head's tensors; the RGB head keeps its bare names, the others are prefixed."""
    state = {k: v for k, v in module.head.state_dict().items()}
    for prefix, head in _prefixed_heads(module):
        if head is not None:
            state.update({prefix + k: v for k, v in head.state_dict().items()})
    return state


def save_pretrained_encoder(module: EncoderPretrainModule, path: str | Path, vision_config: dict[str, Any]) -> None:
    """Write ``encoder.safetensors``, ``head.safetensors`` and ``pretrain.json`` into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.encoder.state_dict().items()}, str(path / ENCODER_WEIGHTS))
    save_file({k: v.detach().cpu().contiguous() for k, v in _heads_state(module).items()}, str(path / HEAD_WEIGHTS))
    meta = {"vision": vision_config, "target_downsample": module.cfg.target_downsample,
            "foreground_weight": module.cfg.foreground_weight, "depth_weight": module.cfg.depth_weight,
            "semantic_weight": module.cfg.semantic_weight, "num_semantic_classes": module.cfg.num_semantic_classes,
            "motion_weight": module.cfg.motion_weight, "motion_scale_m": module.cfg.motion_scale_m}
    (path / PRETRAIN_META).write_text(json.dumps(meta, indent=2, sort_keys=True))


def load_pretrained_encoder(encoder: nn.Module, path: str | Path, vision_config: dict[str, Any] | None = None) -> None:
    """Load a stage-(a) encoder into ``encoder`` (strict: every tensor by name and shape).

    When ``vision_config`` is given it must equal the one the encoder was pre-trained with (except
    ``freeze``), so an encoder trained for another image size or architecture is refused.
    """
    path = Path(path)
    weights = path / ENCODER_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: not a pre-trained encoder folder (no {ENCODER_WEIGHTS})")
    if vision_config is not None and (path / PRETRAIN_META).is_file():
        saved = dict(json.loads((path / PRETRAIN_META).read_text())["vision"])
        a, b = dict(saved), dict(vision_config)
        a.pop("freeze", None)
        b.pop("freeze", None)
        if a != b:
            raise ValueError(f"{path}: encoder was pre-trained for vision config {a}, the model has {b}")
    state = load_file(str(weights))
    expected = encoder.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{weights}: missing {missing[:5]} / unexpected {unexpected[:5]} encoder tensors")
    encoder.load_state_dict(state, strict=True)

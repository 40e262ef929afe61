"""Stage (a): pre-train the vision encoder so that the future-state target cannot collapse.

The model's encoder is trained from scratch here (no pretrained DINOv3 weights are available), and
stage (b) regresses the VLA's predicted tokens onto the encoder's tokens of the future frame. If the
encoder were trained jointly, constant tokens would make that loss zero. So the encoder first learns
to describe the image on its own: every patch token must reconstruct its patch of the camera image
(downsampled by ``target_downsample``) through a linear head (MAE-style, without masking). Pixels that
differ from the image's median colour (vehicles, lane marks) weigh ``foreground_weight`` times more,
so small objects matter. Stage (b) then loads the encoder and freezes it: the target is fixed.

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
    """Linear map from each patch token to its patch's pixels.

    ``forward(tokens [B, N_cam * P, D]) -> images [B, N_cam, 3, H / s, W / s]`` where P is the patch
    grid (rows x cols, row-major, camera-major, as the encoder orders tokens) and s the downsample.
    """

    def __init__(self, hidden_size: int, patch_size: int, grid: tuple[int, int], num_cameras: int, downsample: int) -> None:
        super().__init__()
        if patch_size % downsample:
            raise ValueError(f"pretrain.target_downsample {downsample} does not divide the patch size {patch_size}")
        self.cell = patch_size // downsample  # output pixels per patch side
        self.grid = grid
        self.num_cameras = num_cameras
        self.norm = nn.LayerNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, 3 * self.cell * self.cell)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        rows, cols, c = self.grid[0], self.grid[1], self.cell
        x = self.proj(self.norm(tokens))  # [B, N_cam * P, 3 c c]
        x = x.view(b, self.num_cameras, rows, cols, 3, c, c)
        x = x.permute(0, 1, 4, 2, 5, 3, 6)  # [B, N_cam, 3, rows, c, cols, c]
        return x.reshape(b, self.num_cameras, 3, rows * c, cols * c)


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
        self.head = PatchReconstructionHead(vc.hidden_size, vc.patch_size, vc.grid_size, vc.num_cameras, cfg.target_downsample)

    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.encoder(images)  # [B, K, D]
        return self.head(tokens), tokens

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred, tokens = self.reconstruct(images)
        target = reconstruction_target(images, self.cfg.target_downsample)
        w = foreground_weights(target, self.cfg.foreground_weight)
        loss = ((pred - target) ** 2 * w).sum() / (w.sum() * 3)
        return loss, {"recon_mse": F.mse_loss(pred.detach(), target), "token_std": torch.tensor(token_std(tokens.detach()))}


class EncoderPretrainTask:
    """:class:`training.trainer.Task` of stage (a). Trains on current AND future frames' images."""

    def __init__(self, encoder: nn.Module, cfg: PretrainConfig, vision_config: dict[str, Any]) -> None:
        encoder.set_frozen(False)
        self.module = EncoderPretrainModule(encoder, cfg)
        self.vision_config = vision_config

    def make_batch(self, samples: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        return samples["images"].to(device)

    @torch.no_grad()
    def evaluate(self, module: nn.Module, val_dataset: Any, device: torch.device) -> dict[str, float]:
        from training.dataset import collate

        module.eval()
        mse, wloss, n, toks = 0.0, 0.0, 0, []
        for start in range(0, len(val_dataset), 32):
            batch = collate([val_dataset[i] for i in range(start, min(start + 32, len(val_dataset)))])
            images = batch["images"].to(device)
            loss, terms = module(images)
            k = images.shape[0]
            mse += float(terms["recon_mse"]) * k
            wloss += float(loss) * k
            n += k
            toks.append(module.encoder(images).float().cpu())
        from agent.model.collapse import collapse_stats, is_collapsed

        metrics = {"recon_mse": mse / max(n, 1), "loss": wloss / max(n, 1)}
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
        module.head.load_state_dict(load_file(str(Path(path) / HEAD_WEIGHTS)), strict=True)


def save_pretrained_encoder(module: EncoderPretrainModule, path: str | Path, vision_config: dict[str, Any]) -> None:
    """Write ``encoder.safetensors``, ``head.safetensors`` and ``pretrain.json`` into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.encoder.state_dict().items()}, str(path / ENCODER_WEIGHTS))
    save_file({k: v.detach().cpu().contiguous() for k, v in module.head.state_dict().items()}, str(path / HEAD_WEIGHTS))
    meta = {"vision": vision_config, "target_downsample": module.cfg.target_downsample,
            "foreground_weight": module.cfg.foreground_weight}
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

"""Vision encoder: a DINOv3 ViT over every camera, patch tokens out."""

from __future__ import annotations

import torch
from torch import nn

from .configuration import VisionConfig


def build_dinov3(config: VisionConfig):
    """A randomly initialised ``DINOv3ViTModel`` with the architecture in ``config.backbone``."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    hf_config = DINOv3ViTConfig(**config.backbone)
    hf_config._attn_implementation = "sdpa"
    return DINOv3ViTModel(hf_config)


class VisionEncoder(nn.Module):
    """Encode N_cam RGB images into one frame of visual tokens.

    ``forward(images [B, N_cam, 3, H, W] float RGB in [0, 1]) -> tokens [B, K, D_vision]`` with
    K = N_cam * P, P = (H / patch) * (W / patch). Tokens are ordered camera-major, then patch rows
    top to bottom, then columns left to right. Per camera: normalise with mean/std (inside the module),
    run DINOv3, drop the CLS and register tokens, add that camera's learned embedding.

    ``freeze`` (config, or :meth:`set_frozen`) freezes the DINOv3 weights: no gradient and always
    in eval mode (no RoPE augmentation). The camera embedding stays trainable.
    """

    def __init__(self, config: VisionConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if backbone is None:
            backbone = build_dinov3(config)
        self._check_backbone(backbone)
        self.backbone = backbone
        self.num_prefix_tokens = 1 + int(backbone.config.num_register_tokens)
        self.camera_embedding = nn.Parameter(torch.empty(config.num_cameras, config.hidden_size))
        nn.init.trunc_normal_(self.camera_embedding, std=0.02)
        mean = torch.tensor(config.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(config.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        self.frozen = False
        self.set_frozen(config.freeze)

    def _check_backbone(self, backbone: nn.Module) -> None:
        hf = getattr(backbone, "config", None)
        if hf is None or getattr(hf, "model_type", None) != "dinov3_vit":
            raise ValueError("vision backbone: expected a transformers DINOv3ViTModel")
        patch = hf.patch_size[0] if isinstance(hf.patch_size, (list, tuple)) else hf.patch_size
        if hf.hidden_size != self.config.hidden_size or patch != self.config.patch_size:
            raise ValueError(
                f"vision backbone: hidden_size/patch_size {hf.hidden_size}/{patch} do not match the config "
                f"{self.config.hidden_size}/{self.config.patch_size}"
            )

    @property
    def num_tokens(self) -> int:
        """K: tokens per frame."""
        return self.config.tokens_per_frame

    @property
    def hidden_size(self) -> int:
        """D_vision."""
        return self.config.hidden_size

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (True) or unfreeze (False) the DINOv3 weights."""
        self.frozen = bool(frozen)
        self.backbone.requires_grad_(not self.frozen)
        # Patches are never masked here: keep the unused mask token out of the optimiser (and DDP).
        self.backbone.embeddings.mask_token.requires_grad_(False)
        self.backbone.train(self.training and not self.frozen)

    def train(self, mode: bool = True) -> "VisionEncoder":
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, n_cam, channels, h, w = images.shape
        if n_cam != self.config.num_cameras or channels != 3 or (h, w) != tuple(self.config.image_size):
            raise ValueError(
                f"images: expected [B, {self.config.num_cameras}, 3, {self.config.image_size[0]}, "
                f"{self.config.image_size[1]}], got {tuple(images.shape)}"
            )
        pixels = images.reshape(b * n_cam, 3, h, w).to(self.pixel_mean.dtype)
        pixels = (pixels - self.pixel_mean) / self.pixel_std  # [B*N_cam, 3, H, W]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.backbone(pixel_values=pixels).last_hidden_state  # [B*N_cam, 1 + R + P, D]
        patches = hidden[:, self.num_prefix_tokens :, :]  # [B*N_cam, P, D]
        patches = patches.reshape(b, n_cam, -1, patches.shape[-1])  # [B, N_cam, P, D]
        patches = patches + self.camera_embedding[None, :, None, :].to(patches.dtype)
        return patches.reshape(b, -1, patches.shape[-1])  # [B, K, D]

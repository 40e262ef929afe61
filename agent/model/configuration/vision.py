"""``VisionConfig``: the DINOv3 ViT encoder applied to each camera."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ._checks import _as_tuple, _check_keys, _fail, _positive_float, _positive_int, _validate_backbone

# ImageNet statistics, which DINOv3's LVD-1689M checkpoints expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VisionConfig:
    """Vision encoder: a DINOv3 ViT applied to each camera, patch tokens out.

    Attributes:
        num_cameras: cameras per frame (N_cam), in the rig's order.
        image_size: (H, W) pixels of every camera image; both divisible by the patch size.
        backbone: ``DINOv3ViTConfig`` keyword arguments (hidden_size, num_hidden_layers, ...).
        freeze: freeze the DINOv3 weights (no gradient, always in eval mode). The per-camera
            embedding stays trainable either way.
        image_mean, image_std: RGB normalisation applied inside the encoder to [0, 1] inputs.
    """

    num_cameras: int = 1
    image_size: tuple[int, int] = (128, 128)
    backbone: dict[str, Any] = field(default_factory=dict)
    freeze: bool = False
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        from transformers import DINOv3ViTConfig

        owner = "VisionConfig"
        object.__setattr__(self, "image_size", _as_tuple(self.image_size))
        object.__setattr__(self, "image_mean", _as_tuple(self.image_mean))
        object.__setattr__(self, "image_std", _as_tuple(self.image_std))
        _positive_int(owner, "num_cameras", self.num_cameras)
        _validate_backbone(owner, self.backbone, DINOv3ViTConfig, ("hidden_size", "patch_size"))
        patch = self.backbone["patch_size"]
        if isinstance(patch, (list, tuple)):
            if len(patch) != 2 or patch[0] != patch[1]:
                _fail(owner, "backbone", f"patch_size must be square, got {patch!r}")
            patch = patch[0]
        _positive_int(owner, "backbone.patch_size", patch)
        _positive_int(owner, "backbone.hidden_size", self.backbone["hidden_size"])
        if not (isinstance(self.image_size, tuple) and len(self.image_size) == 2):
            _fail(owner, "image_size", f"must be (H, W), got {self.image_size!r}")
        for axis, value in zip(("H", "W"), self.image_size):
            _positive_int(owner, f"image_size.{axis}", value)
            if value % patch != 0:
                _fail(owner, "image_size", f"{axis}={value} is not divisible by patch_size {patch}")
        if not isinstance(self.freeze, bool):
            _fail(owner, "freeze", f"must be a bool, got {self.freeze!r}")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) == 3):
                _fail(owner, name, f"must hold 3 numbers (RGB), got {value!r}")
        for i, s in enumerate(self.image_std):
            _positive_float(owner, f"image_std[{i}]", s)

    @property
    def hidden_size(self) -> int:
        """D_vision: width of a visual token."""
        return int(self.backbone["hidden_size"])

    @property
    def patch_size(self) -> int:
        patch = self.backbone["patch_size"]
        return int(patch[0] if isinstance(patch, (list, tuple)) else patch)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(H / patch, W / patch): patch grid of one camera."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def tokens_per_camera(self) -> int:
        """P: patch tokens per camera image."""
        rows, cols = self.grid_size
        return rows * cols

    @property
    def tokens_per_frame(self) -> int:
        """K = N_cam * P: visual tokens of one frame."""
        return self.num_cameras * self.tokens_per_camera

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_cameras": self.num_cameras,
            "image_size": list(self.image_size),
            "backbone": json.loads(json.dumps(self.backbone)),
            "freeze": self.freeze,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VisionConfig":
        _check_keys(cls, data, "vision")
        return cls(**dict(data))

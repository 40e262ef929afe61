"""What the IK model and the shortcut baseline share: encoder, prompt, normaliser, checkpoints."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from .checkpoint import checkpoint_files, load_state_dict_strict, save_state_dict, write_folder_atomically, WEIGHTS_NAME
from .configuration import CONFIG_NAME, IKDriveConfig, ShortcutConfig, load_config
from .interfaces import DrivingInputs
from .normalizer import TrajectoryNormalizer
from .tokenization import ensure_pad_token, format_prompts, status_features, tokenize_prompts
from .vision import VisionEncoder


class DrivingModelBase(nn.Module):
    """Common parts of the model family.

    Submodules: ``vision`` (:class:`VisionEncoder`), ``normalizer`` (:class:`TrajectoryNormalizer`).
    Attribute ``tokenizer``: the prompt tokenizer (saved with the checkpoint).
    """

    config_class: ClassVar[type]

    def __init__(self, config: IKDriveConfig | ShortcutConfig, tokenizer, vision_backbone: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"config: expected {self.config_class.__name__}, got {type(config).__name__}")
        ensure_pad_token(tokenizer)
        if len(tokenizer) > config.llm.vocab_size:
            raise ValueError(
                f"tokenizer: {len(tokenizer)} tokens do not fit the LLM vocabulary (llm.backbone.vocab_size="
                f"{config.llm.vocab_size})"
            )
        self.config = config
        self.tokenizer = tokenizer
        self.vision = VisionEncoder(config.vision, backbone=vision_backbone)
        self.normalizer = TrajectoryNormalizer(config.trajectory.num_waypoints)

    # ----------------------------------------------------------------------------------------- parts
    @property
    def device(self) -> torch.device:
        return self.normalizer.mean.device

    def get_vision_encoder(self) -> VisionEncoder:
        """The vision encoder module (``.backbone`` is the DINOv3 ViT), e.g. for pre-training it."""
        return self.vision

    @property
    def vision_frozen(self) -> bool:
        return self.vision.frozen

    def set_vision_frozen(self, frozen: bool) -> None:
        """Freeze or unfreeze the DINOv3 weights; the saved config records the current state."""
        self.vision.set_frozen(frozen)
        vision = dataclasses.replace(self.config.vision, freeze=bool(frozen))
        self.config = dataclasses.replace(self.config, vision=vision)

    def current_tokens(self, inputs: DrivingInputs) -> torch.Tensor:
        """[B, K, D_vision]: ``inputs.visual_tokens`` when given (a frozen encoder's cache), else the
        encoder's tokens of ``inputs.images``."""
        if inputs.visual_tokens is not None:
            if not self.vision.frozen:
                raise ValueError("visual_tokens: precomputed tokens need a frozen vision encoder")
            return inputs.visual_tokens.to(self.device)
        return self.vision(inputs.images)

    @property
    def token_shape(self) -> tuple[int, int]:
        """(K, D_vision) of one frame's visual tokens."""
        return (self.config.vision.tokens_per_frame, self.config.vision.hidden_size)

    def tokenize(self, inputs: DrivingInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt token ids and attention mask [B, L_text] for the numeric inputs."""
        prompts = format_prompts(inputs.command, inputs.speed, inputs.acceleration, inputs.target_point)
        return tokenize_prompts(self.tokenizer, prompts, self.device)

    def prompt_status(self, inputs: DrivingInputs) -> torch.Tensor | None:
        """The prompt's numbers as a vector [B, STATUS_SIZE] for an LLM with ``status_queries``,
        else None (``agent.model.tokenization.status_features``)."""
        if not self.config.llm.status_queries:
            return None
        return status_features(inputs.command, inputs.speed, inputs.acceleration, inputs.target_point).to(self.device)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level submodule, plus "total" and "trainable"."""
        counts = {name: sum(p.numel() for p in child.parameters()) for name, child in self.named_children()}
        counts = {k: v for k, v in counts.items() if v > 0}
        counts["total"] = sum(p.numel() for p in self.parameters())
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    def _require_fitted_normalizer(self) -> None:
        if not self.normalizer.is_fitted:
            raise RuntimeError(
                "normalizer: not fitted; call model.normalizer.fit(trajectories [N, T, 2]) on the training "
                "trajectories before computing the loss"
            )

    # ----------------------------------------------------------------------------------- checkpoints
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write config.json, model.safetensors and the tokenizer files into one folder (atomically)."""

        def write(tmp: Path) -> None:
            self.config.save(tmp / CONFIG_NAME)
            save_state_dict(self, tmp / WEIGHTS_NAME)
            self.tokenizer.save_pretrained(str(tmp))

        return write_folder_atomically(directory, write)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"):
        """Load a folder written by :meth:`save_pretrained`; strict about every tensor."""
        # The fast-tokenizer class reads tokenizer.json directly (tiny: ours; 0.5b: Qwen's), without
        # AutoTokenizer's look-up of config.json, which holds our config, not a transformers one.
        from transformers import PreTrainedTokenizerFast

        config_path, weights_path = checkpoint_files(directory)
        config = load_config(config_path)
        if not isinstance(config, cls.config_class):
            raise ValueError(
                f"{directory}: holds a {config.model_type!r} model, not {cls.config_class.model_type!r}"
            )
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory), local_files_only=True)
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's RNG
            model = cls(config, tokenizer)
        load_state_dict_strict(model, weights_path)
        return model.to(torch.device(device)).eval()

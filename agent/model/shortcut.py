"""The "shortcut" baseline: a conventional driving VLA with no future-state prediction.

Same encoder and LLM as the IK model; ego status, command and target point in the prompt (exactly
the same prompt). T learned query tokens (one per waypoint) are appended after the visual tokens;
a 2-layer MLP maps each query's last hidden state to a normalised (x, y) waypoint. The loss is a
regression loss (L1 by default) on normalised waypoints; there is no future-state loss, so nothing
forces the model to use the image when ego status already predicts the expert.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import DrivingModelBase
from .configuration import ShortcutConfig
from .interfaces import DrivingInputs, LossOutput, TrainingBatch
from .vla import PromptedQueryLLM


class ShortcutModel(DrivingModelBase):
    """Vision encoder + LLM with T waypoint queries + MLP regression head + normaliser.

    Submodules: ``vision``, ``vla`` (:class:`PromptedQueryLLM` with T queries), ``head``
    (D_llm -> mlp_hidden_size -> 2), ``normalizer``.
    """

    config_class = ShortcutConfig

    def __init__(
        self,
        config: ShortcutConfig,
        tokenizer,
        vision_backbone: nn.Module | None = None,
        llm_backbone: nn.Module | None = None,
    ) -> None:
        super().__init__(config, tokenizer, vision_backbone=vision_backbone)
        t = config.trajectory.num_waypoints
        self.vla = PromptedQueryLLM(config.llm, config.vision.hidden_size, t, llm=llm_backbone)
        width, hidden = config.llm.hidden_size, config.head.mlp_hidden_size
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 2))

    def predict_normalized(self, inputs: DrivingInputs, current_tokens: torch.Tensor) -> torch.Tensor:
        """Normalised trajectory [B, T, 2] from the prompt of ``inputs`` and tokens [B, K, D_vision]."""
        input_ids, attention_mask = self.tokenize(inputs)
        hidden = self.vla(input_ids, attention_mask, current_tokens, self.prompt_status(inputs))  # [B, T, D_llm]
        return self.head(hidden).float()  # [B, T, 2]

    def compute_loss(self, batch: TrainingBatch, generator: torch.Generator | None = None) -> LossOutput:
        """Regression loss on normalised waypoints; ``generator`` is unused (no sampling)."""
        cfg = self.config
        batch.validate_batch(cfg.num_cameras, cfg.image_size, cfg.num_waypoints, need_future=False,
                             token_shape=self.token_shape)
        self._require_fitted_normalizer()
        batch = batch.to(self.device)
        current = self.current_tokens(batch)  # [B, K, D] (cached tokens when the batch carries them)
        predicted = self.predict_normalized(batch, current)  # [B, T, 2]
        target = self.normalizer.normalize(batch.trajectory)  # [B, T, 2]
        if cfg.head.loss == "l1":
            loss = F.l1_loss(predicted, target)
        else:
            loss = F.mse_loss(predicted, target)
        return LossOutput(loss=loss, terms={"trajectory": loss.detach()})

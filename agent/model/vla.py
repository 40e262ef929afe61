"""The VLA: a Qwen2 LLM that reads [prompt] + [visual tokens] + [learned queries] in one pass.

Sequence layout for a batch element (L = L_text + K + Q positions)::

    [ prompt tokens (right-padded to L_text) | projected visual tokens (K) | queries (Q) ]

The attention is causal (Qwen2) with the prompt padding masked out; position ids count only real
tokens, so the same sample gives the same output whatever the padding of its batch. The queries
come last, so each reads the whole prompt and the whole current frame. Their last hidden states
are the output; no token is decoded autoregressively. With ``LLMConfig.status_queries`` the
prompt's numbers also reach the queries directly: each query embedding gets a learned linear
projection of the status vector added (``tokenization.status_features``).
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration import LLMConfig
from .tokenization import STATUS_SIZE


def build_qwen2(config: LLMConfig):
    """A randomly initialised ``Qwen2Model`` with the architecture in ``config.backbone``."""
    from transformers import Qwen2Config, Qwen2Model

    hf_config = Qwen2Config(**config.backbone)
    hf_config._attn_implementation = config.attn_implementation
    return Qwen2Model(hf_config)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids [B, L] that count real tokens only: 0, 1, 2, ... skipping padding (mask 0)."""
    return (attention_mask.cumsum(dim=1) - 1).clamp_min(0)


class PromptedQueryLLM(nn.Module):
    """Projector + Qwen2 + Q learned query tokens; returns the queries' last hidden states.

    ``forward(input_ids [B, L_text], attention_mask [B, L_text], visual_tokens [B, K, D_vision],
    status [B, STATUS_SIZE] or None) -> [B, Q, D_llm]``. With ``config.status_queries`` the status
    vector (``tokenization.status_features``) is projected (zero-initialised linear layer) and added
    to every query embedding, and ``status`` is required; without it ``status`` must be None.
    """

    def __init__(self, config: LLMConfig, vision_size: int, num_queries: int, llm: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if llm is None:
            llm = build_qwen2(config)
        hf = getattr(llm, "config", None)
        if hf is None or getattr(hf, "model_type", None) != "qwen2" or hf.hidden_size != config.hidden_size:
            raise ValueError(f"llm: expected a transformers Qwen2Model of hidden_size {config.hidden_size}")
        self.llm = llm
        width = config.hidden_size
        # LLaVA-style projector D_vision -> D_llm: one linear layer, or LLaVA-1.5's Linear-GELU-Linear.
        if config.projector == "mlp2x_gelu":
            self.projector = nn.Sequential(nn.Linear(vision_size, width), nn.GELU(), nn.Linear(width, width))
        else:
            self.projector = nn.Linear(vision_size, width)
        self.queries = nn.Parameter(torch.empty(num_queries, width))
        nn.init.normal_(self.queries, std=0.02)
        self.status_projector: nn.Linear | None = None
        if config.status_queries:
            self.status_projector = nn.Linear(STATUS_SIZE, width)
            nn.init.zeros_(self.status_projector.weight)  # starts as the model without it
            nn.init.zeros_(self.status_projector.bias)

    @property
    def num_queries(self) -> int:
        return int(self.queries.shape[0])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, visual_tokens: torch.Tensor,
                status: torch.Tensor | None = None) -> torch.Tensor:
        b = input_ids.shape[0]
        if visual_tokens.shape[0] != b or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"llm inputs: batch mismatch, input_ids {tuple(input_ids.shape)}, attention_mask "
                f"{tuple(attention_mask.shape)}, visual_tokens {tuple(visual_tokens.shape)}"
            )
        embed = self.llm.get_input_embeddings()
        text = embed(input_ids)  # [B, L_text, D_llm]
        visual = self.projector(visual_tokens.to(self.queries.dtype))  # [B, K, D_llm]
        queries = self.queries.unsqueeze(0).expand(b, -1, -1)  # [B, Q, D_llm]
        if self.status_projector is not None:
            if status is None or tuple(status.shape) != (b, STATUS_SIZE):
                got = None if status is None else tuple(status.shape)
                raise ValueError(f"status: this LLM adds the prompt's numbers to its queries; expected [B={b}, "
                                 f"{STATUS_SIZE}], got {got}")
            queries = queries + self.status_projector(status.to(self.queries.dtype))[:, None, :]
        elif status is not None:
            raise ValueError("status: given, but this LLM was built without status_queries")
        queries = queries.to(text.dtype)
        inputs_embeds = torch.cat([text, visual.to(text.dtype), queries], dim=1)  # [B, L, D_llm]
        ones = attention_mask.new_ones(b, visual.shape[1] + queries.shape[1])
        mask = torch.cat([attention_mask, ones], dim=1)  # [B, L]
        hidden = self.llm(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=positions_from_mask(mask),
            use_cache=False,
        ).last_hidden_state  # [B, L, D_llm]
        return hidden[:, -self.num_queries :, :]  # [B, Q, D_llm]


class FutureStatePredictor(nn.Module):
    """The IK model's VLA: predicts the K visual tokens of the future frame.

    ``forward(input_ids, attention_mask, visual_tokens [B, K, D_vision]) -> [B, K, D_vision]``:
    K learnable future queries (K = tokens per frame) read the prompt and the current frame; an
    MLP head maps each query's hidden state (D_llm) back to the vision feature space (D_vision).
    """

    def __init__(self, config: LLMConfig, vision_size: int, num_queries: int, llm: nn.Module | None = None) -> None:
        super().__init__()
        self.reader = PromptedQueryLLM(config, vision_size, num_queries, llm=llm)
        width = config.hidden_size
        self.head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, vision_size))

    @property
    def llm(self) -> nn.Module:
        return self.reader.llm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, visual_tokens: torch.Tensor,
                status: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.reader(input_ids, attention_mask, visual_tokens, status)  # [B, K, D_llm]
        return self.head(hidden).float()  # [B, K, D_vision]

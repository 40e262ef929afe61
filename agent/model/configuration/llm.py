"""``LLMConfig``: the Qwen2-family language model and its vision -> LLM projector."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ._checks import _check_keys, _choice, _fail, _positive_int, _validate_backbone

PROJECTORS = ("linear", "mlp2x_gelu")


@dataclass(frozen=True)
class LLMConfig:
    """The Qwen2-family language model that reads the prompt and the visual tokens.

    Attributes:
        backbone: ``Qwen2Config`` keyword arguments (vocab_size, hidden_size, num_hidden_layers, ...).
        attn_implementation: transformers attention kernel ("sdpa" or "eager").
        projector: vision -> LLM projector, "linear" (LLaVA) or "mlp2x_gelu" (LLaVA-1.5: Linear,
            GELU, Linear).
        status_queries: the prompt's numbers (command one-hot, speed, acceleration, target point;
            ``agent.model.tokenization.status_features``) also enter the LLM as a vector: a linear
            projection of it, zero at initialisation, is added to every query embedding. The text
            prompt stays; this is a second, direct path for the route into the queries.
    """

    backbone: dict[str, Any] = field(default_factory=dict)
    attn_implementation: str = "sdpa"
    projector: str = "linear"
    status_queries: bool = False

    def __post_init__(self) -> None:
        from transformers import Qwen2Config

        owner = "LLMConfig"
        _validate_backbone(owner, self.backbone, Qwen2Config, ("vocab_size", "hidden_size"))
        _positive_int(owner, "backbone.hidden_size", self.backbone["hidden_size"])
        _positive_int(owner, "backbone.vocab_size", self.backbone["vocab_size"])
        _choice(owner, "attn_implementation", self.attn_implementation, ("sdpa", "eager"))
        _choice(owner, "projector", self.projector, PROJECTORS)
        if not isinstance(self.status_queries, bool):
            _fail(owner, "status_queries", f"must be true or false, got {self.status_queries!r}")

    @property
    def hidden_size(self) -> int:
        """D_llm: the LLM width."""
        return int(self.backbone["hidden_size"])

    @property
    def vocab_size(self) -> int:
        return int(self.backbone["vocab_size"])

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": json.loads(json.dumps(self.backbone)), "attn_implementation": self.attn_implementation,
                "projector": self.projector, "status_queries": self.status_queries}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LLMConfig":
        _check_keys(cls, data, "llm")
        return cls(**dict(data))

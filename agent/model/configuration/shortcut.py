"""``ShortcutHeadConfig``: the trajectory regression head of the shortcut baseline."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ._checks import _check_keys, _choice, _positive_int

TRAJECTORY_LOSSES = ("mse", "l1")


@dataclass(frozen=True)
class ShortcutHeadConfig:
    """Trajectory head of the shortcut baseline.

    T learnable query tokens (one per waypoint) are appended to the LLM input; an MLP maps each
    query's last hidden state to a normalised (x, y) waypoint.

    Attributes:
        mlp_hidden_size: hidden width of the 2-layer MLP.
        loss: "l1" (default) or "mse" on normalised waypoints.
    """

    mlp_hidden_size: int = 256
    loss: str = "l1"

    def __post_init__(self) -> None:
        _positive_int("ShortcutHeadConfig", "mlp_hidden_size", self.mlp_hidden_size)
        _choice("ShortcutHeadConfig", "loss", self.loss, TRAJECTORY_LOSSES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ShortcutHeadConfig":
        _check_keys(cls, data, "head")
        return cls(**dict(data))

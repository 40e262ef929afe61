"""``FutureStateConfig``: the VLA's prediction of the future visual tokens."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ._checks import _check_keys, _choice, _fail, _positive_float, _positive_int

FUTURE_LOSSES = ("mse", "cosine")


@dataclass(frozen=True)
class FutureStateConfig:
    """Next-visual-state prediction by the VLA.

    Attributes:
        num_queries: learnable future queries; must equal K * F (K visual tokens per frame, F =
            ``len(horizons_s)``), so the prediction is the whole token grid of every future frame,
            ordered frame-major (horizon by horizon).
        horizons_s: how far ahead the predicted frames lie (s), strictly increasing, e.g. ``(3.0,)``
            (one frame at the end of the trajectory) or ``(1.0, 2.0, 3.0)``. The data pipeline picks
            the future frames at these offsets; the IK net reads all of them.
        loss: "mse" (default) or "cosine" regression against the stop-gradient future tokens.
        loss_weight: weight of the future-state loss in the total loss (>= 0).
        turn_weight: extra weight of a turning sample's future-state loss (>= 0; 0 = every sample
            alike). A sample whose labelled trajectory ends ``|y|`` metres to the side gets weight
            ``1 + turn_weight * min(|y| / turn_scale_m, 1)``, normalised to mean 1 over the batch.
            Turns are the frames whose future depends on the route (target point and command in the
            prompt), and they are few. Its effect on the tiny models is measured in
            docs/training.md (section 5): it does not make their VLA read the route.
        turn_scale_m: lateral offset (m) at which a sample gets the full ``turn_weight`` (> 0).

    A config written with the older single ``horizon_s`` key reads as ``horizons_s = (horizon_s,)``.
    """

    num_queries: int = 64
    horizons_s: tuple[float, ...] = (3.0,)
    loss: str = "mse"
    loss_weight: float = 1.0
    turn_weight: float = 0.0
    turn_scale_m: float = 5.0

    def __post_init__(self) -> None:
        owner = "FutureStateConfig"
        _positive_int(owner, "num_queries", self.num_queries)
        horizons = self.horizons_s
        if not isinstance(horizons, tuple) or not horizons:
            _fail(owner, "horizons_s", f"must be a non-empty tuple of seconds, got {horizons!r}")
        for h in horizons:
            _positive_float(owner, "horizons_s", h)
        if any(b <= a for a, b in zip(horizons, horizons[1:])):
            _fail(owner, "horizons_s", f"must be strictly increasing, got {horizons!r}")
        _choice(owner, "loss", self.loss, FUTURE_LOSSES)
        _positive_float(owner, "loss_weight", self.loss_weight, allow_zero=True)
        _positive_float(owner, "turn_weight", self.turn_weight, allow_zero=True)
        _positive_float(owner, "turn_scale_m", self.turn_scale_m)

    @property
    def num_frames(self) -> int:
        """F: predicted future frames."""
        return len(self.horizons_s)

    @property
    def horizon_s(self) -> float:
        """The farthest horizon (s)."""
        return float(self.horizons_s[-1])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["horizons_s"] = list(self.horizons_s)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FutureStateConfig":
        data = dict(data)
        if "horizon_s" in data:
            if "horizons_s" in data:
                raise ValueError("FutureStateConfig: give horizons_s or the older horizon_s, not both")
            data["horizons_s"] = [data.pop("horizon_s")]
        _check_keys(cls, data, "future")
        if "horizons_s" in data:
            value = data["horizons_s"]
            data["horizons_s"] = tuple(value) if isinstance(value, (list, tuple)) else value
        return cls(**data)


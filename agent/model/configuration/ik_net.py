"""``IKNetConfig``: the IK net (conditional diffusion decoder) and its schedulers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ._checks import _check_keys, _choice, _fail, _positive_float, _positive_int

PREDICTION_TYPES = ("epsilon", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TEACHER_FORCING = ("ground_truth", "predicted", "mix")


@dataclass(frozen=True)
class IKNetConfig:
    """The IK net (cross-attention conditional diffusion) and its schedulers.

    Attributes:
        hidden_size, num_layers, num_heads, mlp_ratio, dropout: transformer decoder size.
        memory_layers: self-attention layers over the joint memory of current and future tokens
            before the decoder reads it (0: none). They let every token compare itself with the
            tokens of the other frame, the matching that recovers the motion between them.
        flow_heads: heads of the token matcher (0: none). Each head softly matches every current
            token with the future tokens of the same camera and adds, to that token's memory
            entry, where its match lies on the patch grid relative to it (a displacement in
            patches) and how sharp the match is: the motion between the two frames made explicit.
        flow_values: per matcher head, this many learned features of the token compared with the same
            features of its soft match (match minus token), e.g. how much closer the matched object is
            in a depth-trained token space (0: none).
        num_train_timesteps: diffusion steps of the DDPM training scheduler.
        num_inference_steps: DDIM steps at inference (default of the pipeline call).
        beta_schedule: diffusers beta schedule name.
        prediction_type: what the network predicts, "sample" (clean trajectory, default) or "epsilon".
        teacher_forcing: future tokens the IK net sees in training: "ground_truth" (encoder tokens of
            the real future frame), "predicted" (the VLA's prediction, detached) or "mix".
        teacher_forcing_gt_prob: with "mix", probability per sample of the ground-truth tokens.
        loss_weight: weight of the diffusion (trajectory) loss in the total loss (>= 0).
        future_gradient: scale of the trajectory loss's gradient that reaches the VLA through the
            predicted future tokens the IK net is conditioned on (>= 0; 0: they are detached, so
            the VLA learns from the future-state loss alone). Above 0 the VLA is also taught which
            future state makes the IK net drive the label's trajectory (a trainable encoder gets it
            through the VLA's input tokens); the IK net still sees only the current and the
            predicted future tokens.
    """

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    memory_layers: int = 0
    flow_heads: int = 0
    flow_values: int = 0
    num_train_timesteps: int = 1000
    num_inference_steps: int = 3
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "sample"
    teacher_forcing: str = "mix"
    teacher_forcing_gt_prob: float = 0.5
    loss_weight: float = 1.0
    future_gradient: float = 0.0

    def __post_init__(self) -> None:
        owner = "IKNetConfig"
        _positive_int(owner, "hidden_size", self.hidden_size)
        _positive_int(owner, "num_layers", self.num_layers)
        _positive_int(owner, "num_heads", self.num_heads)
        if self.hidden_size % self.num_heads != 0:
            _fail(owner, "num_heads", f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        _positive_float(owner, "mlp_ratio", self.mlp_ratio)
        if not (isinstance(self.memory_layers, int) and not isinstance(self.memory_layers, bool) and self.memory_layers >= 0):
            _fail(owner, "memory_layers", f"must be an integer >= 0, got {self.memory_layers!r}")
        for name in ("flow_heads", "flow_values"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                _fail(owner, name, f"must be an integer >= 0, got {value!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            _fail(owner, "dropout", f"must be in [0, 1), got {self.dropout!r}")
        _positive_int(owner, "num_train_timesteps", self.num_train_timesteps)
        _positive_int(owner, "num_inference_steps", self.num_inference_steps)
        if self.num_inference_steps > self.num_train_timesteps:
            _fail(
                owner,
                "num_inference_steps",
                f"{self.num_inference_steps} exceeds num_train_timesteps {self.num_train_timesteps}",
            )
        _choice(owner, "beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        _choice(owner, "prediction_type", self.prediction_type, PREDICTION_TYPES)
        _choice(owner, "teacher_forcing", self.teacher_forcing, TEACHER_FORCING)
        p = self.teacher_forcing_gt_prob
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p <= 1.0):
            _fail(owner, "teacher_forcing_gt_prob", f"must be a probability in [0, 1], got {p!r}")
        _positive_float(owner, "loss_weight", self.loss_weight, allow_zero=True)
        _positive_float(owner, "future_gradient", self.future_gradient, allow_zero=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "IKNetConfig":
        _check_keys(cls, data, "ik_net")
        return cls(**dict(data))

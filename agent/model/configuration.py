"""Typed, validated, JSON-serialisable configurations of the model family.

Two top-level configs share the same sub-configs:

* :class:`IKDriveConfig` (``model_type = "ik_drive"``): vision encoder -> VLA that predicts the future
  visual tokens -> IK net (conditional diffusion) that decodes the trajectory.
* :class:`ShortcutConfig` (``model_type = "shortcut"``): the same encoder and LLM, ego status in the
  prompt, trajectory regressed from the LLM's hidden state, no future-state loss.

Every config validates itself on construction and raises ``ValueError`` naming the bad field.
``from_dict`` rejects unknown keys at every level (a typo in a JSON file is an error, not a silently
ignored setting). The transformers backbones (DINOv3 ViT, Qwen2) are described by their own config
keyword arguments in ``VisionConfig.backbone`` / ``LLMConfig.backbone``, checked against the
signatures of ``DINOv3ViTConfig`` / ``Qwen2Config``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

CONFIG_NAME = "config.json"

FUTURE_LOSSES = ("mse", "cosine")
PREDICTION_TYPES = ("epsilon", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TEACHER_FORCING = ("ground_truth", "predicted", "mix")
TRAJECTORY_LOSSES = ("mse", "l1")

# ImageNet statistics, which DINOv3's LVD-1689M checkpoints expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Keys of a transformers config dict that describe the file, not the architecture.
_BACKBONE_META_KEYS = frozenset(
    {
        "transformers_version",
        "architectures",
        "model_type",
        "dtype",
        "torch_dtype",
        "_name_or_path",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "use_cache",
        "id2label",
        "label2id",
        "problem_type",
        "chunk_size_feed_forward",
        "is_encoder_decoder",
    }
)


def _fail(owner: str, name: str, message: str) -> None:
    raise ValueError(f"{owner}.{name}: {message}")


def _check_keys(cls: type, data: Mapping[str, Any], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")


def _positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(owner, name, f"must be an integer >= {minimum}, got {value!r}")


def _positive_float(owner: str, name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        _fail(owner, name, f"must be a finite number {bound}, got {value!r}")


def _choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(owner, name, f"unknown value {value!r}; choose one of {list(choices)}")


def backbone_init_keys(config_cls: type) -> frozenset[str]:
    """Keyword arguments accepted by a transformers config class (architecture keys)."""
    params = inspect.signature(config_cls.__init__).parameters
    names = {n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    return frozenset(names - _BACKBONE_META_KEYS)


def backbone_dict_from_config(hf_config: Any) -> dict[str, Any]:
    """Architecture keys of a transformers config object, as a plain JSON-able dict.

    Keys that the config class does not take as constructor arguments (derived attributes such as
    ``stage_names``) and file meta data (``transformers_version``, ``dtype`` ...) are dropped.
    """
    keys = backbone_init_keys(type(hf_config))
    full = hf_config.to_dict()
    out = {k: v for k, v in full.items() if k in keys}
    # DINOv3 stores backbone stage selection under private names in __init__.
    for private in ("_out_features", "_out_indices"):
        out.pop(private, None)
    return json.loads(json.dumps(out))


def _validate_backbone(owner: str, backbone: Mapping[str, Any], config_cls: type, required: tuple[str, ...]) -> None:
    if not isinstance(backbone, Mapping):
        _fail(owner, "backbone", f"must be a dict of {config_cls.__name__} arguments")
    allowed = backbone_init_keys(config_cls)
    unknown = sorted(set(backbone) - allowed)
    if unknown:
        _fail(owner, "backbone", f"unknown {config_cls.__name__} argument(s) {unknown}")
    for key in required:
        if key not in backbone:
            _fail(owner, "backbone", f"missing required key {key!r}")


def _as_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(value)  # type: ignore[return-value]
    return value


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


PROJECTORS = ("linear", "mlp2x_gelu")


@dataclass(frozen=True)
class LLMConfig:
    """The Qwen2-family language model that reads the prompt and the visual tokens.

    Attributes:
        backbone: ``Qwen2Config`` keyword arguments (vocab_size, hidden_size, num_hidden_layers, ...).
        attn_implementation: transformers attention kernel ("sdpa" or "eager").
        projector: vision -> LLM projector, "linear" (LLaVA) or "mlp2x_gelu" (LLaVA-1.5: Linear,
            GELU, Linear).
    """

    backbone: dict[str, Any] = field(default_factory=dict)
    attn_implementation: str = "sdpa"
    projector: str = "linear"

    def __post_init__(self) -> None:
        from transformers import Qwen2Config

        owner = "LLMConfig"
        _validate_backbone(owner, self.backbone, Qwen2Config, ("vocab_size", "hidden_size"))
        _positive_int(owner, "backbone.hidden_size", self.backbone["hidden_size"])
        _positive_int(owner, "backbone.vocab_size", self.backbone["vocab_size"])
        _choice(owner, "attn_implementation", self.attn_implementation, ("sdpa", "eager"))
        _choice(owner, "projector", self.projector, PROJECTORS)

    @property
    def hidden_size(self) -> int:
        """D_llm: the LLM width."""
        return int(self.backbone["hidden_size"])

    @property
    def vocab_size(self) -> int:
        return int(self.backbone["vocab_size"])

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": json.loads(json.dumps(self.backbone)), "attn_implementation": self.attn_implementation,
                "projector": self.projector}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LLMConfig":
        _check_keys(cls, data, "llm")
        return cls(**dict(data))


@dataclass(frozen=True)
class TrajectoryConfig:
    """The planned trajectory: T waypoints in the ego frame (x forward, y right, metres).

    Attributes:
        num_waypoints: T; waypoint i (0-based) is at time (i + 1) * waypoint_dt.
        waypoint_dt: seconds between waypoints (0.5 s = 2 Hz).
    """

    num_waypoints: int = 6
    waypoint_dt: float = 0.5

    def __post_init__(self) -> None:
        _positive_int("TrajectoryConfig", "num_waypoints", self.num_waypoints)
        _positive_float("TrajectoryConfig", "waypoint_dt", self.waypoint_dt)

    @property
    def horizon_s(self) -> float:
        return self.num_waypoints * self.waypoint_dt

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrajectoryConfig":
        _check_keys(cls, data, "trajectory")
        return cls(**dict(data))


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

    A config written with the older single ``horizon_s`` key reads as ``horizons_s = (horizon_s,)``.
    """

    num_queries: int = 64
    horizons_s: tuple[float, ...] = (3.0,)
    loss: str = "mse"
    loss_weight: float = 1.0

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
        num_train_timesteps: diffusion steps of the DDPM training scheduler.
        num_inference_steps: DDIM steps at inference (default of the pipeline call).
        beta_schedule: diffusers beta schedule name.
        prediction_type: what the network predicts, "sample" (clean trajectory, default) or "epsilon".
        teacher_forcing: future tokens the IK net sees in training: "ground_truth" (encoder tokens of
            the real future frame), "predicted" (the VLA's prediction, detached) or "mix".
        teacher_forcing_gt_prob: with "mix", probability per sample of the ground-truth tokens.
        loss_weight: weight of the diffusion (trajectory) loss in the total loss (>= 0).
    """

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    memory_layers: int = 0
    flow_heads: int = 0
    num_train_timesteps: int = 1000
    num_inference_steps: int = 3
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "sample"
    teacher_forcing: str = "mix"
    teacher_forcing_gt_prob: float = 0.5
    loss_weight: float = 1.0

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
        if not (isinstance(self.flow_heads, int) and not isinstance(self.flow_heads, bool) and self.flow_heads >= 0):
            _fail(owner, "flow_heads", f"must be an integer >= 0, got {self.flow_heads!r}")
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "IKNetConfig":
        _check_keys(cls, data, "ik_net")
        return cls(**dict(data))


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


class _DrivingConfigMixin:
    """Properties every top-level config exposes to the agent (``pipe.config``)."""

    vision: VisionConfig
    trajectory: TrajectoryConfig

    @property
    def num_cameras(self) -> int:
        return self.vision.num_cameras

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every camera image."""
        return self.vision.image_size

    @property
    def num_waypoints(self) -> int:
        return self.trajectory.num_waypoints

    @property
    def waypoint_dt(self) -> float:
        return self.trajectory.waypoint_dt

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"  # type: ignore[attr-defined]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON (atomically: temp file then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json_string())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _check_vision_llm(vision: VisionConfig, llm: LLMConfig, owner: str) -> None:
    if not isinstance(vision, VisionConfig):
        _fail(owner, "vision", f"must be a VisionConfig, got {type(vision).__name__}")
    if not isinstance(llm, LLMConfig):
        _fail(owner, "llm", f"must be an LLMConfig, got {type(llm).__name__}")


@dataclass(frozen=True)
class IKDriveConfig(_DrivingConfigMixin):
    """The IK-grounded VLA: vision encoder + VLA (future-state prediction) + IK net."""

    model_type: ClassVar[str] = "ik_drive"

    vision: VisionConfig
    llm: LLMConfig
    ik_net: IKNetConfig = field(default_factory=IKNetConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    future: FutureStateConfig = field(default_factory=FutureStateConfig)

    def __post_init__(self) -> None:
        owner = "IKDriveConfig"
        _check_vision_llm(self.vision, self.llm, owner)
        for name, cls in (
            ("ik_net", IKNetConfig),
            ("trajectory", TrajectoryConfig),
            ("future", FutureStateConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                _fail(owner, name, f"must be a {cls.__name__}")
        k = self.vision.tokens_per_frame
        frames = self.future.num_frames
        if self.future.num_queries != k * frames:
            _fail(
                owner,
                "future.num_queries",
                f"{self.future.num_queries} must equal the visual tokens per frame times the future frames "
                f"N_cam * P * F = {self.vision.num_cameras} * {self.vision.tokens_per_camera} * {frames} = {k * frames}",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "vision": self.vision.to_dict(),
            "llm": self.llm.to_dict(),
            "ik_net": self.ik_net.to_dict(),
            "trajectory": self.trajectory.to_dict(),
            "future": self.future.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "IKDriveConfig":
        data = dict(data)
        _check_model_type(data, cls.model_type)
        allowed = {"vision", "llm", "ik_net", "trajectory", "future"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"IKDriveConfig: unknown key(s) {unknown}; known keys are {sorted(allowed | {'model_type'})}")
        for required in ("vision", "llm"):
            if required not in data:
                raise ValueError(f"IKDriveConfig: missing key {required!r}")
        return cls(
            vision=VisionConfig.from_dict(data["vision"]),
            llm=LLMConfig.from_dict(data["llm"]),
            ik_net=IKNetConfig.from_dict(data.get("ik_net", {})),
            trajectory=TrajectoryConfig.from_dict(data.get("trajectory", {})),
            future=FutureStateConfig.from_dict(data.get("future", {})),
        )


@dataclass(frozen=True)
class ShortcutConfig(_DrivingConfigMixin):
    """The shortcut baseline: same encoder and LLM, ego status in the prompt, no future state."""

    model_type: ClassVar[str] = "shortcut"

    vision: VisionConfig
    llm: LLMConfig
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    head: ShortcutHeadConfig = field(default_factory=ShortcutHeadConfig)

    def __post_init__(self) -> None:
        owner = "ShortcutConfig"
        _check_vision_llm(self.vision, self.llm, owner)
        if not isinstance(self.trajectory, TrajectoryConfig):
            _fail(owner, "trajectory", "must be a TrajectoryConfig")
        if not isinstance(self.head, ShortcutHeadConfig):
            _fail(owner, "head", "must be a ShortcutHeadConfig")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "vision": self.vision.to_dict(),
            "llm": self.llm.to_dict(),
            "trajectory": self.trajectory.to_dict(),
            "head": self.head.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ShortcutConfig":
        data = dict(data)
        _check_model_type(data, cls.model_type)
        allowed = {"vision", "llm", "trajectory", "head"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"ShortcutConfig: unknown key(s) {unknown}; known keys are {sorted(allowed | {'model_type'})}")
        for required in ("vision", "llm"):
            if required not in data:
                raise ValueError(f"ShortcutConfig: missing key {required!r}")
        return cls(
            vision=VisionConfig.from_dict(data["vision"]),
            llm=LLMConfig.from_dict(data["llm"]),
            trajectory=TrajectoryConfig.from_dict(data.get("trajectory", {})),
            head=ShortcutHeadConfig.from_dict(data.get("head", {})),
        )


DrivingConfig = IKDriveConfig | ShortcutConfig

CONFIG_CLASSES: dict[str, type] = {IKDriveConfig.model_type: IKDriveConfig, ShortcutConfig.model_type: ShortcutConfig}


def _check_model_type(data: dict[str, Any], expected: str) -> None:
    model_type = data.pop("model_type", None)
    if model_type != expected:
        raise ValueError(f"model_type: expected {expected!r}, got {model_type!r}")


def config_from_dict(data: Mapping[str, Any]) -> IKDriveConfig | ShortcutConfig:
    """Build the right top-level config from a dict, dispatching on ``model_type``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"config: expected a JSON object, got {type(data).__name__}")
    model_type = data.get("model_type")
    if model_type not in CONFIG_CLASSES:
        raise ValueError(f"model_type: unknown value {model_type!r}; choose one of {sorted(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[model_type].from_dict(data)


def load_config(path: str | os.PathLike[str]) -> IKDriveConfig | ShortcutConfig:
    """Read a config from a JSON file or from a checkpoint folder holding ``config.json``."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no model config at {path}")
    with path.open(encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    return config_from_dict(data)

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

The sub-configs live one per module (``vision``, ``llm``, ``trajectory``, ``future``, ``ik_net``,
``shortcut``; shared checks in ``_checks``); this package holds the two top-level configs,
``config_from_dict`` / ``load_config`` and re-exports every public name.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ._checks import _fail, backbone_dict_from_config, backbone_init_keys
from .future import FUTURE_LOSSES, FutureStateConfig
from .ik_net import BETA_SCHEDULES, PREDICTION_TYPES, TEACHER_FORCING, IKNetConfig
from .llm import PROJECTORS, LLMConfig
from .shortcut import TRAJECTORY_LOSSES, ShortcutHeadConfig
from .trajectory import TrajectoryConfig
from .vision import IMAGENET_MEAN, IMAGENET_STD, VisionConfig

__all__ = [
    "BETA_SCHEDULES",
    "CONFIG_CLASSES",
    "CONFIG_NAME",
    "DrivingConfig",
    "FUTURE_LOSSES",
    "FutureStateConfig",
    "IKDriveConfig",
    "IKNetConfig",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LLMConfig",
    "PREDICTION_TYPES",
    "PROJECTORS",
    "ShortcutConfig",
    "ShortcutHeadConfig",
    "TEACHER_FORCING",
    "TRAJECTORY_LOSSES",
    "TrajectoryConfig",
    "VisionConfig",
    "backbone_dict_from_config",
    "backbone_init_keys",
    "config_from_dict",
    "load_config",
]

CONFIG_NAME = "config.json"


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

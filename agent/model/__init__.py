"""The model family: DINOv3 encoder -> Qwen2 VLA (future visual state) -> IK net (trajectory).

Public API (docs/model.md has the shapes, frames and design choices)::

    from agent.model import load_pipeline, DrivingInputs, PlanOutput
    pipe = load_pipeline("weights/ik-tiny", device="cpu")
    out = pipe(DrivingInputs(images, command, speed, acceleration, target_point))

    from agent.model import build_preset, TrainingBatch
    model = build_preset("tiny")            # IKDriveModel (or model_type="shortcut")
    model.normalizer.fit(trajectories)      # [N, T, 2]
    loss = model.compute_loss(batch).loss
    model.save_pretrained("weights/ik-tiny")

Importing this package imports torch and transformers.
"""

from .checkpoint import CheckpointError
from .collapse import collapse_stats, effective_rank, is_collapsed
from .configuration import (
    FutureStateConfig,
    IKDriveConfig,
    IKNetConfig,
    LLMConfig,
    ShortcutConfig,
    ShortcutHeadConfig,
    TrajectoryConfig,
    VisionConfig,
    config_from_dict,
    load_config,
)
from .diffusion import build_inference_scheduler, build_train_scheduler, ddim_sample
from .ik_net import IKNet
from .interfaces import DrivingInputs, LossOutput, PlanOutput, TrainingBatch
from .modeling import IKDriveModel, future_state_loss
from .normalizer import TrajectoryNormalizer
from .pipeline import IKDrivePipeline, ShortcutPipeline, build_pipeline, load_model, load_pipeline
from .presets import PRESET_NAMES, build_preset, preset_config
from .shortcut import ShortcutModel
from .tokenization import build_prompt_tokenizer, format_prompt, format_prompts
from .vision import VisionEncoder
from .vla import FutureStatePredictor, PromptedQueryLLM

__all__ = [
    "CheckpointError",
    "DrivingInputs",
    "FutureStateConfig",
    "FutureStatePredictor",
    "IKDriveConfig",
    "IKDriveModel",
    "IKDrivePipeline",
    "IKNet",
    "IKNetConfig",
    "LLMConfig",
    "LossOutput",
    "PRESET_NAMES",
    "PlanOutput",
    "PromptedQueryLLM",
    "ShortcutConfig",
    "ShortcutHeadConfig",
    "ShortcutModel",
    "ShortcutPipeline",
    "TrainingBatch",
    "TrajectoryConfig",
    "TrajectoryNormalizer",
    "VisionConfig",
    "VisionEncoder",
    "build_inference_scheduler",
    "build_pipeline",
    "build_preset",
    "build_prompt_tokenizer",
    "build_train_scheduler",
    "collapse_stats",
    "config_from_dict",
    "ddim_sample",
    "effective_rank",
    "format_prompt",
    "format_prompts",
    "future_state_loss",
    "is_collapsed",
    "load_config",
    "load_model",
    "load_pipeline",
    "preset_config",
]

"""Named configurations of the model family.

* ``tiny`` (default for the sandbox): random init, CPU friendly. 1 camera 128x128 RGB, DINOv3-style
  ViT (patch 16 -> 64 tokens, width 128, 4 layers), Qwen2 LLM (width 128, 4 layers, 4 heads / 2 KV
  heads), IK net width 128 x 4 layers, T = 6 waypoints (3 s), DDIM 3 steps, future horizon 3 s.
  Its tokenizer is built in code (:func:`build_prompt_tokenizer`).
* ``0.5b``: the paper's configuration, Qwen2.5-0.5B-Instruct + DINOv3 ViT-S/16 (frozen), 3 cameras
  288x160 (W x H) -> 3 x 180 = 540 tokens. Built from LOCAL folders of those weights
  (``llm_path``, ``vision_path``) with ``from_pretrained(local_files_only=True)``; the tokenizer is
  the LLM folder's. Nothing is ever downloaded.
* ``0.5b-random``: the ``0.5b`` architecture with random weights and the tiny prompt tokenizer, for
  latency and memory measurements only (no download needed).

``build_preset(name, seed=0, llm_path=None, vision_path=None, **overrides)`` returns a model;
``preset_config`` returns only the config. Overrides (all optional): see :class:`PresetOverrides`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .configuration import (
    FutureStateConfig,
    IKDriveConfig,
    IKNetConfig,
    LLMConfig,
    ShortcutConfig,
    ShortcutHeadConfig,
    TrajectoryConfig,
    VisionConfig,
    backbone_dict_from_config,
)
from .tokenization import build_prompt_tokenizer

PRESET_NAMES = ("tiny", "0.5b", "0.5b-random")

# Architecture of Qwen2.5-0.5B-Instruct (config.json of the released model).
QWEN25_05B_ARCH: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}

# Architecture of DINOv3 ViT-S/16 (LVD-1689M release).
DINOV3_VITS16_ARCH: dict[str, Any] = {
    "patch_size": 16,
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "num_register_tokens": 4,
    "rope_theta": 100.0,
    "layerscale_value": 1.0,
    "query_bias": True,
    "key_bias": False,
    "value_bias": True,
    "use_gated_mlp": False,
    "image_size": 224,
}


@dataclass(frozen=True)
class PresetOverrides:
    """Settings a preset lets you change (``None`` keeps the preset's value).

    model_type: "ik_drive" (default) or "shortcut". num_cameras, image_size (H, W): camera rig.
    patch_size: vision patch size (``tiny`` only; the 0.5b presets keep DINOv3's 16).
    num_waypoints, waypoint_dt: trajectory. num_inference_steps, prediction_type, teacher_forcing,
    teacher_forcing_gt_prob, ik_memory_layers, ik_flow_heads, ik_flow_values, ik_future_gradient: IK net. future_horizons_s (several
    future frames) or future_horizon_s (one), future_loss, future_turn_weight: future state. freeze_vision:
    freeze the DINOv3 weights. projector, status_queries: the LLM's inputs (``LLMConfig``).
    """

    model_type: str | None = None
    num_cameras: int | None = None
    image_size: tuple[int, int] | None = None
    patch_size: int | None = None
    num_waypoints: int | None = None
    waypoint_dt: float | None = None
    num_inference_steps: int | None = None
    prediction_type: str | None = None
    teacher_forcing: str | None = None
    teacher_forcing_gt_prob: float | None = None
    ik_memory_layers: int | None = None
    ik_flow_heads: int | None = None
    ik_flow_values: int | None = None
    ik_future_gradient: float | None = None
    future_horizon_s: float | None = None
    future_horizons_s: tuple[float, ...] | None = None
    future_loss: str | None = None
    future_turn_weight: float | None = None
    freeze_vision: bool | None = None
    projector: str | None = None
    status_queries: bool | None = None


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _compose(
    o: PresetOverrides,
    vision_backbone: dict[str, Any],
    llm_backbone: dict[str, Any],
    *,
    num_cameras: int,
    image_size: tuple[int, int],
    freeze_vision: bool,
    ik_net: IKNetConfig,
) -> IKDriveConfig | ShortcutConfig:
    vision = VisionConfig(
        num_cameras=_pick(o.num_cameras, num_cameras),
        image_size=tuple(_pick(o.image_size, image_size)),
        backbone=vision_backbone,
        freeze=_pick(o.freeze_vision, freeze_vision),
    )
    llm = LLMConfig(backbone=llm_backbone, projector=_pick(o.projector, "linear"),
                    status_queries=bool(_pick(o.status_queries, False)))
    trajectory = TrajectoryConfig(num_waypoints=_pick(o.num_waypoints, 6), waypoint_dt=_pick(o.waypoint_dt, 0.5))
    model_type = _pick(o.model_type, IKDriveConfig.model_type)
    if model_type == ShortcutConfig.model_type:
        return ShortcutConfig(vision=vision, llm=llm, trajectory=trajectory, head=ShortcutHeadConfig())
    if model_type != IKDriveConfig.model_type:
        raise ValueError(f"model_type: unknown value {model_type!r}; choose 'ik_drive' or 'shortcut'")
    ik_net = dataclasses.replace(
        ik_net,
        num_inference_steps=_pick(o.num_inference_steps, ik_net.num_inference_steps),
        prediction_type=_pick(o.prediction_type, ik_net.prediction_type),
        teacher_forcing=_pick(o.teacher_forcing, ik_net.teacher_forcing),
        teacher_forcing_gt_prob=_pick(o.teacher_forcing_gt_prob, ik_net.teacher_forcing_gt_prob),
        memory_layers=_pick(o.ik_memory_layers, ik_net.memory_layers),
        flow_heads=_pick(o.ik_flow_heads, ik_net.flow_heads),
        flow_values=_pick(o.ik_flow_values, ik_net.flow_values),
        future_gradient=float(_pick(o.ik_future_gradient, ik_net.future_gradient)),
    )
    if o.future_horizons_s is not None and o.future_horizon_s is not None:
        raise ValueError("future_horizons_s / future_horizon_s: give one of the two")
    if o.future_horizons_s is not None:
        horizons = tuple(float(h) for h in o.future_horizons_s)
    else:
        horizons = (float(_pick(o.future_horizon_s, trajectory.horizon_s)),)
    future = FutureStateConfig(
        num_queries=vision.tokens_per_frame * len(horizons),
        horizons_s=horizons,
        loss=_pick(o.future_loss, "mse"),
        turn_weight=float(_pick(o.future_turn_weight, 0.0)),
    )
    return IKDriveConfig(vision=vision, llm=llm, ik_net=ik_net, trajectory=trajectory, future=future)


def _tiny_config(o: PresetOverrides, vocab_size: int) -> IKDriveConfig | ShortcutConfig:
    image_size = tuple(_pick(o.image_size, (128, 128)))
    vision_backbone = {
        "patch_size": _pick(o.patch_size, 16),
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_register_tokens": 0,
        "image_size": list(image_size),
        # No RoPE coordinate augmentation: the future-token target must be a deterministic function.
        "pos_embed_rescale": None,
    }
    llm_backbone = {
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": False,
        "pad_token_id": 0,
    }
    return _compose(
        o,
        vision_backbone,
        llm_backbone,
        num_cameras=1,
        image_size=image_size,
        freeze_vision=False,
        ik_net=IKNetConfig(hidden_size=128, num_layers=4, num_heads=4, num_inference_steps=3),
    )


_IK_NET_05B = IKNetConfig(hidden_size=256, num_layers=6, num_heads=8, num_inference_steps=3)


def _folder(path: str | Path | None, name: str) -> Path:
    if path is None:
        raise ValueError(f"{name}: the 0.5b preset needs a local folder of pretrained weights")
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{name}: {folder} is not a local transformers model folder (no config.json)")
    return folder


def preset_config(
    name: str, *, llm_path: str | Path | None = None, vision_path: str | Path | None = None, **overrides: Any
) -> IKDriveConfig | ShortcutConfig:
    """The config of a preset (reads only the config.json files of the 0.5b folders)."""
    o = PresetOverrides(**overrides)
    if o.patch_size is not None and name != "tiny":
        raise ValueError(f"patch_size: only the 'tiny' preset takes it ({name!r} keeps the pretrained encoder's 16)")
    if name == "tiny":
        return _tiny_config(o, vocab_size=len(build_prompt_tokenizer()))
    if name == "0.5b-random":
        return _compose(
            o, dict(DINOV3_VITS16_ARCH), dict(QWEN25_05B_ARCH),
            num_cameras=3, image_size=(160, 288), freeze_vision=True, ik_net=_IK_NET_05B,
        )
    if name == "0.5b":
        from transformers import DINOv3ViTConfig, Qwen2Config

        vision_hf = DINOv3ViTConfig.from_pretrained(str(_folder(vision_path, "vision_path")), local_files_only=True)
        llm_hf = Qwen2Config.from_pretrained(str(_folder(llm_path, "llm_path")), local_files_only=True)
        return _compose(
            o, backbone_dict_from_config(vision_hf), backbone_dict_from_config(llm_hf),
            num_cameras=3, image_size=(160, 288), freeze_vision=True, ik_net=_IK_NET_05B,
        )
    raise ValueError(f"preset: unknown name {name!r}; choose one of {list(PRESET_NAMES)}")


def _model_class(config: IKDriveConfig | ShortcutConfig):
    from .modeling import IKDriveModel
    from .shortcut import ShortcutModel

    return IKDriveModel if isinstance(config, IKDriveConfig) else ShortcutModel


def build_preset(
    name: str,
    *,
    seed: int = 0,
    llm_path: str | Path | None = None,
    vision_path: str | Path | None = None,
    **overrides: Any,
):
    """Build a model (IKDriveModel or ShortcutModel) of a preset on the CPU.

    Random parts are initialised from ``seed`` without touching the global RNG. For ``0.5b`` the
    DINOv3 and Qwen2 weights and the tokenizer come from the local folders ``vision_path`` and
    ``llm_path`` (``local_files_only=True``); projector, queries, heads and IK net are random.
    """
    config = preset_config(name, llm_path=llm_path, vision_path=vision_path, **overrides)
    cls = _model_class(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "0.5b":
            from transformers import AutoTokenizer, DINOv3ViTModel, Qwen2Model

            vision = DINOv3ViTModel.from_pretrained(
                str(vision_path), local_files_only=True, dtype=torch.float32, attn_implementation="sdpa"
            )
            llm = Qwen2Model.from_pretrained(
                str(llm_path), local_files_only=True, dtype=torch.float32,
                attn_implementation=config.llm.attn_implementation,
            )
            tokenizer = AutoTokenizer.from_pretrained(str(llm_path), local_files_only=True)
            model = cls(config, tokenizer, vision_backbone=vision, llm_backbone=llm)
        else:
            model = cls(config, build_prompt_tokenizer())
    return model.eval()

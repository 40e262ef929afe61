"""Typed training configs, loaded from YAML. Unknown or missing keys are errors that name the key.

A config file is one :class:`TrainConfig`; every section is a dataclass below. Relative paths in a
config are resolved against the current working directory (run commands from the repository root).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from training.critical_frames import CriticalFrameConfig


class ConfigError(ValueError):
    """A config file or dict does not match its dataclass (message gives the dotted key)."""


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {tp} ({'; '.join(errors)})")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        seq = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        vt = args[1] if args else Any
        return {str(k): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a plain dict, recursively; unknown / missing keys raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__} (known: {sorted(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r} for {cls.__name__}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict (lists for tuples) suitable for YAML / JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


@dataclass
class Bench2DriveOptions:
    """How Bench2Drive clips are read (``training.bench2drive.Bench2DriveConfig``; the trajectory
    and the future horizon come from the model's config)."""

    cameras: list[str] = field(default_factory=lambda: ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"])
    route_source: Literal["planner", "anno"] = "planner"
    box_classes: list[str] = field(default_factory=lambda: ["vehicle", "walker"])
    max_box_distance_m: float = 50.0
    max_gnss_offset_m: float = 5.0


@dataclass
class DataConfig:
    """Where samples come from.

    ``format``: "episodes" (folders of collected ``.npz`` episodes) or "bench2drive" (a folder
    holding Bench2Drive clips, read by ``training.bench2drive`` with the ``bench2drive`` options).
    ``train_dir``: a collected dataset folder (or the Bench2Drive root); ``extra_train_dirs``: more
    folders whose episodes join the training set. Validation uses ``val_dir`` when set, otherwise the
    episodes of ``train_dir`` whose route id is in ``val_route_ids`` (held out of training).
    ``perturbed_label``: label of frames whose future window contains a control perturbation (or a
    DAgger student's driving): "plan" (the expert's recorded plan), "actual" (the perturbed actual
    path) or "drop". ``mask_plan_label_future`` (IK model, stage (b)): a frame labelled with the
    expert's plan gets no future-state loss and no ground-truth teacher forcing, since its future
    frames show what another driver did (``TrainingBatch.future_valid``; the DAgger loop's
    fine-tunes set it).
    ``max_train_frames`` / ``max_val_frames`` cap the sample counts (evenly strided; None = all).
    ``token_cache`` (stage (b) with a frozen encoder): encode every frame once
    (``training.token_cache``) into ``token_cache_dir`` (default: ``token_cache/`` beside each
    episode's folder) and train on the cached tokens instead of the images.
    ``turn_repeat`` (stage (b)): a training frame whose labelled trajectory ends at least
    ``turn_repeat_min_m`` to the side is drawn ``turn_repeat`` times per epoch (1 = no
    oversampling; ``training.dataset.turn_repeats``). Turns are few and they are where the route in
    the prompt changes the future. ``critical`` (stage (b)): the rare, critical frames (braking,
    starting, lane changes, turns; ``training.critical_frames``) are drawn ``critical.repeat``
    times per epoch (1 = off). A frame that is both takes the larger of the two repeats.
    """

    train_dir: str
    extra_train_dirs: list[str] = field(default_factory=list)
    format: Literal["episodes", "bench2drive"] = "episodes"
    bench2drive: Bench2DriveOptions = field(default_factory=Bench2DriveOptions)
    val_dir: str | None = None
    val_route_ids: list[str] = field(default_factory=list)
    perturbed_label: Literal["plan", "actual", "drop"] = "plan"
    cache_images: bool = True
    token_cache: bool = False
    token_cache_dir: str | None = None
    num_workers: int = 0
    max_train_frames: int | None = None
    max_val_frames: int | None = 256
    turn_repeat: int = 1
    turn_repeat_min_m: float = 3.0
    critical: CriticalFrameConfig = field(default_factory=CriticalFrameConfig)
    mask_plan_label_future: bool = False


@dataclass
class LoRAConfig:
    """Low-rank adapters on the LLM's linear layers named in ``target_modules``: W x + (alpha / rank)
    B A x, with A [rank, in] random and B [out, rank] zero at the start; the LLM's own weights stay
    frozen. ``enabled: false`` trains the whole LLM (full fine-tune)."""

    enabled: bool = False
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class ModelConfig:
    """Which model to build and how to initialise it.

    ``kind``: "ik" (IK-grounded VLA) or "shortcut" (baseline). ``preset``, ``overrides`` and the
    local pretrained folders ``llm_path`` / ``vision_path`` (preset "0.5b") go to
    ``agent.model.build_preset``. ``lora``: train low-rank adapters of the LLM instead of all its
    weights (merged into the saved model). ``gradient_checkpointing``: recompute the LLM's
    activations in the backward pass (less memory). ``encoder_from``: a stage-(a) output folder whose encoder weights
    are loaded (strictly) into the model's vision encoder. ``init_from``: a saved model folder to
    start from (``from_pretrained``). ``freeze_encoder``: keep the vision encoder fixed.
    ``ik_net_from``: an IK net trained alone on the frozen encoder's real-future tokens
    (``python -m training.ik_study --save DIR``): its weights and trajectory normaliser start the IK
    model's IK net (strictly: same IK config, token layout and future frames; the normaliser is
    taken, not refitted, so the IK net's outputs keep their meaning).
    """

    kind: Literal["ik", "shortcut"] = "ik"
    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    llm_path: str | None = None
    vision_path: str | None = None
    lora: LoRAConfig = field(default_factory=lambda: LoRAConfig())
    gradient_checkpointing: bool = False
    encoder_from: str | None = None
    init_from: str | None = None
    freeze_encoder: bool = True
    ik_net_from: str | None = None


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine (or constant) decay; ``max_steps`` optimizer steps."""

    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 50
    max_steps: int = 1000
    batch_size: int = 16
    grad_clip: float = 1.0
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1


@dataclass
class PretrainConfig:
    """Stage (a): reconstruct the camera image from the encoder's patch tokens (then freeze).

    The target is the camera image downsampled by ``target_downsample`` (each token predicts its
    patch's pixels); pixels that differ from the image's most common colour (the road / background)
    get weight ``foreground_weight`` so that small vehicles matter (loss weight ``rgb_weight``).
    ``depth_weight`` / ``semantic_weight`` > 0 add the dense targets (episodes recorded with
    ``--ground-truth``): log planar depth clipped to [``min_depth_m``, ``max_depth_m``] (L1) and the
    CARLA semantic tag (cross-entropy over ``num_semantic_classes``), per cell of the same grid.
    ``motion_weight`` > 0 adds the ego-motion objective (a cross-view objective): a small token
    matcher over the tokens of the current frame and of one future frame (a random horizon of the
    model's ``future.horizons_s`` per sample) regresses where the ego is at that future frame
    (smooth L1 on metres / ``motion_scale_m``), so matching tokens across frames reveals the motion.
    """

    target_downsample: int = 2
    foreground_weight: float = 5.0
    rgb_weight: float = 1.0
    depth_weight: float = 0.0
    semantic_weight: float = 0.0
    min_depth_m: float = 1.0
    max_depth_m: float = 100.0
    num_semantic_classes: int = 29
    motion_weight: float = 0.0
    motion_scale_m: float = 10.0


@dataclass
class LogConfig:
    """Output folder and cadences (in optimizer steps)."""

    output_dir: str = "runs/train"
    log_every: int = 10
    eval_every: int = 200
    save_every: int = 200
    keep_last: int = 2
    tensorboard: bool = True


@dataclass
class EvalConfig:
    """Validation: open-loop L2 at these horizons (s) and collision with GT boxes.

    ``num_inference_steps``: diffusion steps at validation (None = the model's default).
    """

    horizons_s: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0])
    num_inference_steps: int | None = None
    batch_size: int = 32


@dataclass
class TrainConfig:
    """One training run. ``stage``: "pretrain_encoder" (a) or "train" (b)."""

    stage: Literal["pretrain_encoder", "train"]
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    num_threads: int = 1  # torch CPU threads
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML file into a :class:`TrainConfig` (errors name the file and the key)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return from_dict(TrainConfig, data, where=str(path))


def dump_config(cfg: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML (round-trips through :func:`load_config`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

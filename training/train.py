"""Entry point: ``python -m training.train --config training/configs/<name>.yaml [--resume auto|DIR]``.

Builds the objects a config describes (datasets, model, task, accelerator) and runs the trainer.
Stages: ``pretrain_encoder`` (a) writes a pre-trained encoder folder; ``train`` (b) trains the IK
model or the shortcut baseline (optionally from a stage-(a) encoder, frozen) and writes a
``save_pretrained`` model folder to ``<output_dir>/final``.
Multi-GPU: ``accelerate launch -m training.train --config ...`` (same code).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import ConfigError, ModelConfig, TrainConfig, dump_config, load_config
from training.dataset import DrivingDataset
from training.manifest import DatasetScan, scan_dataset
from training.trainer import Trainer, TrainResult

logger = logging.getLogger("training")

MODEL_TYPES = {"ik": "ik_drive", "shortcut": "shortcut"}


# The model.overrides that apply to a model loaded with model.init_from (its other settings are the
# saved config's): loss settings, and an input path that starts at zero (status_queries).
INIT_FROM_OVERRIDES = ("future_turn_weight", "ik_future_gradient", "status_queries")


def adapt_saved_model(model: Any, overrides: dict[str, Any]) -> Any:
    """``model`` with :data:`INIT_FROM_OVERRIDES` applied to its config, every saved tensor kept.

    Turning ``status_queries`` on adds the LLM's zero-initialised status projector, so the adapted
    model plans exactly as the saved one until it is trained; any other tensor missing or left over
    is an error."""
    config = model.config
    if "future_turn_weight" in overrides:
        if not hasattr(config, "future"):
            raise ConfigError("model.overrides.future_turn_weight: only for an IK model")
        config = dataclasses.replace(config, future=dataclasses.replace(
            config.future, turn_weight=float(overrides["future_turn_weight"])))
    if "ik_future_gradient" in overrides:
        if not hasattr(config, "ik_net"):
            raise ConfigError("model.overrides.ik_future_gradient: only for an IK model")
        config = dataclasses.replace(config, ik_net=dataclasses.replace(
            config.ik_net, future_gradient=float(overrides["ik_future_gradient"])))
    if "status_queries" in overrides:
        config = dataclasses.replace(config, llm=dataclasses.replace(
            config.llm, status_queries=bool(overrides["status_queries"])))
    if config == model.config:
        return model
    with torch.random.fork_rng(devices=[]):  # the new parts' init must not move the caller's RNG
        adapted = type(model)(config, model.tokenizer)
    missing, unexpected = adapted.load_state_dict(model.state_dict(), strict=False)
    new = {k for k in adapted.state_dict() if ".status_projector." in k} if config.llm.status_queries else set()
    if unexpected or set(missing) != (new - set(model.state_dict())):
        raise ConfigError(f"model.overrides {sorted(overrides)}: the saved model does not fit the adapted one "
                          f"(missing {sorted(missing)}, unexpected {sorted(unexpected)})")
    adapted.set_vision_frozen(model.vision_frozen)
    return adapted.to(model.device).train(model.training)


def build_model(cfg: ModelConfig, seed: int) -> Any:
    """A fresh model of ``cfg.preset`` (or the model saved at ``cfg.init_from``)."""
    from agent.model.pipeline import load_model
    from agent.model.presets import PresetOverrides, build_preset

    if cfg.init_from is not None:
        model = load_model(cfg.init_from)
        if model.config.model_type != MODEL_TYPES[cfg.kind]:
            raise ConfigError(f"model.init_from {cfg.init_from} holds a {model.config.model_type!r} model, config says {cfg.kind!r}")
        return adapt_saved_model(model, {k: v for k, v in cfg.overrides.items() if k in INIT_FROM_OVERRIDES})
    overrides = dict(cfg.overrides)
    known = {f.name for f in dataclasses.fields(PresetOverrides)} - {"model_type"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"model.overrides: unknown key(s) {unknown} (known: {sorted(known)})")
    if "image_size" in overrides:
        overrides["image_size"] = tuple(overrides["image_size"])
    return build_preset(cfg.preset, seed=seed, model_type=MODEL_TYPES[cfg.kind], llm_path=cfg.llm_path,
                        vision_path=cfg.vision_path, **overrides)


def configure_llm_training(model: Any, cfg: ModelConfig) -> list[str]:
    """LoRA adapters (``cfg.lora.enabled``) and gradient checkpointing on the model's LLM; returns
    the names of the adapted layers (empty for a full fine-tune)."""
    from training.lora import apply_lora

    llm = model.vla.llm
    if cfg.gradient_checkpointing:
        enable = getattr(llm, "activation_checkpointing_enable", None)
        if enable is not None:  # transformers >= 5.x name
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not cfg.lora.enabled:
        return []
    lo = cfg.lora
    return apply_lora(llm, lo.target_modules, lo.rank, lo.alpha, lo.dropout)


def bench2drive_config(cfg: TrainConfig, model_config: Any) -> Any:
    """The clip reader's config: the data section's options plus the model's trajectory and horizon."""
    from training.bench2drive import Bench2DriveConfig

    o = cfg.data.bench2drive
    horizon = getattr(getattr(model_config, "future", None), "horizon_s", None)
    try:
        return Bench2DriveConfig(
            cameras=tuple(o.cameras), route_source=o.route_source, box_classes=tuple(o.box_classes),
            max_box_distance_m=o.max_box_distance_m, max_gnss_offset_m=o.max_gnss_offset_m,
            num_waypoints=model_config.num_waypoints, waypoint_dt=model_config.waypoint_dt,
            horizon_s=horizon if horizon is not None else model_config.num_waypoints * model_config.waypoint_dt,
        )
    except ValueError as exc:
        raise ConfigError(f"data.{exc}") from None


def split_data(cfg: TrainConfig, model_config: Any = None) -> tuple[DatasetScan, DatasetScan | None]:
    """(train scan, validation scan) per ``cfg.data`` (see :class:`training.config.DataConfig`);
    Bench2Drive clips are labelled for ``model_config`` (its waypoints and future horizon)."""
    d = cfg.data
    if d.format == "bench2drive":
        from training.bench2drive import scan_bench2drive

        if model_config is None:
            raise ConfigError("data.format bench2drive: the model config is needed to label the clips")
        b2d = bench2drive_config(cfg, model_config)

        def read(root: str) -> DatasetScan:
            return scan_bench2drive(root, b2d)
    else:
        read = scan_dataset
    scan = read(d.train_dir)
    for extra in d.extra_train_dirs:
        more = read(extra)
        scan = DatasetScan(scan.root, scan.episodes + more.episodes, scan.skipped + more.skipped, scan.manifest)
    if d.val_dir is not None:
        val = read(d.val_dir)
    elif d.val_route_ids:
        held = set(d.val_route_ids)
        val = DatasetScan(scan.root, [e for e in scan.episodes if e.meta.route_id in held], [], scan.manifest)
        scan = DatasetScan(scan.root, [e for e in scan.episodes if e.meta.route_id not in held], scan.skipped, scan.manifest)
        if not val.episodes:
            raise ConfigError(f"data.val_route_ids {sorted(held)}: no such route in {d.train_dir}")
    else:
        val = None
    if not scan.episodes:
        raise ConfigError(f"data.train_dir {d.train_dir}: no usable episodes\n{scan.report()}")
    return scan, val


def ego_size(scan: DatasetScan) -> tuple[float, float]:
    sizes = {tuple(e.meta.ego_size) for e in scan.episodes}
    return tuple(max(sizes)) if sizes else (5.0, 2.0)  # type: ignore[return-value]


def make_accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def run(cfg: TrainConfig, resume: str | None = None, accelerator: Any = None) -> TrainResult:
    """Run one stage described by ``cfg``; returns the trainer's result."""
    from training.planner_task import PlannerTask, is_ik_model
    from training.pretrain import EncoderPretrainTask, load_pretrained_encoder

    torch.set_num_threads(cfg.num_threads)
    acc = accelerator or make_accelerator(cfg)
    out = Path(cfg.log.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    model = build_model(cfg.model, cfg.seed)
    train_scan, val_scan = split_data(cfg, model.config)
    for s in (train_scan, val_scan):
        if s is not None and s.skipped:
            logger.warning(s.report())
    ik = is_ik_model(model)
    horizons = list(model.config.future.horizons_s) if ik else None
    pretrain = cfg.stage == "pretrain_encoder"
    if pretrain:
        task: Any = EncoderPretrainTask(model.get_vision_encoder(), cfg.pretrain, model.config.vision.to_dict())
    else:
        if cfg.model.encoder_from is not None:
            load_pretrained_encoder(model.get_vision_encoder(), cfg.model.encoder_from, model.config.vision.to_dict())
        model.set_vision_frozen(cfg.model.freeze_encoder)
    if cfg.model.ik_net_from is not None and (not ik or pretrain or cfg.model.init_from is not None):
        raise ConfigError("model.ik_net_from: only for stage 'train' of a fresh IK model (kind: ik, no init_from)")
    if pretrain and cfg.data.turn_repeat != 1:
        raise ConfigError("data.turn_repeat: only for stage 'train'")
    if pretrain and cfg.data.critical.repeat != 1:
        raise ConfigError("data.critical.repeat: only for stage 'train'")
    if cfg.data.mask_plan_label_future and (pretrain or not ik):
        raise ConfigError("data.mask_plan_label_future: only for stage 'train' of an IK model (the future-state loss)")
    motion = pretrain and task.needs_motion
    if motion and not ik:
        raise ConfigError("pretrain.motion_weight: needs an IK model's future.horizons_s (model.kind: ik)")
    use_cache = not pretrain and cfg.data.token_cache
    if use_cache and not model.vision_frozen:
        raise ConfigError("data.token_cache: needs a frozen encoder (model.freeze_encoder: true)")

    def dataset(scan: DatasetScan, max_frames: int | None, with_boxes: bool) -> DrivingDataset:
        ds = DrivingDataset(scan.episodes, image_size=model.config.image_size, perturbed_label=cfg.data.perturbed_label,
                            max_frames=max_frames, horizon_s=horizons, cache_images=cfg.data.cache_images and not use_cache,
                            with_boxes=with_boxes, ground_truth=pretrain and task.needs_ground_truth,
                            with_future=(ik and not pretrain) or motion, with_motion=motion,
                            with_future_valid=ik and not pretrain and cfg.data.mask_plan_label_future)
        if use_cache:
            from training.token_cache import build_token_cache

            ds.tokens = build_token_cache(model.get_vision_encoder(), scan.episodes, model.config.image_size,
                                          ds.camera_ids, cache_dir=cfg.data.token_cache_dir, log=logger.info)
        return ds

    train_ds = dataset(train_scan, cfg.data.max_train_frames, False)
    val_ds = dataset(val_scan, cfg.data.max_val_frames, True) if val_scan is not None else None
    logger.info("train samples %d, validation samples %d", len(train_ds), len(val_ds) if val_ds else 0)
    if not pretrain:
        adapted = configure_llm_training(model, cfg.model)
        if adapted:
            logger.info("LoRA rank %d on %d LLM layers", cfg.model.lora.rank, len(adapted))
        labels = None  # [S, T, 2] m, read once from the episodes when needed
        if cfg.model.ik_net_from is not None:
            from training.ik_net_io import load_ik_net

            load_ik_net(model, cfg.model.ik_net_from)  # the IK net and the normaliser it was trained with
        elif cfg.model.init_from is None:
            labels = train_ds.all_trajectories()
            model.normalizer.fit(torch.from_numpy(labels))
        task = PlannerTask(model, cfg.eval, ego_size(train_scan), seed=cfg.seed)
        if cfg.data.turn_repeat != 1 or cfg.data.critical.repeat != 1:
            train_ds = oversampled(train_ds, cfg.data, labels)
    trainer = Trainer(task, train_ds, val_ds, cfg.optim, cfg.log, cfg.seed, acc, run_config=cfg)
    return trainer.run(resume=resume)


def oversampled(train_ds: Any, data: Any, labels: np.ndarray | None) -> Any:
    """``train_ds`` with its turning frames (``data.turn_repeat``) and critical frames
    (``data.critical``) listed more than once; a frame that is both takes the larger count."""
    from training.critical_frames import classify, repeats_of
    from training.dataset import RepeatedSamples, turn_repeats

    labels = train_ds.all_trajectories() if labels is None else labels
    try:
        repeats = turn_repeats(labels, data.turn_repeat, data.turn_repeat_min_m)
    except ValueError as exc:
        raise ConfigError(f"data.turn_repeat / turn_repeat_min_m: {exc}") from exc
    if data.turn_repeat != 1:
        logger.info("turn oversampling: %d of %d frames drawn %d times per epoch", int((repeats > 1).sum()),
                    len(repeats), data.turn_repeat)
    if data.critical.repeat != 1:
        speed = train_ds.recorded("speed").astype(np.float64)
        kinds = classify(labels, speed, data.critical)
        critical = repeats_of(kinds, data.critical)
        logger.info("critical frames of %d: %s (%d of any of kinds %s), drawn %d times per epoch", len(labels),
                    ", ".join(f"{k} {int(m.sum())}" for k, m in kinds.items()), int((critical > 1).sum()),
                    data.critical.kinds, data.critical.repeat)
        repeats = np.maximum(repeats, critical)
    logger.info("epoch: %d draws of %d frames", int(repeats.sum()), len(repeats))
    return RepeatedSamples(train_ds, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="YAML file of a training.config.TrainConfig")
    parser.add_argument("--resume", default=None, help="checkpoint folder, or 'auto' for the latest in output_dir")
    parser.add_argument("--output-dir", default=None, help="override log.output_dir")
    parser.add_argument("--max-steps", type=int, default=None, help="override optim.max_steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output_dir is not None:
        cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, output_dir=args.output_dir))
    if args.max_steps is not None:
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, max_steps=args.max_steps))
    result = run(cfg, resume=args.resume)
    print(f"done: {result.final_step} steps in {result.wall_s:.1f} s -> {result.final_model}")
    if result.last_val:
        print("validation: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.last_val.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

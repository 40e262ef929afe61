"""Stage (b): train the IK model or the shortcut baseline through its own ``compute_loss``.

Validation (held-out routes): the planning pipeline (the agent's inference path, fixed seed) on
every validation sample gives open-loop L2 at 1/2/3 s, the collision rate of the planned ego box
with the ground-truth boxes of other vehicles at the same future times (``training.metrics``), the
last-waypoint L2 on each kind of critical frame (braking, starting, turns, lane changes:
``training.critical_frames``) and the validation loss. For the IK model it also runs the collapse check (``agent.model.collapse``) on
the encoder's tokens of the future frames (the future-state target) and on the VLA's predicted
future tokens (constant tokens mean a collapsed target, or a prediction that ignores its input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.config import EvalConfig
from training.dataset import collate
from training.metrics import collision_rates, collisions, l2_at


def make_training_batch(samples: dict[str, torch.Tensor], device: torch.device | str, with_future: bool = True) -> Any:
    """Collated dataset samples -> ``agent.model.TrainingBatch`` on ``device``."""
    from agent.model.interfaces import TrainingBatch

    return TrainingBatch(
        images=samples.get("images"),
        command=samples["command"],
        speed=samples["speed"],
        acceleration=samples["acceleration"],
        target_point=samples["target_point"],
        visual_tokens=samples.get("visual_tokens"),
        future_images=samples.get("future_images") if with_future else None,
        trajectory=samples["trajectory"],
        future_tokens=samples.get("future_tokens") if with_future else None,
        future_valid=samples.get("future_valid") if with_future else None,
    ).to(device)


def driving_inputs(samples: dict[str, torch.Tensor], device: torch.device | str) -> Any:
    """Collated samples -> ``agent.model.DrivingInputs`` (what the agent gives the pipeline)."""
    from agent.model.interfaces import DrivingInputs

    return DrivingInputs(
        images=samples.get("images"), command=samples["command"], speed=samples["speed"],
        acceleration=samples["acceleration"], target_point=samples["target_point"],
        visual_tokens=samples.get("visual_tokens"),
    ).to(device)


def future_target_tokens(model: nn.Module, samples: dict[str, torch.Tensor], device: torch.device | str) -> torch.Tensor:
    """[B, F K, D] the encoder's tokens of the samples' future frames (cached ones when present)."""
    if "future_tokens" in samples:
        return samples["future_tokens"].flatten(1, 2).float()
    future = samples["future_images"].to(device)
    if future.ndim == 5:
        future = future[:, None]
    b = future.shape[0]
    return model.vision(future.flatten(0, 1)).reshape(b, -1, model.config.vision.hidden_size).float()


class PlannerModule(nn.Module):
    """``forward(batch, generator) -> (loss, terms)`` around ``model.compute_loss`` (what DDP wraps)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model.compute_loss(batch, generator=generator)
        return out.loss, out.terms


def is_ik_model(model: nn.Module) -> bool:
    return getattr(model.config, "model_type", "") == "ik_drive"


class PlannerTask:
    """:class:`training.trainer.Task` of stage (b) for an ``IKDriveModel`` or a ``ShortcutModel``.

    Args:
        model: the model (its normaliser already fitted).
        eval_cfg: validation settings.
        ego_size: (length, width) m of the ego box for the collision metric.
        seed: seed of the validation sampler (fixed, so validations compare across steps).
    """

    def __init__(self, model: nn.Module, eval_cfg: EvalConfig, ego_size: tuple[float, float], seed: int = 0) -> None:
        self.module = PlannerModule(model)
        self.eval_cfg = eval_cfg
        self.ego_size = ego_size
        self.seed = seed
        self.with_future = is_ik_model(model)

    def make_batch(self, samples: dict[str, torch.Tensor], device: torch.device) -> Any:
        return make_training_batch(samples, device, self.with_future)

    @torch.no_grad()
    def evaluate(self, module: nn.Module, val_dataset: Any, device: torch.device) -> dict[str, float]:
        return evaluate_planner(module.model, val_dataset, device, self.eval_cfg, self.ego_size, self.seed)

    def save(self, module: nn.Module, path: Path) -> None:
        """The model folder (LoRA adapters merged, and saved beside it: ``training.lora``)."""
        from training.lora import has_lora, save_with_adapters

        if has_lora(module.model):
            save_with_adapters(module.model, path)
        else:
            module.model.save_pretrained(path)

    def load(self, module: nn.Module, path: Path) -> None:
        from agent.model.checkpoint import WEIGHTS_NAME, load_state_dict_strict
        from training.lora import has_lora, load_with_adapters

        if has_lora(module.model):
            load_with_adapters(module.model, path)
        else:
            load_state_dict_strict(module.model, Path(path) / WEIGHTS_NAME)


@torch.no_grad()
def evaluate_planner(model: nn.Module, dataset: Any, device: torch.device | str, cfg: EvalConfig,
                     ego_size: tuple[float, float], seed: int = 0) -> dict[str, float]:
    """Open-loop metrics of ``model`` on every sample of ``dataset`` (see module doc)."""
    from agent.model.pipeline import build_pipeline

    pipe = build_pipeline(model)
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    loss_gen = torch.Generator(device=device).manual_seed(seed + 1)
    ik = is_ik_model(model)
    preds, gts, speeds, hits_pred, hits_gt = [], [], [], [], []
    losses, n = 0.0, 0
    pred_tokens, target_tokens = [], []
    for start in range(0, len(dataset), cfg.batch_size):
        samples = collate([dataset[i] for i in range(start, min(start + cfg.batch_size, len(dataset)))])
        out = pipe(driving_inputs(samples, device), num_inference_steps=cfg.num_inference_steps, generator=gen)
        pred = out.trajectory.cpu().numpy()
        gt = samples["trajectory"].numpy()
        boxes, mask = samples["gt_boxes"].numpy(), samples["gt_boxes_mask"].numpy()
        preds.append(pred)
        gts.append(gt)
        speeds.append(samples["speed"].numpy())
        hits_pred.append(collisions(pred, boxes, mask, ego_size))
        hits_gt.append(collisions(gt, boxes, mask, ego_size))
        k = pred.shape[0]
        losses += float(model.compute_loss(make_training_batch(samples, device, ik), generator=loss_gen).loss) * k
        n += k
        if ik:
            pred_tokens.append(out.future_tokens.float().cpu())  # [B, F K, D]
            target_tokens.append(future_target_tokens(model, samples, device).cpu())  # [B, F K, D]
    model.train(was_training)
    if n == 0:
        raise ValueError("the validation dataset has no samples")
    pred_a, gt_a = np.concatenate(preds), np.concatenate(gts)
    dt = float(model.config.waypoint_dt)
    metrics = {"loss": losses / n, "samples": float(n)}
    metrics.update(l2_at(pred_a, gt_a, cfg.horizons_s, dt))
    metrics.update(critical_l2(pred_a, gt_a, np.concatenate(speeds), dt))
    metrics.update(collision_rates(np.concatenate(hits_pred), cfg.horizons_s, dt))
    metrics.update(collision_rates(np.concatenate(hits_gt), cfg.horizons_s, dt, prefix="collision_gt"))
    if ik:
        metrics.update(collapse_check(torch.cat(pred_tokens), torch.cat(target_tokens)))
    return metrics


def critical_l2(pred: np.ndarray, gt: np.ndarray, speed: np.ndarray, dt: float) -> dict[str, float]:
    """The 3 s (last-waypoint) L2 on the critical frames of each kind (``training.critical_frames``,
    default thresholds, classified from the label ``gt`` [S, T, 2] and ``speed`` [S]):
    ``l2_last_<kind>`` (m; left out when the kind has no frame) and ``frames_<kind>``."""
    from training.critical_frames import CriticalFrameConfig, classify

    kinds = classify(gt, speed, CriticalFrameConfig(waypoint_dt_s=dt))
    err = np.linalg.norm(pred[:, -1] - gt[:, -1], axis=-1)
    out: dict[str, float] = {}
    for kind, mask in kinds.items():
        out[f"frames_{kind}"] = float(mask.sum())
        if mask.any():
            out[f"l2_last_{kind}"] = float(err[mask].mean())
    return out


def collapse_check(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Collapse check of the future-state target and prediction, tokens [N, K, D] each.

    ``target_*``: ``agent.model.collapse_stats`` of the encoder's future tokens (the target);
    ``target_collapsed`` is 1.0 when ``agent.model.is_collapsed`` says so. ``pred_*``: the same for
    the VLA's predictions (a collapsed prediction ignores its inputs). ``future_cosine``: mean
    cosine similarity of prediction and target per token; ``future_r2``: 1 - MSE / variance of the
    target across frames (share of the frame-to-frame variation the prediction explains; 0 = no
    better than the mean frame).
    """
    from agent.model.collapse import collapse_stats, is_collapsed

    out: dict[str, float] = {}
    for name, tokens in (("target", target), ("pred", predicted)):
        if tokens.shape[0] < 2:
            continue
        stats = collapse_stats(tokens)
        out[f"{name}_relative_frame_std"] = stats["relative_frame_std"]
        out[f"{name}_effective_rank"] = stats["effective_rank"]
        out[f"{name}_collapsed"] = float(is_collapsed(stats))
    p, t = predicted.double(), target.double()
    var = float(((t - t.mean(0)) ** 2).mean())
    out["future_cosine"] = float(torch.nn.functional.cosine_similarity(p, t, dim=-1).mean())
    out["future_r2"] = 1.0 - float(((p - t) ** 2).mean()) / var if var > 0 else float("nan")
    return out

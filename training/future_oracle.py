"""Does the IK net use the future frame? Open-loop error with three choices of future tokens.

The IK net decodes a trajectory from the current tokens and the future tokens. On held-out frames
this module plans three times with the same current tokens and the same diffusion noise, changing
only the future tokens the IK net reads:

* ``predicted``: the VLA's prediction (what the agent uses);
* ``oracle``: the frozen encoder's tokens of the real future frames (what the VLA is trained to
  predict): the best the IK net can do with a perfect future-state prediction;
* ``static``: the current tokens again, for every future frame (a world that does not move).

An IK net that recovers the motion between its two frames is far better with ``oracle`` than with
``static``. When the three errors are the same, the IK net does not read the future frame and its
plan is a prior learned from the current frame alone; a better VLA cannot help it then. A
constant-speed line (the ego's current speed straight ahead) is reported for scale.

Turn frames (:func:`turn_breakdown`, from the same plans): the frames whose label ends at least
``turn_min_m`` (4 m) to the side. Per mode, the share of them whose planned 3 s waypoint lies on the
label's side and the mean lateral error of that waypoint. Whether the plan turns the right way is
what the route needs from the future state; the IK net reads that from the future tokens when
``oracle`` turns the right way more often than ``static``.

The command probe (:func:`command_probe`, any model): on held-out frames recorded at a junction
(command LEFT, RIGHT or STRAIGHT) the plan is made three times with only the prompt's route command
changed to LEFT, STRAIGHT and RIGHT (same image, speed, target point and noise). In the IK model the
command reaches the trajectory only through the predicted future state. Reported: the mean lateral
position of the 3 s waypoint per command (m, + right) and the share of frames whose plans are ordered
left < straight < right.

The target-point probe (:func:`target_probe`, any model) does the same on evenly strided held-out
frames with the prompt's target point set to a junction exit 16 m ahead and 11.5 m to the left, the
same straight ahead, and 11.5 m to the right (:data:`PROBE_TARGETS`). The target point is the
route's only geometric input, so a model that plans with the route turns towards it. The same
on every junction frame (``junctions=True``): there the scene allows more than one way and only
the route says which.

``python -m training.future_oracle --model weights/ik-tiny --data DATA/val [--frames 512] [--out F]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.metrics import l2_at

MODES = ("predicted", "oracle", "static")


@dataclass
class OracleResult:
    """L2 (m) per mode, e.g. ``l2["oracle"]["l2_3s"]``; ``samples``: frames used; ``horizons_s``: the
    model's future-state horizons; ``command``: the command probe's result (or None)."""

    l2: dict[str, dict[str, float]]
    samples: int
    horizons_s: tuple[float, ...]
    command: dict[str, Any] | None = None
    target: dict[str, Any] | None = None
    junction_target: dict[str, Any] | None = None
    turns: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"l2": self.l2, "samples": self.samples, "horizons_s": list(self.horizons_s), "command": self.command,
                "target": self.target, "junction_target": self.junction_target, "turns": self.turns}

    def table(self) -> str:
        keys = [k for k in next(iter(self.l2.values())) if k != "l2_avg"]
        lines = ["| future tokens | " + " | ".join(k.replace("l2_", "L2 ") for k in keys) + " |",
                 "|---|" + "---:|" * len(keys)]
        for mode, row in self.l2.items():
            lines.append(f"| {mode} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
        if self.turns is not None and self.turns["samples"]:
            t = self.turns
            lines += ["", (f"turn frames ({t['samples']} frames whose label ends >= {t['min_lateral_m']:g} m to the "
                           f"side: {t['left']} left, {t['right']} right)"),
                      "| future tokens | plan turns the label's way | lateral error 3 s (m) | L2 3 s (m) |",
                      "|---|---:|---:|---:|"]
            l2 = t.get("l2")  # present when measured on the turn frames themselves (the CLI)
            lines += [f"| {mode} | {100 * t['side'][mode]:.1f} % | {t['lateral_error_3s'][mode]:.2f} | "
                      + (f"{l2[mode]['l2_3s']:.2f} |" if l2 else "- |") for mode in MODES]
        if self.command is not None:
            lines += _probe_table(f"command probe ({self.command['samples']} junction frames)", self.command)
        for t, where in ((self.target, "frames"), (self.junction_target, "junction frames")):
            if t is None:
                continue
            lines += _probe_table(f"target-point probe ({t['samples']} {where}, target {t['targets']['LEFT'][0]:g} m "
                                  f"ahead, {abs(t['targets']['LEFT'][1]):g} m to the side or straight)", t)
            if t.get("future_change") is not None:
                lines.append(f"predicted future tokens, LEFT vs RIGHT target: change {t['future_change']:.4f} of "
                             "their spread across frames")
        return "\n".join(lines)


def _probe_table(title: str, probe: dict[str, Any]) -> list[str]:
    """Markdown lines of one lateral probe's result (``lateral_3s`` LEFT / STRAIGHT / RIGHT, ``ordered``)."""
    y = probe["lateral_3s"]
    return ["", f"{title}: 3 s lateral endpoint (m, + right)",
            "| LEFT | STRAIGHT | RIGHT | ordered left < straight < right |", "|---:|---:|---:|---:|",
            f"| {y['LEFT']:+.2f} | {y['STRAIGHT']:+.2f} | {y['RIGHT']:+.2f} | {100 * probe['ordered']:.1f} % |"]


@torch.no_grad()
def future_oracle(model: Any, dataset: Any, horizons_s: tuple[float, ...] = (1.0, 2.0, 3.0), batch_size: int = 64,
                  num_inference_steps: int | None = None, seed: int = 0, turn_min_m: float = 4.0) -> OracleResult:
    """Run the three modes on every sample of ``dataset`` (a :class:`training.dataset.DrivingDataset`
    built with the model's future horizons, images or cached tokens). ``model``: an ``IKDriveModel``."""
    from agent.model.modeling import IKDriveModel
    from agent.model.pipeline import IKDrivePipeline
    from training.dataset import collate
    from training.planner_task import driving_inputs, future_target_tokens

    if not isinstance(model, IKDriveModel):
        raise TypeError(f"model: the future oracle needs an IK model, got {type(model).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset: no samples")
    pipe = IKDrivePipeline(model)
    device = model.device
    plans: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    labels, speeds = [], []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            samples = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            inputs = driving_inputs(samples, device)
            current = model.current_tokens(inputs)  # [B, K, D]
            input_ids, attention_mask = model.tokenize(inputs)
            futures = {
                "predicted": model.vla(input_ids, attention_mask, current, model.prompt_status(inputs)),  # [B, F K, D]
                "oracle": future_target_tokens(model, samples, device),
                "static": current.repeat(1, model.config.future.num_frames, 1),
            }
            for mode, future in futures.items():
                gen = torch.Generator(device=device).manual_seed(seed + start)  # same noise in every mode
                plan = pipe.decode(current, future, num_inference_steps, generator=gen)  # [B, T, 2] m
                plans[mode].append(plan.float().cpu().numpy())
            labels.append(samples["trajectory"].numpy())
            speeds.append(samples["speed"].numpy())
    finally:
        model.train(was_training)
    gt = np.concatenate(labels)
    dt = float(model.config.waypoint_dt)
    planned = {m: np.concatenate(plans[m]) for m in MODES}
    result = {m: l2_at(planned[m], gt, list(horizons_s), dt) for m in MODES}
    speed = np.concatenate(speeds)
    line = np.zeros_like(gt)
    line[..., 0] = speed[:, None] * dt * np.arange(1, gt.shape[1] + 1)[None]
    result["constant speed (no model)"] = l2_at(line, gt, list(horizons_s), dt)
    return OracleResult(l2=result, samples=int(gt.shape[0]), horizons_s=tuple(model.config.future.horizons_s),
                        turns=turn_breakdown(planned, gt, turn_min_m))


def turn_oracle(model: Any, dataset: Any, min_lateral_m: float = 4.0, seed: int = 0) -> dict[str, Any] | None:
    """:func:`future_oracle` on every sample of ``dataset`` whose label ends at least ``min_lateral_m``
    to the side (picked with ``dataset.all_trajectories()``, no decoding): its turn breakdown plus
    ``l2``, the three modes' L2 on those frames. None when no sample turns."""
    turning = np.nonzero(np.abs(dataset.all_trajectories()[:, -1, 1]) >= min_lateral_m)[0]
    if turning.size == 0:
        return None
    on_turns = future_oracle(model, torch.utils.data.Subset(dataset, turning.tolist()), seed=seed,
                             turn_min_m=min_lateral_m)
    return {**on_turns.turns, "l2": on_turns.l2}


def turn_breakdown(plans: dict[str, np.ndarray], labels: np.ndarray, min_lateral_m: float = 4.0) -> dict[str, Any]:
    """Per plan set (``name -> [N, T, 2]`` m), on the frames whose label ``[N, T, 2]`` ends at least
    ``min_lateral_m`` to the side: ``side`` (share whose last waypoint has the label's lateral sign)
    and ``lateral_error_3s`` (mean |y_plan - y_label| of the last waypoint, m). Empty when no frame
    turns (``samples`` 0, no per-mode numbers)."""
    if not min_lateral_m > 0:
        raise ValueError(f"min_lateral_m must be > 0, got {min_lateral_m}")
    y = labels[:, -1, 1]
    turning = np.abs(y) >= min_lateral_m
    out: dict[str, Any] = {"min_lateral_m": float(min_lateral_m), "samples": int(turning.sum()),
                           "left": int((y[turning] < 0).sum()), "right": int((y[turning] > 0).sum()),
                           "side": {}, "lateral_error_3s": {}}
    if not turning.any():
        return out
    for name, plan in plans.items():
        if plan.shape != labels.shape:
            raise ValueError(f"plans[{name!r}]: shape {plan.shape} differs from the labels' {labels.shape}")
        yp = plan[turning, -1, 1]
        out["side"][name] = float((np.sign(yp) == np.sign(y[turning])).mean())
        out["lateral_error_3s"][name] = float(np.abs(yp - y[turning]).mean())
    return out


JUNCTION_COMMANDS = {"LEFT": 1, "STRAIGHT": 3, "RIGHT": 2}  # RoadOption values
# The target-point probe's three route targets (ego frame m, x forward, y right): the exit of a
# junction turn 16 m ahead and 11.5 m to the side, as the route planner gives it at the entry of a
# sandbox junction, and straight ahead at the same distance.
PROBE_TARGETS = {"LEFT": (16.0, -11.5), "STRAIGHT": (16.0, 0.0), "RIGHT": (16.0, 11.5)}


def _lateral_probe(model: Any, dataset: Any, picked: np.ndarray, variants: dict[str, Any], batch_size: int,
                   num_samples: int, seed: int) -> dict[str, Any]:
    """Plans of the samples ``picked`` of ``dataset`` once per variant (``name -> edit(inputs)``, a
    function that changes one prompt input in place), with the same noise; returns the mean lateral
    position of the 3 s waypoint per variant (m, + right) and the share of samples whose plans are
    ordered as the variants are listed (left < straight < right). An IK model also gets
    ``future_change``: the mean squared change of its predicted future tokens between the first and
    the last variant, over their mean squared spread across the frames (None for the shortcut)."""
    from agent.model.pipeline import build_pipeline
    from training.dataset import collate
    from training.planner_task import driving_inputs

    pipe = build_pipeline(model)
    device = model.device
    lateral: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    futures: dict[str, list[torch.Tensor]] = {name: [] for name in variants}
    for start in range(0, picked.size, batch_size):
        samples = collate([dataset[int(i)] for i in picked[start:start + batch_size]])
        for name, edit in variants.items():
            inputs = driving_inputs(samples, device)
            edit(inputs)
            gen = torch.Generator(device=device).manual_seed(seed + start)  # same noise for every variant
            out = pipe(inputs, generator=gen, num_samples=num_samples)
            lateral[name].append(out.trajectory[:, -1, 1].float().cpu().numpy())  # [B] m
            if out.future_tokens is not None:
                futures[name].append(out.future_tokens.float().cpu())  # [B, F K, D]
    y = [np.concatenate(v) for v in lateral.values()]
    ordered = np.all([a < b for a, b in itertools.pairwise(y)], axis=0)
    result = {"samples": int(picked.size), "lateral_3s": {name: float(v.mean()) for name, v in zip(variants, y)},
              "ordered": float(ordered.mean()), "future_change": None}
    names = list(variants)
    if all(futures[n] for n in names):
        first, last = torch.cat(futures[names[0]]), torch.cat(futures[names[-1]])  # [N, F K, D]
        spread = (first - first.mean(dim=0, keepdim=True)).pow(2).mean()
        # how far the predicted future state moves between the first and the last variant, against
        # how far it differs from frame to frame (1: as much as a different frame, 0: not at all)
        result["future_change"] = float((first - last).pow(2).mean() / spread.clamp_min(1e-12))
    return result


@torch.no_grad()
def command_probe(model: Any, dataset: Any, batch_size: int = 64, num_samples: int = 4, seed: int = 0) -> dict[str, Any] | None:
    """Plans of junction frames with the route command set to LEFT / STRAIGHT / RIGHT (module doc).

    Returns None when ``dataset`` has no junction frame."""
    commands = dataset.recorded_commands()
    picked = np.nonzero(np.isin(commands, list(JUNCTION_COMMANDS.values())))[0]
    if picked.size == 0:
        return None

    def set_command(value: int) -> Any:
        def edit(inputs: Any) -> None:
            inputs.command = torch.full_like(inputs.command, value)
        return edit

    result = _lateral_probe(model, dataset, picked, {name: set_command(v) for name, v in JUNCTION_COMMANDS.items()},
                            batch_size, num_samples, seed)
    result["recorded_commands"] = {name: int((commands[picked] == v).sum()) for name, v in JUNCTION_COMMANDS.items()}
    return result


@torch.no_grad()
def target_probe(model: Any, dataset: Any, frames: int = 256, batch_size: int = 64, num_samples: int = 4,
                 seed: int = 0, junctions: bool = False) -> dict[str, Any] | None:
    """Plans of ``frames`` evenly strided samples with the prompt's target point set to each of
    :data:`PROBE_TARGETS` (everything else fixed). The target point is the route's only geometric
    input: a model that plans with the route turns its plan towards it. ``junctions``: every
    junction frame instead (route command LEFT, RIGHT or STRAIGHT recorded, as the command probe
    picks them), where the scene allows more than one way; None when there is none."""
    if len(dataset) == 0:
        raise ValueError("dataset: no samples")
    if junctions:
        picked = np.nonzero(np.isin(dataset.recorded_commands(), list(JUNCTION_COMMANDS.values())))[0]
        if picked.size == 0:
            return None
    else:
        picked = np.unique(np.linspace(0, len(dataset) - 1, min(frames, len(dataset))).round().astype(np.int64))

    def set_target(point: tuple[float, float]) -> Any:
        def edit(inputs: Any) -> None:
            inputs.target_point = torch.tensor(point, dtype=inputs.target_point.dtype,
                                               device=inputs.target_point.device).expand_as(inputs.target_point).clone()
        return edit

    result = _lateral_probe(model, dataset, picked, {name: set_target(p) for name, p in PROBE_TARGETS.items()},
                            batch_size, num_samples, seed)
    result["targets"] = {name: list(p) for name, p in PROBE_TARGETS.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.future_oracle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="model folder (save_pretrained layout); a shortcut model gets the command probe only")
    parser.add_argument("--data", required=True, help="dataset folder (carla-eval collect output)")
    parser.add_argument("--frames", type=int, default=512, help="evenly strided held-out frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--turn-min-m", type=float, default=4.0,
                        help="turn frames: the label's 3 s waypoint at least this far to the side (m)")
    parser.add_argument("--out", help="also write the result here as JSON")
    args = parser.parse_args(argv)

    from agent.model.pipeline import load_model
    from training.dataset import DrivingDataset
    from training.manifest import scan_dataset

    model = load_model(args.model)
    scan = scan_dataset(args.data)
    if scan.skipped:
        print(scan.report(), file=sys.stderr)
    ik = model.config.model_type == "ik_drive"
    horizons = list(model.config.future.horizons_s) if ik else None
    junctions = DrivingDataset(scan.episodes, image_size=model.config.image_size, horizon_s=horizons,
                               with_boxes=False, with_future=False)
    command = command_probe(model, junctions, seed=args.seed)
    target = target_probe(model, junctions, frames=args.frames, seed=args.seed)
    junction_target = target_probe(model, junctions, seed=args.seed, junctions=True)
    if ik:
        dataset = DrivingDataset(scan.episodes, image_size=model.config.image_size, max_frames=args.frames,
                                 horizon_s=horizons, with_boxes=False)
        result = future_oracle(model, dataset, seed=args.seed, turn_min_m=args.turn_min_m)
        result.command = command
        result.target = target
        result.junction_target = junction_target
        # the turn rows over every turning frame of the data, not only the strided ones above
        every = DrivingDataset(scan.episodes, image_size=model.config.image_size, horizon_s=horizons, with_boxes=False)
        result.turns = turn_oracle(model, every, args.turn_min_m, seed=args.seed) or result.turns
        print(f"{result.samples} frames, future horizons {', '.join(f'{h:g}' for h in result.horizons_s)} s")
        print(result.table())
        data = result.to_dict()
    else:  # the shortcut baseline has no future state: the probes only
        print(f"{model.config.model_type}: no future state; command and target-point probes only")
        data = {"command": command, "target": target, "junction_target": junction_target}
        print(json.dumps(data, indent=2))
    if args.out:
        from carla_eval.atomic_io import atomic_write_json

        atomic_write_json(Path(args.out), data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does the recorded route command say where the ego turns? Turns per command in a dataset.

For every sample of a dataset (the labels a model trains on, no image decoding) the 3 s waypoint of
its trajectory label is sorted into left (at least ``min_lateral_m`` to the left), right (as far to
the right) or straight (in between), and counted per recorded route command. A command that a
model can learn the turn from has its turns on its own side; one recorded before the turn starts,
or kept through it as LANEFOLLOW, does not. The same samples also give the share whose route
target point lies on the side of the turn.

``python -m training.command_stats DATA [DATA ...] [--min-lateral-m 4] [--out F]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agent.model.tokenization import COMMAND_WORDS

SIDES = ("left", "straight", "right")


def command_turns(commands: np.ndarray, trajectories: np.ndarray, min_lateral_m: float = 4.0) -> dict[str, dict[str, int]]:
    """``{command words: {"left" | "straight" | "right": frames}}`` for commands [S] (RoadOption values,
    VOID counted as LANEFOLLOW) and trajectory labels [S, T, 2] (ego frame, y right, m)."""
    if not min_lateral_m > 0:
        raise ValueError(f"min_lateral_m: must be > 0, got {min_lateral_m}")
    commands = np.asarray(commands, dtype=np.int64)
    y = np.asarray(trajectories)[:, -1, 1]
    if commands.shape != y.shape:
        raise ValueError(f"commands {commands.shape} and trajectories {np.asarray(trajectories).shape}: one label per command")
    unknown = sorted(set(commands.tolist()) - set(COMMAND_WORDS))
    if unknown:
        raise ValueError(f"commands: unknown RoadOption value(s) {unknown}")
    side = np.where(y <= -min_lateral_m, 0, np.where(y >= min_lateral_m, 2, 1))
    out: dict[str, dict[str, int]] = {}
    for value in sorted(set(commands.tolist())):
        name = COMMAND_WORDS[int(value)]
        counts = out.setdefault(name, dict.fromkeys(SIDES, 0))
        for k, s in enumerate(SIDES):
            counts[s] += int(((commands == value) & (side == k)).sum())
    return out


def target_side_share(target_points: np.ndarray, trajectories: np.ndarray, min_lateral_m: float = 4.0) -> dict[str, Any]:
    """On the samples whose label [S, T, 2] ends at least ``min_lateral_m`` to the side: how many
    there are and the share whose route target point [S, 2] (ego frame, y right) lies on that side."""
    y = np.asarray(trajectories)[:, -1, 1]
    turning = np.abs(y) >= min_lateral_m
    ty = np.asarray(target_points)[:, 1]
    if ty.shape != y.shape:
        raise ValueError(f"target_points {np.asarray(target_points).shape}: one per trajectory label {y.shape}")
    share = float((np.sign(ty[turning]) == np.sign(y[turning])).mean()) if turning.any() else None
    return {"turning": int(turning.sum()), "target_on_turn_side": share}


def dataset_command_turns(data_dir: str | Path, min_lateral_m: float = 4.0) -> dict[str, dict[str, int]]:
    """:func:`command_turns` over every sample of a collected dataset folder, plus
    ``"target point"``: :func:`target_side_share` of the same samples."""
    from training.dataset import DrivingDataset
    from training.manifest import scan_dataset

    scan = scan_dataset(data_dir)
    if scan.skipped:
        print(scan.report(), file=sys.stderr)
    # labels and commands only: the image size is never used, no frame is decoded
    ds = DrivingDataset(scan.episodes, image_size=(32, 32), with_boxes=False, with_future=False)
    labels = ds.all_trajectories()
    targets = ds.recorded("target_point").astype(np.float64).reshape(-1, 2)
    out: dict[str, Any] = command_turns(ds.recorded_commands(), labels, min_lateral_m)
    out["target point"] = target_side_share(targets, labels, min_lateral_m)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.command_stats", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", help="dataset folders (carla-eval collect output)")
    parser.add_argument("--min-lateral-m", type=float, default=4.0, help="a turn: the 3 s waypoint this far to the side (m)")
    parser.add_argument("--out", help="also write the result here as JSON")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    print(f"| data | command | left (<= -{args.min_lateral_m:g} m) | straight | right (>= {args.min_lateral_m:g} m) |")
    print("|---|---|---:|---:|---:|")
    for folder in args.data:
        result[folder] = dataset_command_turns(folder, args.min_lateral_m)
        side = result[folder]["target point"]
        for name, counts in result[folder].items():
            if name != "target point":
                print(f"| {folder} | {name} | " + " | ".join(f"{counts[s]:,}" for s in SIDES) + " |")
        share = "-" if side["target_on_turn_side"] is None else f"{100 * side['target_on_turn_side']:.1f} %"
        print(f"{folder}: the route target point lies on the turn's side on {share} of the {side['turning']:,} turning samples")
    if args.out:
        from carla_eval.atomic_io import atomic_write_json

        atomic_write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

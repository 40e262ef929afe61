"""Turns per recorded route command (training.command_stats)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.command_stats import command_turns, main, target_side_share
from training.synthetic import write_synthetic_dataset


def _labels(ys):
    out = np.zeros((len(ys), 6, 2), dtype=np.float32)
    out[:, -1, 1] = ys
    return out


def test_turns_are_counted_per_command_on_their_side():
    commands = np.array([1, 1, 1, 4, 4, -1, 3])
    out = command_turns(commands, _labels([-6.0, -1.0, 5.0, 4.0, 0.0, -4.0, 0.5]), min_lateral_m=4.0)
    assert out == {"turn left": {"left": 1, "straight": 1, "right": 1},
                   "follow lane": {"left": 1, "straight": 1, "right": 1},  # VOID (-1) and LANEFOLLOW (4) together
                   "go straight": {"left": 0, "straight": 1, "right": 0}}
    with pytest.raises(ValueError, match="unknown RoadOption"):
        command_turns(np.array([9]), _labels([0.0]))
    with pytest.raises(ValueError, match="one label per command"):
        command_turns(np.array([4, 4]), _labels([0.0]))
    with pytest.raises(ValueError, match="min_lateral_m"):
        command_turns(commands, _labels([0.0] * 7), min_lateral_m=0.0)


def test_target_side_share_counts_the_turning_samples_only():
    labels = _labels([-6.0, 5.0, 8.0, 1.0])
    targets = np.array([[10.0, -3.0], [10.0, -2.0], [10.0, 4.0], [10.0, -9.0]])
    assert target_side_share(targets, labels) == {"turning": 3, "target_on_turn_side": pytest.approx(2 / 3)}
    assert target_side_share(targets, _labels([0.0] * 4)) == {"turning": 0, "target_on_turn_side": None}
    with pytest.raises(ValueError, match="one per trajectory label"):
        target_side_share(targets[:2], labels)


def test_cli_counts_every_sample_of_a_dataset(tmp_path, capsys):
    from training.dataset import DrivingDataset
    from training.manifest import scan_dataset

    data = write_synthetic_dataset(tmp_path / "d", num_episodes=2, num_ticks=90, image_size=(32, 32))
    assert main([str(data), "--out", str(tmp_path / "o.json")]) == 0
    out = json.loads((tmp_path / "o.json").read_text())[str(data)]
    samples = len(DrivingDataset(scan_dataset(data).episodes, image_size=(32, 32), with_boxes=False, with_future=False))
    side = out.pop("target point")
    assert sum(sum(c.values()) for c in out.values()) == samples
    assert side["turning"] == 0 and side["target_on_turn_side"] is None  # the synthetic drives straight
    printed = capsys.readouterr().out
    assert f"| {data} | follow lane |" in printed and "of the 0 turning samples" in printed

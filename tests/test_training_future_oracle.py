"""The future-oracle check: the three future-token modes on a tiny random IK model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.dataset import DrivingDataset
from training.future_oracle import MODES, future_oracle, main
from training.manifest import scan_dataset
from training.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data"), num_episodes=2, num_ticks=90, image_size=(32, 32))


def _model_and_data(data_dir):
    from agent.model import build_preset

    model = build_preset("tiny", seed=0, image_size=(32, 32), future_horizon_s=1.0)
    ds = DrivingDataset(scan_dataset(data_dir).episodes, image_size=(32, 32), max_frames=12, horizon_s=1.0,
                        with_boxes=False)
    trajectories = torch.stack([ds[i]["trajectory"] for i in range(len(ds))])
    model.normalizer.fit(trajectories)
    return model, ds


def test_modes_feed_the_ik_net_what_they_name(data_dir, monkeypatch):
    model, ds = _model_and_data(data_dir)
    res = future_oracle(model, ds, batch_size=5)
    assert res.samples == len(ds) and res.horizons_s == (1.0,)
    assert set(res.l2) == set(MODES) | {"constant speed (no model)"}
    # A random model: the three futures differ, so the plans do.
    assert len({round(res.l2[m]["l2_3s"], 6) for m in MODES}) == 3
    # A VLA that predicts "nothing moves" makes "predicted" the same as "static", bit for bit.
    monkeypatch.setattr(model.vla, "forward", lambda input_ids, attention_mask, current, status=None: current)
    frozen = future_oracle(model, ds, batch_size=5)
    assert frozen.l2["predicted"] == frozen.l2["static"]
    assert frozen.l2["oracle"] == res.l2["oracle"]


def test_constant_speed_line_is_exact_for_a_constant_speed_label(data_dir):
    model, ds = _model_and_data(data_dir)
    res = future_oracle(model, ds, batch_size=6)
    expected = []
    for i in range(len(ds)):
        s = ds[i]
        line = np.zeros((6, 2))
        line[:, 0] = float(s["speed"]) * 0.5 * np.arange(1, 7)
        expected.append(np.linalg.norm(line[5] - s["trajectory"].numpy()[5]))
    assert res.l2["constant speed (no model)"]["l2_3s"] == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_shortcut_model_is_refused(data_dir):
    from agent.model import build_preset

    model = build_preset("tiny", model_type="shortcut", image_size=(32, 32))
    with pytest.raises(TypeError, match="IK model"):
        future_oracle(model, [])


def test_cli_writes_json(data_dir, tmp_path, capsys):
    model, _ = _model_and_data(data_dir)
    model.save_pretrained(tmp_path / "m")
    assert main(["--model", str(tmp_path / "m"), "--data", str(data_dir), "--frames", "8", "--out", str(tmp_path / "o.json")]) == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert out["samples"] == 8 and set(out["l2"]["oracle"]) == {"l2_1s", "l2_2s", "l2_3s", "l2_avg"}
    assert "| oracle |" in capsys.readouterr().out
    # a random IK model's predicted future moves with the target point, by a share of its spread
    assert 0.0 < out["target"]["future_change"] < 10.0 and out["target"]["samples"] > 0


def test_cli_of_a_shortcut_model_runs_the_command_probe_only(tmp_path):
    from agent.model.presets import build_preset
    from training.future_oracle import main
    from training.manifest import scan_dataset
    from training.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", num_episodes=1, num_ticks=90, image_size=(32, 32))
    # a junction command on every frame: the probe has frames to edit
    from training.episodes import read_episode, write_episode

    ep_path = next(data.glob("*.npz"))
    ep = read_episode(ep_path)
    arrays = dict(ep.arrays)
    arrays["command"] = np.full_like(arrays["command"], 3)
    write_episode(ep_path, ep.meta, arrays)
    (data / "manifest.json").unlink()  # the episode changed: the manifest's hash no longer applies
    model = build_preset("tiny", seed=0, model_type="shortcut", image_size=(32, 32))
    model.normalizer.fit(torch.randn(50, 6, 2))
    model.save_pretrained(tmp_path / "model")
    assert main(["--model", str(tmp_path / "model"), "--data", str(data), "--out", str(tmp_path / "o.json")]) == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert set(out) == {"command", "target", "junction_target"} and out["target"]["samples"] > 0
    assert out["command"]["samples"] == len(scan_dataset(data).episodes[0].arrays["command"]) - 30
    assert out["command"]["recorded_commands"]["STRAIGHT"] == out["command"]["samples"]
    # every frame is a junction frame here: the junction target probe plans all of them
    assert out["junction_target"]["samples"] == out["command"]["samples"]


class _TargetFollower:
    """A stand-in pipeline whose plan ends where the prompt's target point is (or ignores it)."""

    def __init__(self, follow: bool) -> None:
        self.follow = follow

    def __call__(self, inputs, generator=None, num_samples=1):
        from agent.model.interfaces import PlanOutput

        b = inputs.speed.shape[0]
        traj = torch.zeros(b, 6, 2)
        traj[:, :, 0] = torch.arange(1, 7).float()
        if self.follow:
            traj[:, -1, 1] = inputs.target_point[:, 1]
        return PlanOutput(trajectory=traj, future_tokens=None, timings={})


@pytest.mark.parametrize("follow", [True, False])
def test_target_probe_sets_the_target_point_and_reports_the_ordering(data_dir, monkeypatch, follow):
    from agent.model import pipeline
    from training.future_oracle import PROBE_TARGETS, target_probe

    model, ds = _model_and_data(data_dir)
    monkeypatch.setattr(pipeline, "build_pipeline", lambda m: _TargetFollower(follow))
    res = target_probe(model, ds, frames=7, batch_size=3, num_samples=1)
    assert res["samples"] == 7 and set(res["targets"]) == set(PROBE_TARGETS) and res["future_change"] is None
    if follow:
        assert res["lateral_3s"] == {name: p[1] for name, p in PROBE_TARGETS.items()} and res["ordered"] == 1.0
    else:
        assert set(res["lateral_3s"].values()) == {0.0} and res["ordered"] == 0.0
    # the synthetic drives follow the lane: no junction frame to probe
    assert set(ds[i]["command"].item() for i in range(len(ds))) == {4}
    assert target_probe(model, ds, junctions=True) is None


def test_turn_breakdown_counts_the_plans_on_the_labels_side():
    from training.future_oracle import turn_breakdown

    labels = np.zeros((4, 6, 2), dtype=np.float32)
    labels[:, -1, 1] = [-6.0, 5.0, 1.0, 8.0]  # two right turns, one left, one straight (below 4 m)
    plans = {"a": labels.copy(), "b": labels.copy()}
    plans["b"][:, -1, 1] = [2.0, 5.0, -3.0, 6.0]  # the left turn planned to the right
    out = turn_breakdown(plans, labels, min_lateral_m=4.0)
    assert (out["samples"], out["left"], out["right"]) == (3, 1, 2)
    assert out["side"] == {"a": 1.0, "b": pytest.approx(2 / 3)}
    assert out["lateral_error_3s"]["a"] == 0.0
    assert out["lateral_error_3s"]["b"] == pytest.approx((8.0 + 0.0 + 2.0) / 3)
    empty = turn_breakdown(plans, labels, min_lateral_m=10.0)
    assert empty["samples"] == 0 and empty["side"] == {}
    with pytest.raises(ValueError, match="shape"):
        turn_breakdown({"a": labels[:2]}, labels)
    with pytest.raises(ValueError, match="min_lateral_m"):
        turn_breakdown(plans, labels, min_lateral_m=0.0)


class _Turning(torch.utils.data.Dataset):
    """The synthetic samples with the label's last waypoint moved sideways: -6, 0, +6 m, -6, ..."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.shift = np.array([(-6.0, 0.0, 6.0)[i % 3] for i in range(len(dataset))], dtype=np.float32)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        sample = dict(self.dataset[i])
        trajectory = sample["trajectory"].clone()
        trajectory[-1, 1] += float(self.shift[i])
        sample["trajectory"] = trajectory
        return sample

    def __getattr__(self, name):  # episodes, index: the wrapped dataset's
        return getattr(self.__dict__["dataset"], name)

    def all_trajectories(self):
        out = self.dataset.all_trajectories().copy()
        out[:, -1, 1] += self.shift
        return out


def test_turn_oracle_plans_every_turning_frame_and_only_those(data_dir):
    from training.future_oracle import turn_oracle

    model, _ = _model_and_data(data_dir)
    every = DrivingDataset(scan_dataset(data_dir).episodes, image_size=(32, 32), horizon_s=1.0, with_boxes=False)
    turning = _Turning(every)
    out = turn_oracle(model, turning, min_lateral_m=4.0)
    left, right = int((turning.shift < 0).sum()), int((turning.shift > 0).sum())
    assert (out["samples"], out["left"], out["right"]) == (left + right, left, right)
    assert set(out["side"]) == set(MODES) and set(out["l2"]) == set(MODES) | {"constant speed (no model)"}
    assert all(0.0 <= v <= 1.0 for v in out["side"].values())
    assert turn_oracle(model, every, min_lateral_m=4.0) is None  # the synthetic drives straight


def test_cli_table_has_the_turn_rows(data_dir, tmp_path, capsys, monkeypatch):
    import training.dataset

    model, _ = _model_and_data(data_dir)
    model.save_pretrained(tmp_path / "m")
    real = training.dataset.DrivingDataset
    monkeypatch.setattr(training.dataset, "DrivingDataset", lambda *a, **k: _Turning(real(*a, **k)))
    assert main(["--model", str(tmp_path / "m"), "--data", str(data_dir), "--frames", "8", "--out",
                 str(tmp_path / "o.json")]) == 0
    turns = json.loads((tmp_path / "o.json").read_text())["turns"]
    assert turns["samples"] == 20 and set(turns["l2"]) == set(MODES) | {"constant speed (no model)"}
    assert "turn frames (20 frames" in capsys.readouterr().out

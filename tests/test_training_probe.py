"""The grounding probe: image edits, summary maths, and the CLI on a tiny random model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from training.grounding import (INSERTIONS, VARIANTS, ProbeConfig, ProbeFrame, draw_vehicle, edited_frames,
                                point_along, run_probe, summarize)
from training.synthetic import write_synthetic_dataset

BEV = {"type": "sensor.camera.rgb", "id": "bev", "x": 8.0, "y": 0.0, "z": 20.0, "roll": 0.0, "pitch": -90.0,
       "yaw": 0.0, "width": 128, "height": 128, "fov": 90.0}


def test_vehicle_drawn_where_the_top_down_camera_sees_it():
    img = np.zeros((128, 128, 3), np.uint8)
    cfg = ProbeConfig(vehicle_colour=(10, 20, 30))
    out = draw_vehicle(img, BEV, np.array([18.0, 0.0]), 0.0, cfg)
    ys, xs = np.nonzero((out == (10, 20, 30)).all(-1))
    # 40 m x 40 m view, 3.2 px/m, camera centre 8 m ahead: 18 m ahead -> row 64 - 10 * 3.2 = 32.
    assert abs(ys.mean() - 32) < 1.5 and abs(xs.mean() - 64) < 1.5
    assert 14 <= ys.max() - ys.min() + 1 <= 18 and 5 <= xs.max() - xs.min() + 1 <= 8  # 5 m x 2 m
    right = draw_vehicle(img, BEV, np.array([18.0, 5.0]), 0.0, cfg)
    assert np.nonzero((right == (10, 20, 30)).all(-1))[1].mean() > 75  # +y is image right
    assert not img.any()  # input untouched


def test_point_along_path():
    path = np.array([[2.0, 0.0], [4.0, 0.0], [4.0, 2.0], [4.0, 4.0], [4.0, 6.0], [4.0, 8.0]])
    p, h = point_along(path, 6.0)
    np.testing.assert_allclose(p, [4.0, 2.0])
    assert h == pytest.approx(np.pi / 2)
    p, h = point_along(path, 15.0)  # beyond the end: straight on
    np.testing.assert_allclose(p, [4.0, 11.0])
    assert h == pytest.approx(np.pi / 2)
    p, h = point_along(np.zeros((6, 2)), 10.0)  # standing still: straight ahead
    np.testing.assert_allclose(p, [10.0, 0.0])
    assert h == 0.0


def test_summary_maths():
    base = np.array([[10.0, 0.0], [10.0, 0.0], [10.0, 0.0], [10.0, 0.0]])
    var = np.array([[6.0, 0.0], [10.0, 0.0], [12.0, 0.0], [10.0, 3.0]])
    s = summarize(base, var, eps=1e-3)
    assert s["decel_ratio"] == pytest.approx(0.25)
    assert s["mean_l2_3s"] == pytest.approx((4 + 0 + 2 + 3) / 4)
    assert s["mean_endpoint_change"] == pytest.approx((-4 + 0 + 2 + (np.hypot(10, 3) - 10)) / 4)


class _SpeedOnlyPipe:
    """A planner that ignores the image: endpoint = speed * 3 s straight ahead."""

    class config:  # noqa: N801 - mimics pipe.config
        image_size = (16, 16)
        waypoint_dt = 0.5
        num_waypoints = 6

    device = torch.device("cpu")

    def __call__(self, inputs, num_inference_steps=None, generator=None):
        t = torch.arange(1, 7, dtype=torch.float32) * 0.5
        traj = torch.stack([inputs.speed[:, None] * t, torch.zeros(len(inputs.speed), 6)], -1)
        return type("Out", (), {"trajectory": traj})()


def _frames(n=4):
    rng = np.random.default_rng(0)
    return [ProbeFrame(images=rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), command=4, speed=5.0 + i,
                       acceleration=0.0, target_point=np.array([30.0, 0.0], np.float32),
                       path=np.stack([np.arange(1, 7) * 2.0, np.zeros(6)], -1)) for i in range(n)]


def test_image_blind_planner_moves_only_with_speed():
    res = run_probe(_SpeedOnlyPipe(), _frames(), [BEV], ProbeConfig(samples=2, speed_delta=2.0))
    for v in ("blank",) + tuple(v for v in INSERTIONS if v != "insert_sky"):
        assert res.summary[v]["mean_l2_3s"] == 0.0 and res.summary[v]["decel_ratio"] == 0.0
    assert res.summary["speed_up"]["mean_l2_3s"] == pytest.approx(6.0)
    assert res.summary["speed_down"]["decel_ratio"] == 1.0
    assert set(res.summary) == set(VARIANTS) - {"insert_sky"}  # a top-down camera has no sky


def test_edits_change_only_what_they_should():
    frame = _frames(1)[0]
    edits, side = edited_frames(frame, [BEV], ProbeConfig())
    assert side in (1, -1)
    assert not edits["blank"]["images"].any()
    for name in (v for v in INSERTIONS if v != "insert_sky"):
        diff = (edits[name]["images"] != frame.images).any(-1)
        assert 0 < diff.sum() < 0.1 * diff.size, name
    assert np.array_equal(edits["speed_up"]["images"], frame.images) and edits["speed_up"]["speed"] == 8.0


def test_probe_cli_on_tiny_random_model(tmp_path):
    from agent.model import build_preset

    from training.cli_probe import add_arguments, run

    data = write_synthetic_dataset(tmp_path / "data", num_episodes=1, num_ticks=100, image_size=(64, 64))
    model = build_preset("tiny", seed=0, image_size=(32, 32))
    model.normalizer.fit(torch.randn(50, 6, 2) * 3 + 5)
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "agent.yaml").write_text("model: model\nrig: sandbox-bev\nseed: 3\n")
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--agent-config", str(tmp_path / "agent.yaml"), "--label", "tiny-random",
                              "--data", str(data), "--frames", "3", "--samples", "2", "--out", str(tmp_path / "out")])
    assert run(args) == 0
    result = json.loads((tmp_path / "out" / "probe.json").read_text())
    summary = result["models"]["tiny-random"]["summary"]
    assert set(summary) == set(VARIANTS) - {"insert_sky"} and summary["blank"]["frames"] == 3.0
    assert summary["blank"]["mean_l2_3s"] > 0  # a random model still reacts to its input image
    table = (tmp_path / "out" / "probe.md").read_text()
    assert "tiny-random" in table and "deceleration ratio" in table
    assert (tmp_path / "out" / "probe.png").stat().st_size > 1000
    assert (tmp_path / "out" / "probe_examples.png").is_file()


def test_sky_control_moves_the_near_sprite_above_the_horizon():
    from agent.rigs import get_rig
    from training.grounding import horizon_row

    front = dataclasses.asdict(get_rig("carla-3cam").cameras[1])
    assert abs(horizon_row(front, 160) - 80.0) < 1.0  # a level camera: the horizon is the middle row
    rng = np.random.default_rng(1)
    frame = ProbeFrame(images=rng.integers(0, 255, (1, 160, 288, 3), dtype=np.uint8), command=4, speed=8.0,
                       acceleration=0.0, target_point=np.array([30.0, 0.0], np.float32),
                       path=np.stack([np.arange(1, 7) * 4.0, np.zeros(6)], -1))
    edits, _ = edited_frames(frame, [front], ProbeConfig())
    near = (edits["insert_near"]["images"][0] != frame.images[0]).any(-1)
    sky = (edits["insert_sky"]["images"][0] != frame.images[0]).any(-1)
    assert near.sum() > 100 and abs(int(sky.sum()) - int(near.sum())) <= 0.02 * near.sum()
    assert np.nonzero(sky.any(1))[0].max() <= 80 - 0.05 * 160 and np.nonzero(near.any(1))[0].max() > 80
    edits_bev, _ = edited_frames(_frames(1)[0], [BEV], ProbeConfig())
    assert "insert_sky" not in edits_bev  # no sky in a top-down view

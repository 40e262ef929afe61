"""A tiny IK model trains 20 steps on a synthetic Bench2Drive clip, then drives the agent on the
Bench2Drive rig with JPEG compression at inference."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from agent.geo import GeoReference
from agent.rigs import get_rig, validate_sensor_suite
from agent.route_planner import LANEFOLLOW
from agent.synthetic import gps_plan, make_input_data, straight_route, world_plan
from training.bench2drive_synthetic import SyntheticClipConfig, write_synthetic_clip
from training.config import ConfigError, load_config

DT = 0.05


def tiny_b2d_config(tmp_path, train_dir, val_dir, max_steps=20):
    cfg = load_config("training/configs/ik_tiny_b2d.yaml")
    data = dataclasses.replace(cfg.data, train_dir=str(train_dir), val_dir=str(val_dir), max_val_frames=8)
    model = dataclasses.replace(cfg.model, overrides={"num_cameras": 3, "image_size": [32, 64]})
    optim = dataclasses.replace(cfg.optim, max_steps=max_steps, batch_size=4, warmup_steps=2)
    log = dataclasses.replace(cfg.log, output_dir=str(tmp_path / "run"), log_every=5, eval_every=max_steps,
                              save_every=max_steps)
    return dataclasses.replace(cfg, data=data, model=model, optim=optim, log=log, num_threads=1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("b2d")
    write_synthetic_clip(root / "train", SyntheticClipConfig(num_frames=60, width=256, height=144))
    write_synthetic_clip(root / "val", SyntheticClipConfig(num_frames=40, width=256, height=144, seed=1,
                                                           clip_name="Town13_Route1_Weather2"))
    return root / "train", root / "val"


def test_tiny_model_trains_20_steps_then_plans_through_the_agent(clips, tmp_path):
    from training.train import run

    cfg = tiny_b2d_config(tmp_path, *clips)
    result = run(cfg)
    assert result.final_step == 20
    rows = (tmp_path / "run" / "train_log.csv").read_text().strip().splitlines()
    assert len(rows) >= 4  # header + steps 5, 10, 15, 20
    assert result.last_val and math.isfinite(result.last_val["l2_3s"])
    final = Path(result.final_model)
    config = json.loads((final / "config.json").read_text())
    assert config["vision"]["num_cameras"] == 3

    from agent.ik_agent import IKAgent

    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text(f"model: {final}\nrig: b2d-3cam\njpeg_quality: 20\nnum_threads: 1\n"
                          "planning_hz: 10.0\ndebug_frames: true\n")
    agent = IKAgent("localhost", 2000, False)
    pts = straight_route(200.0)
    cmds = [LANEFOLLOW] * len(pts)
    agent.set_global_plan(gps_plan(pts, cmds, GeoReference()), world_plan(pts, cmds))
    agent.setup(str(agent_yaml))
    sensors = agent.sensors()
    validate_sensor_suite(sensors)
    assert [s["id"] for s in sensors[:3]] == ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    rig = get_rig("b2d-3cam")
    for k in range(4):
        data = make_input_data(rig, GeoReference(), (4.0 * k * DT, 0.0), 0.0, 4.0, k, rng=np.random.default_rng(k))
        control = agent.run_step(data, k * DT)
        assert all(math.isfinite(v) for v in (control.throttle, control.steer, control.brake))
    assert agent._loop.plans_made == 2 and agent._loop.failures == 0
    frame = agent.get_debug_frame()
    assert frame.trajectory.shape == (6, 2) and np.isfinite(frame.trajectory).all()
    assert frame.camera["id"] == "CAM_FRONT"
    agent.destroy()


def test_bench2drive_data_errors_name_the_key(clips, tmp_path):
    from training.train import split_data
    from agent.model.presets import preset_config

    cfg = tiny_b2d_config(tmp_path, *clips)
    with pytest.raises(ConfigError, match="model config"):
        split_data(cfg)
    model_cfg = preset_config("tiny", num_cameras=3, image_size=(32, 64))
    train, val = split_data(cfg, model_cfg)
    assert len(train.episodes) == 1 and train.episodes[0].meta.future_offset == 30
    bad = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, bench2drive=dataclasses.replace(cfg.data.bench2drive, cameras=["CAM_TOP"])))
    with pytest.raises(ConfigError, match="data.bench2drive.cameras"):
        split_data(bad, model_cfg)

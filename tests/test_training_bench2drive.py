"""Bench2Drive clip reader on a synthetic clip written in the dataset's layout."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import torch

from agent.ego_frame import world_to_ego
from training.bench2drive import (
    Bench2DriveConfig,
    Bench2DriveError,
    parse_frame,
    read_clip,
    scan_bench2drive,
)
from training.bench2drive_synthetic import SyntheticClipConfig, carla_matrix, path_pose, write_synthetic_clip
from training.dataset import DrivingDataset, collate


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("b2d")
    return write_synthetic_clip(root, SyntheticClipConfig(num_frames=80, width=320, height=180, with_depth_semantic=True))


def _anno(clip, frame):
    with gzip.open(clip / "anno" / f"{frame:05d}.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def _write_anno(clip, frame, data):
    with gzip.open(clip / "anno" / f"{frame:05d}.json.gz", "wt", encoding="utf-8") as f:
        json.dump(data, f)


def test_layout_is_the_datasets(clip):
    assert sorted(p.name for p in (clip / "camera").iterdir())[:3] == ["depth_front", "depth_front_left", "depth_front_right"]
    assert (clip / "camera" / "rgb_front_left" / "00000.jpg").is_file()
    raw = _anno(clip, 0)
    assert raw["bounding_boxes"][0]["class"] == "ego_vehicle" and len(raw["bounding_boxes"][0]["rotation"]) == 3


def test_poses_speed_and_acceleration(clip):
    ep = read_clip(clip)
    a = ep.arrays
    assert ep.meta.num_frames == 80 and ep.meta.tick_hz == 10.0 and ep.meta.cameras == [
        "CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    # Frame 0: ego at (0, 0) heading world -y: CARLA yaw -90 deg -> -pi/2 rad.
    np.testing.assert_allclose(a["ego_pose"][0], [0.0, 0.0, -math.pi / 2], atol=1e-9)
    # Frame 3 recorded speed None: the ego actor's speed (0.9 m/s) is used instead.
    assert _anno(clip, 3)["speed"] is None
    np.testing.assert_allclose(a["speed"][:5], [0.0, 0.3, 0.6, 0.9, 1.2], atol=1e-6)
    # Frame 7 has a NaN accelerometer: the speed difference (3 m/s^2) fills it.
    assert a["acceleration"][7] == pytest.approx(3.0, abs=1e-5)
    assert a["acceleration"][40] == pytest.approx(0.0, abs=1e-6)
    assert set(ep.meta.perturbation["fallbacks"]) == {"speed<-ego speed", "acceleration<-speed difference"}


def test_trajectory_labels_in_the_ego_frame(clip):
    a = read_clip(clip).arrays
    # At 6 m/s on the straight, waypoints every 0.5 s are 3 m apart straight ahead (+x).
    np.testing.assert_allclose(a["trajectory"][20, :, 0], 3.0 * np.arange(1, 7), atol=0.05)
    np.testing.assert_allclose(a["trajectory"][20, :, 1], 0.0, atol=1e-6)
    # The right turn bends the later waypoints to +y (right), as in the project's ego frame.
    assert a["trajectory"][40, -1, 1] > 3.0
    # Labels equal the world poses of later frames expressed in the frame's ego frame.
    pose = a["ego_pose"]
    expected = world_to_ego(pose[45, :2], pose[40, :2], pose[40, 2])
    np.testing.assert_allclose(a["trajectory"][40, 0], expected, atol=1e-5)
    assert a["trajectory_valid"].sum() == 80 - 30 and not a["trajectory_valid"][50]
    np.testing.assert_array_equal(a["future_frame"][:2], [30, 31])
    assert a["future_frame"][50] == -1


def test_route_command_and_target_point(clip):
    planner = read_clip(clip).arrays
    anno = read_clip(clip, Bench2DriveConfig(route_source="anno")).arrays
    # The right-turn nodes carry RoadOption RIGHT (2); the straight ones LANEFOLLOW (4).
    assert planner["command"][0] == 4 and (planner["command"] == 2).any() and planner["command"][-1] == 4
    # The agent's planner over the rebuilt route agrees with the recorded near nodes on most frames.
    same = np.all(np.abs(planner["target_point"] - anno["target_point"]) < 1e-3, axis=1)
    assert same.mean() > 0.9
    # Frame 0: near node at s = 18 m on the straight -> 18 m ahead (GNSS noise 0.2 m).
    np.testing.assert_allclose(anno["target_point"][0], [18.0, 0.0], atol=0.8)


def test_boxes_of_other_agents(clip):
    ep = read_clip(clip)
    boxes = ep.boxes_at(0)
    assert boxes.shape == (3, 5)  # lead car, parked car, walker; the car 400 m away is dropped
    lead = boxes[0]
    np.testing.assert_allclose(lead[:2], path_pose(15.0)[:2], atol=1e-5)
    np.testing.assert_allclose(lead[3:], [4.6, 2.0], atol=1e-5)  # 2 x extent
    parked = boxes[1]
    assert parked[2] == pytest.approx(0.0, abs=1e-9)  # world2vehicle yaw, not the wrong rotation (137 deg)
    ds = DrivingDataset([ep], image_size=(32, 64))
    gt = ds.gt_boxes(0, 0)  # boxes at t + 0.5 s ... in the ego frame of frame 0
    assert gt.shape[0] == 6 and gt.shape[2] == 5
    # The parked car at world (8, -2) seen from the ego at (0, 0) heading -y: 2 m ahead, 8 m to the
    # right (heading -y, the right-hand side is +x in CARLA's left-handed world).
    pose = ep.arrays["ego_pose"][0]
    expected = world_to_ego(np.array([8.0, -2.0]), pose[:2], pose[2])
    np.testing.assert_allclose(expected, [2.0, 8.0], atol=1e-9)
    assert np.any(np.all(np.abs(gt[0, :, :2] - expected) < 1e-4, axis=1))


def test_dataset_samples_match_the_sandbox_sample_type(clip):
    ep = read_clip(clip)
    ds = DrivingDataset([ep], image_size=(32, 64), horizon_s=3.0)
    assert len(ds) == 50
    s = ds[0]
    assert set(s) == {"images", "future_images", "command", "speed", "acceleration", "target_point",
                      "trajectory", "episode", "frame", "gt_boxes"}
    assert s["images"].shape == (3, 3, 32, 64) and s["images"].dtype == torch.float32
    assert float(s["images"].max()) <= 1.0 and not torch.equal(s["images"], s["future_images"])
    batch = collate([ds[0], ds[10]])
    assert batch["trajectory"].shape == (2, 6, 2) and batch["gt_boxes_mask"].any()


def test_depth_and_semantic(clip):
    ep = read_clip(clip)
    assert ep.depth(4, 1).shape == (180, 320) and int(ep.depth(4, 1)[0, 0]) == 14
    sem = ep.semantic(0, 0)
    assert sem.dtype == np.uint8 and sem[0, 0] == 1 and sem[-1, 0] == 7


def test_yaw_from_theta_when_rotation_missing(clip):
    raw = _anno(clip, 10)
    del raw["bounding_boxes"][0]["rotation"]
    rec = parse_frame(raw, "f", Bench2DriveConfig())
    assert rec.yaw == pytest.approx(-math.pi / 2) and rec.fallbacks == ["yaw<-theta"]
    raw["theta"] = None
    with pytest.raises(Bench2DriveError, match="no yaw"):
        parse_frame(raw, "clip frame 00010", Bench2DriveConfig())


def test_bad_frames_raise_naming_clip_frame_and_field(tmp_path):
    clip = write_synthetic_clip(tmp_path, SyntheticClipConfig(num_frames=12, width=64, height=36))
    raw = _anno(clip, 4)
    raw["speed"] = None
    raw["bounding_boxes"][0]["speed"] = None
    _write_anno(clip, 4, raw)
    with pytest.raises(Bench2DriveError, match=r"frame 00004: speed is None"):
        read_clip(clip)
    raw["speed"] = 1.0
    raw["x"] = raw["x"] + 100.0  # not the ego's position
    _write_anno(clip, 4, raw)
    with pytest.raises(Bench2DriveError, match=r"frame 00004: x, y .* from the ego location"):
        read_clip(clip)
    raw["x"] -= 100.0
    raw["command_near"] = 9
    _write_anno(clip, 4, raw)
    with pytest.raises(Bench2DriveError, match=r"frame 00004: command_near"):
        read_clip(clip)
    raw["command_near"] = 4
    del raw["bounding_boxes"][1]["center"]
    _write_anno(clip, 4, raw)
    with pytest.raises(Bench2DriveError, match=r"frame 00004: bounding_boxes\[1\] \(vehicle 200\): field 'center'"):
        read_clip(clip)
    (clip / "anno" / "00004.json.gz").write_bytes(b"not gzip")
    with pytest.raises(Bench2DriveError, match="00004.json.gz: not a readable gzip JSON"):
        read_clip(clip)
    (clip / "anno" / "00004.json.gz").unlink()
    with pytest.raises(Bench2DriveError, match="gap before frame 00005"):
        read_clip(clip)


def test_missing_image_and_scan_report(tmp_path):
    good = write_synthetic_clip(tmp_path, SyntheticClipConfig(num_frames=40, width=64, height=36))
    bad = write_synthetic_clip(tmp_path, SyntheticClipConfig(num_frames=10, width=64, height=36, clip_name="Town01_x"))
    (bad / "camera" / "rgb_front_right" / "00002.jpg").unlink()
    scan = scan_bench2drive(tmp_path)
    assert [e.path for e in scan.episodes] == [good]
    assert len(scan.skipped) == 1 and "frame 00002: camera image" in scan.skipped[0].reason


def test_carla_matrix_inverse_gives_the_yaw():
    m = carla_matrix(3.0, 4.0, 0.0, 0.0, 0.0, 30.0)
    from training.bench2drive import _yaw_of_matrix

    assert _yaw_of_matrix(np.linalg.inv(m), "m") == pytest.approx(math.radians(30.0))
    with pytest.raises(Bench2DriveError, match="4x4"):
        _yaw_of_matrix([[1, 0], [0, 1]], "m")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="cameras"):
        Bench2DriveConfig(cameras=("CAM_TOP",))
    with pytest.raises(ValueError, match="whole number"):
        Bench2DriveConfig(waypoint_dt=0.25)


def test_synthetic_clip_cli(tmp_path, capsys):
    from training.bench2drive_synthetic import main

    assert main(["--out", str(tmp_path), "--frames", "35", "--width", "64", "--height", "36"]) == 0
    ep = read_clip(next(iter(scan_bench2drive(tmp_path).episodes)).path)
    assert ep.meta.num_frames == 35 and ep.meta.image_shape == [36, 64, 3]
    assert "wrote" in capsys.readouterr().out

"""Episode files, manifest scan, labels and the torch dataset."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from training.dataset import DrivingDataset, build_index, collate, preprocess_image
from training.episodes import EpisodeError, read_episode, write_episode, decode_image, encode_image
from training.labels import future_trajectories, future_window_flags
from training.manifest import MANIFEST_NAME, scan_dataset
from training.recording import EpisodeRecorder, RecorderConfig, TickRecord
from training.synthetic import synthetic_episode, write_synthetic_dataset


@pytest.fixture()
def dataset_dir(tmp_path):
    return write_synthetic_dataset(tmp_path / "data", num_episodes=3, num_ticks=120, image_size=(16, 16))


def test_round_trip_preserves_arrays_and_images(tmp_path):
    rec, fields = synthetic_episode(3, num_ticks=100, image_size=(16, 24))
    meta, arrays = rec.finish(**fields)
    digest = write_episode(tmp_path / "ep.npz", meta, arrays)
    assert len(digest) == 64 and not list(tmp_path.glob("*.tmp"))
    ep = read_episode(tmp_path / "ep.npz")
    assert ep.meta.num_frames == 50 and ep.meta.num_ticks == 100 and ep.meta.image_shape == [16, 24, 3]
    for key, value in arrays.items():
        np.testing.assert_array_equal(ep.arrays[key], value, err_msg=key)
    img = ep.image(7, 0)
    assert img.shape == (16, 24, 3) and img.dtype == np.uint8
    # PNG is lossless: the decoded image is the rendered one.
    rec2, _ = synthetic_episode(3, num_ticks=100, image_size=(16, 24))
    np.testing.assert_array_equal(decode_image(rec2.encoded[7][0]), img)


def test_jpeg_and_png_codecs():
    rgb = (np.arange(32 * 32 * 3).reshape(32, 32, 3) % 256).astype(np.uint8)
    np.testing.assert_array_equal(decode_image(encode_image(rgb, "png")), rgb)
    jpg = decode_image(encode_image(rgb, "jpg", 90))
    assert jpg.shape == rgb.shape
    with pytest.raises(ValueError, match="image_format"):
        encode_image(rgb, "bmp")


def test_trajectory_labels_are_future_poses_in_ego_frame():
    # Ego drives along world -y (yaw -pi/2) at 10 m/s: forward in the ego frame is +x.
    k = 100
    t = np.arange(k) / 20.0
    pose = np.stack([np.full(k, 5.0), -10.0 * t, np.full(k, -np.pi / 2)], -1)
    traj, valid = future_trajectories(pose, np.array([0, 40]), num_waypoints=6, ticks_per_waypoint=10)
    np.testing.assert_allclose(traj[0, :, 0], 5.0 * np.arange(1, 7), atol=1e-5)
    np.testing.assert_allclose(traj[0, :, 1], 0.0, atol=1e-5)
    assert valid[0] and not valid[1] and np.isnan(traj[1, -1]).all()


def test_future_window_flags():
    perturbed = np.zeros(50, bool)
    perturbed[20] = True
    flags = future_window_flags(perturbed, np.array([0, 10, 19, 20, 21]), window_ticks=10)
    assert flags.tolist() == [False, True, True, False, False]


def test_scan_skips_corrupt_partial_and_missing_with_reasons(dataset_dir):
    files = sorted(dataset_dir.glob("*.npz"))
    assert len(scan_dataset(dataset_dir).episodes) == 3
    # Truncate one file, flip bytes inside another's arrays, leave a partial .tmp, delete a listed one.
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])
    shutil.copy(files[1], dataset_dir / "extra.npz")
    (dataset_dir / "ep_9_rep0.npz.tmp").write_bytes(b"partial")
    files[2].unlink()
    scan = scan_dataset(dataset_dir)
    reasons = {s.path.split("/")[-1]: s.reason for s in scan.skipped}
    assert "SHA-256 differs" in reasons[files[0].name]
    assert "partial write" in reasons["ep_9_rep0.npz.tmp"]
    assert "missing on disk" in reasons[files[2].name]
    assert [e.path.name for e in scan.episodes] == ["ep_1_rep0.npz", "extra.npz"]
    assert "skipped" in scan.report() and files[0].name in scan.report()


def test_corrupt_content_detected_without_manifest(dataset_dir):
    (dataset_dir / MANIFEST_NAME).unlink()
    path = sorted(dataset_dir.glob("*.npz"))[0]
    ep = read_episode(path)
    arrays = dict(ep.arrays)
    arrays["speed"] = arrays["speed"] + 1.0  # tamper, keep the old checksum
    np.savez(path, meta_json=np.frombuffer(json.dumps(ep.meta.__dict__).encode(), np.uint8), **arrays)
    with pytest.raises(EpisodeError, match="checksum mismatch"):
        read_episode(path)
    half = path.read_bytes()
    path.write_bytes(half[:-100])
    with pytest.raises(EpisodeError, match="truncated or corrupt"):
        read_episode(path)
    scan = scan_dataset(dataset_dir)
    assert len(scan.episodes) == 2 and len(scan.skipped) == 1


def test_writer_rejects_inconsistent_arrays(tmp_path):
    rec, fields = synthetic_episode(0, num_ticks=60, image_size=(8, 8))
    meta, arrays = rec.finish(**fields)
    arrays["speed"] = arrays["speed"][:-1]
    with pytest.raises(EpisodeError, match="speed"):
        write_episode(tmp_path / "bad.npz", meta, arrays)
    assert not list(tmp_path.iterdir())


def test_recorder_requires_consecutive_ticks_and_cameras():
    rec = EpisodeRecorder(RecorderConfig(cameras=("bev",)))
    base = dict(ego_xy=(0.0, 0.0), ego_yaw=0.0, speed=0.0, acceleration=0.0, command=4, target_point=np.zeros(2),
                expert_plan=np.zeros((6, 2)), control=(0.0, 0.0, 0.0), perturbed=False, boxes=np.zeros((0, 5)))
    with pytest.raises(ValueError, match="camera"):
        rec.add(TickRecord(tick=0, images={}, **base))
    with pytest.raises(ValueError, match="consecutive"):
        rec.add(TickRecord(tick=5, images={}, **base))
    with pytest.raises(ValueError, match="multiple of frame_stride"):
        RecorderConfig(frame_stride=4, waypoint_dt=0.1)


def test_dataset_samples_and_labels(dataset_dir):
    scan = scan_dataset(dataset_dir)
    ds = DrivingDataset(scan.episodes, image_size=(8, 8))
    # 60 frames per episode, future frame 30 frames later -> 30 samples each.
    assert len(ds) == 3 * 30
    s = ds[5]
    assert s["images"].shape == (1, 3, 8, 8) and s["future_images"].shape == (1, 3, 8, 8)
    assert s["trajectory"].shape == (6, 2) and s["images"].dtype == torch.float32
    assert 0.0 <= float(s["images"].min()) and float(s["images"].max()) <= 1.0
    ep = scan.episodes[int(s["episode"])]
    np.testing.assert_array_equal(s["trajectory"].numpy(), ep.arrays["trajectory"][int(s["frame"])])
    fut = int(ep.arrays["future_frame"][int(s["frame"])])
    assert fut == int(s["frame"]) + 30
    expect = preprocess_image(ep.image(fut, 0), (8, 8))
    np.testing.assert_allclose(s["future_images"][0].numpy(), expect, atol=0.5 / 255)
    # Boxes: 2 other vehicles at each waypoint time, in the ego frame.
    assert s["gt_boxes"].shape == (6, 2, 5)
    batch = collate([ds[i] for i in range(4)])
    assert batch["images"].shape == (4, 1, 3, 8, 8) and batch["gt_boxes_mask"].all()
    assert ds.all_trajectories().shape == (90, 6, 2)
    assert len(DrivingDataset(scan.episodes, image_size=(8, 8), max_frames=10)) == 10
    with pytest.raises(ValueError, match="not recorded"):
        DrivingDataset(scan.episodes, image_size=(8, 8), cameras=["front"])


def test_perturbed_label_policies(dataset_dir):
    ep = scan_dataset(dataset_dir).episodes[0]
    ep.arrays["future_perturbed"][:10] = True
    assert build_index([ep], "drop").frames.shape[0] == 20
    idx = build_index([ep], "plan")
    assert idx.frames.shape[0] == 30 and idx.use_plan[:10].all() and not idx.use_plan[10:].any()
    assert not build_index([ep], "actual").use_plan.any()


def test_motion_samples_are_the_actual_future_positions(dataset_dir):
    scan = scan_dataset(dataset_dir)
    ds = DrivingDataset(scan.episodes, image_size=(8, 8), horizon_s=[1.0, 3.0], with_motion=True)
    s = ds[7]
    ep = scan.episodes[int(s["episode"])]
    traj = ep.arrays["trajectory"][int(s["frame"])]  # waypoints at 0.5 s ... 3 s
    assert s["future_position"].shape == (2, 2) and s["future_images"].shape[0] == 2
    np.testing.assert_array_equal(s["future_position"].numpy(), traj[[1, 5]])
    # The position at 3 s is where the ego is when the future frame is taken (tick poses).
    fut = int(s["frame"]) + 30
    pose, pose_f = ep.arrays["ego_pose"][int(s["frame"])], ep.arrays["ego_pose"][fut]
    d = pose_f[:2] - pose[:2]
    c, si = np.cos(pose[2]), np.sin(pose[2])
    local = np.array([c * d[0] + si * d[1], -si * d[0] + c * d[1]])
    np.testing.assert_allclose(s["future_position"][1].numpy(), local, atol=1e-3)
    assert "future_position" not in DrivingDataset(scan.episodes, image_size=(8, 8))[0]
    with pytest.raises(ValueError, match="not one of the trajectory's waypoints"):
        DrivingDataset(scan.episodes, image_size=(8, 8), horizon_s=[0.2], with_motion=True)


def test_token_cache_attached_later_is_checked(dataset_dir):
    ds = DrivingDataset(scan_dataset(dataset_dir).episodes, image_size=(8, 8))
    with pytest.raises(ValueError, match="the cache holds 2 episodes, the dataset 3"):
        ds.tokens = [None, None]
    assert ds.tokens is None

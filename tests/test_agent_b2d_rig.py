"""The Bench2Drive camera rig and the JPEG compression of camera images at inference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.agent_config import ConfigError, agent_config_from_dict
from agent.geo import GeoReference
from agent.rigs import QUALIFIER_LIMITS, SensorSuiteError, get_rig, validate_sensor_suite
from agent.sensor_io import SensorDecoder, jpeg_round_trip
from agent.synthetic import make_input_data


def test_b2d_rig_matches_bench2drive_front_cameras():
    rig = get_rig("b2d-3cam")
    assert rig.camera_ids == ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT")
    assert rig.image_size == (900, 1600) and not rig.sandbox_only
    left, front, right = rig.cameras
    assert (front.x, front.y, front.z, front.yaw, front.fov) == (0.80, 0.0, 1.6, 0.0, 70.0)
    assert (left.x, left.y, left.yaw) == (0.27, -0.55, -55.0) and (right.x, right.y, right.yaw) == (0.27, 0.55, 55.0)
    for cam in rig.cameras:
        assert math.sqrt(cam.x ** 2 + cam.y ** 2 + cam.z ** 2) < 3.0
    validate_sensor_suite(rig.sensors())  # SENSORS track with the 3 m mount rule
    validate_sensor_suite(rig.sensors(), limits=QUALIFIER_LIMITS)


def test_b2d_rig_cameras_are_the_readers_cameras():
    from training.bench2drive import FRONT_CAMERAS

    assert get_rig("b2d-3cam").camera_ids == FRONT_CAMERAS


def test_mount_rule_still_applies_to_a_moved_camera():
    sensors = get_rig("b2d-3cam").sensors()
    sensors[1] = dict(sensors[1], x=2.7)  # 3.14 m from the centre
    with pytest.raises(SensorSuiteError, match="CAM_FRONT.*3.0 m"):
        validate_sensor_suite(sensors)


def _smooth_bgra(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = (xx * 255 // max(1, w - 1)).astype(np.uint8)
    img[..., 1] = (yy * 255 // max(1, h - 1)).astype(np.uint8)
    img[..., 2] = ((xx + yy) % 64 * 4).astype(np.uint8)
    img[..., 3] = 255
    return img


def test_jpeg_round_trip_matches_how_the_dataset_was_written():
    import cv2

    bgra = _smooth_bgra(90, 160)
    rgb = np.ascontiguousarray(bgra[:, :, 2::-1])
    ours = jpeg_round_trip("cam", rgb, 20)
    ok, buf = cv2.imencode(".jpg", bgra[:, :, :3], [cv2.IMWRITE_JPEG_QUALITY, 20])  # as data_collect.py writes
    theirs = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(ours, theirs)
    assert np.abs(ours.astype(int) - rgb.astype(int)).mean() > 0.5  # quality 20 is visibly lossy


def test_decoder_applies_jpeg_before_resizing():
    rig = get_rig("b2d-3cam")
    data = make_input_data(rig, GeoReference(), (0.0, 0.0), 0.0, 3.0, 0)
    for cam in rig.cameras:
        data[cam.id] = (0, _smooth_bgra(cam.height, cam.width))
    plain = SensorDecoder(rig, GeoReference(), (90, 160)).decode(data, 0.0)
    jpeg = SensorDecoder(rig, GeoReference(), (90, 160), jpeg_quality=20).decode(data, 0.0)
    assert jpeg.images.shape == plain.images.shape == (3, 90, 160, 3)
    assert not np.array_equal(jpeg.native[0], plain.native[0])
    np.testing.assert_array_equal(jpeg.native[0], jpeg_round_trip("c", plain.native[0], 20))
    with pytest.raises(ValueError, match="jpeg_quality"):
        SensorDecoder(rig, GeoReference(), (90, 160), jpeg_quality=0)


def test_agent_config_takes_jpeg_quality(tmp_path):
    cfg = agent_config_from_dict({"model": "m", "rig": "b2d-3cam", "jpeg_quality": 20})
    assert cfg.jpeg_quality == 20 and cfg.rig == "b2d-3cam"
    assert agent_config_from_dict({"model": "m"}).jpeg_quality is None
    with pytest.raises(ConfigError, match="jpeg_quality"):
        agent_config_from_dict({"model": "m", "jpeg_quality": 101})
    with pytest.raises(ConfigError, match="jpeg_quality"):
        agent_config_from_dict({"model": "m", "jpeg_quality": "high"})


def test_shipped_b2d_agent_config_loads():
    from pathlib import Path

    from agent.agent_config import load_agent_config

    path = Path(__file__).resolve().parents[1] / "agent" / "configs" / "b2d_3cam.yaml"
    cfg = load_agent_config(path)
    assert cfg.rig == "b2d-3cam" and cfg.jpeg_quality == 20
    assert cfg.model == (path.parent / "../../runs/ik_0.5b_b2d/final").resolve()

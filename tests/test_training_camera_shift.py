"""Camera-rig shift augmentation: the geometry, and a real sandbox collection with a shifted rig."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.ego_frame import world_to_ego
from training.camera_shift import CameraShiftConfig, RigShift, shift_labels

ROUTE = """<routes>
  <route id="5" town="highway">
    <waypoints><position x="20.0" y="4.0" z="0.0"/><position x="400.0" y="4.0" z="0.0"/></waypoints>
    <scenarios/>
  </route>
</routes>
"""


def test_labels_lead_from_the_shifted_cameras_back_to_the_driven_path():
    right = RigShift(lateral_m=0.8, yaw_rad=0.0)
    path = np.array([[5.0, 0.0], [10.0, 0.0]], dtype=np.float32)  # straight ahead of the real car
    out = right.to_virtual(path)
    assert out.dtype == np.float32 and np.allclose(out, [[5.0, -0.8], [10.0, -0.8]])  # seen from 0.8 m right: to the left
    turned = RigShift(lateral_m=0.0, yaw_rad=math.radians(10.0))  # cameras turned right: the path bends left
    ahead = turned.to_virtual(np.array([[10.0, 0.0]]))
    assert ahead[0, 1] < 0 and np.isclose(np.hypot(*ahead[0]), 10.0)
    assert np.isnan(right.to_virtual(np.array([[np.nan, np.nan]]))).all()


def test_the_virtual_pose_agrees_with_the_relabelled_points():
    shift = RigShift(lateral_m=-0.6, yaw_rad=math.radians(-7.0))
    poses = np.array([[100.0, 4.0, 0.3], [120.0, -2.0, -1.2]])
    world = np.array([[110.0, 9.0], [130.0, 1.0]])
    virtual = shift.virtual_pose(poses)
    for pose, vpose, point in zip(poses, virtual, world):
        direct = world_to_ego(point, vpose[:2], vpose[2])
        via_real = shift.to_virtual(world_to_ego(point, pose[:2], pose[2]))
        assert np.allclose(direct, via_real)
    arrays = {"trajectory": np.zeros((2, 6, 2), np.float32), "expert_plan": np.zeros((2, 6, 2), np.float32),
              "target_point": np.zeros((2, 2), np.float32), "ego_pose": poses, "speed": np.ones(2, np.float32)}
    out = shift_labels(arrays, shift)
    assert np.allclose(out["trajectory"][..., 1], 0.6 * math.cos(math.radians(7.0)), atol=1e-5)
    assert np.allclose(out["ego_pose"], virtual) and out["speed"] is arrays["speed"]
    assert np.all(arrays["trajectory"] == 0)  # the input is not modified


def test_cameras_move_with_the_virtual_ego_and_other_sensors_stay():
    from agent.rigs import get_rig

    shift = RigShift(lateral_m=0.5, yaw_rad=math.radians(10.0))
    specs = get_rig("carla-3cam").sensors()
    moved = shift.shift_sensors(specs)
    for a, b in zip(specs, moved):
        if a["type"].startswith("sensor.camera"):
            assert math.isclose(b["yaw"], a["yaw"] + 10.0)
            assert math.isclose(math.hypot(b["x"], b["y"] - 0.5), math.hypot(a["x"], a["y"]), abs_tol=1e-5)  # rigid
        else:
            assert a == b
    front = next(s for s in moved if s["id"] == "front")
    assert front["y"] > 0.5  # a forward mount turned right moves to the right


def test_config_draws_deterministically_and_parses():
    cfg = CameraShiftConfig.parse("default")
    draws = [cfg.draw(seed) for seed in range(400)]
    assert draws == [cfg.draw(seed) for seed in range(400)]
    shifted = [d for d in draws if d is not None]
    assert 0.4 < len(shifted) / len(draws) < 0.6
    lat = np.array([d.lateral_m for d in shifted])
    yaw = np.degrees([d.yaw_rad for d in shifted])
    assert (np.abs(lat) >= 0.1).all() and (np.abs(lat) <= 1.0).all() and (lat > 0).any() and (lat < 0).any()
    assert (np.abs(yaw) >= 5.0).all() and (np.abs(yaw) <= 12.5).all()
    assert CameraShiftConfig.parse("none").draw(3) is None
    custom = CameraShiftConfig.parse("p=1,shift=0.2-0.3,yaw=6-6")
    assert custom.probability == 1.0 and (custom.min_shift_m, custom.max_shift_m, custom.min_yaw_deg) == (0.2, 0.3, 6.0)
    with pytest.raises(ValueError, match="unknown key"):
        CameraShiftConfig.parse("lateral=1")
    with pytest.raises(ValueError, match="beside the car"):
        CameraShiftConfig(probability=1.0, max_shift_m=3.0)


def test_a_shifted_episode_records_the_same_drive_with_other_images_and_relabelled_labels(tmp_path):
    from training.collection import CollectConfig, NoiseConfig, OnPolicyConfig, run_collection
    from training.episodes import read_episode
    from training.recording import RecorderConfig

    routes = tmp_path / "r.xml"
    routes.write_text(ROUTE)
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text("model: .\nrig: carla-3cam\nlat_ref: 0.0\nlon_ref: 0.0\n")
    shift_cfg = CameraShiftConfig(probability=1.0, min_shift_m=0.7, max_shift_m=0.7, min_yaw_deg=8.0, max_yaw_deg=8.0)
    episodes = {}
    for name, shift in (("plain", CameraShiftConfig()), ("shifted", shift_cfg)):
        cfg = CollectConfig(routes=(str(routes),), out=str(tmp_path / name), seed=4, noise=NoiseConfig(rate_hz=0.0),
                            recorder=RecorderConfig(cameras=("left", "front", "right")), agent_config=str(agent_yaml),
                            max_ticks=80, camera_shift=shift)
        manifest = run_collection(cfg)
        assert manifest["totals"]["failed"] == 0, manifest
        episodes[name] = read_episode(tmp_path / name / manifest["episodes"][0]["file"])
    plain, shifted = episodes["plain"], episodes["shifted"]
    drawn = shift_cfg.draw(4)
    assert plain.meta.camera_shift == {} and shifted.meta.camera_shift == pytest.approx(drawn.to_meta())
    # the expert drove the real car exactly as before; the cameras saw it from elsewhere
    assert np.array_equal(plain.arrays["tick_pose"], shifted.arrays["tick_pose"])
    assert not np.array_equal(plain.image(20, 1), shifted.image(20, 1))
    for key in ("trajectory", "expert_plan", "target_point"):
        np.testing.assert_allclose(shifted.arrays[key], drawn.to_virtual(plain.arrays[key]), atol=1e-4)
    np.testing.assert_allclose(shifted.arrays["ego_pose"], drawn.virtual_pose(plain.arrays["ego_pose"]), atol=1e-9)
    with pytest.raises(ValueError, match="do not combine"):
        CollectConfig(routes=(str(routes),), out=str(tmp_path / "x"), camera_shift=shift_cfg,
                      policy=OnPolicyConfig("a.py"))

"""Sandbox sensors: input_data in the leaderboard format (keys, shapes, dtypes, frames, BGRA, GNSS,
IMU compass, speedometer) and sensor-suite validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.geo import compass_to_yaw
from carla_eval import scoring
from carla_eval.routes import RouteConfig
from carla_eval.sandbox.agents import ScriptedAgent
from carla_eval.sandbox.backend import SandboxBackend
from carla_eval.sandbox.config import CriteriaConfig, SandboxConfig
from carla_eval.sandbox.render import RenderStyle
from carla_eval.sandbox.sensors import SensorConfigError, validate_sensors
from carla_eval.sandbox.traffic import TrafficConfig
from carla_eval.sandbox.towns import get_town

CAMERA = {"type": "sensor.camera.rgb", "id": "bev", "x": 8.0, "y": 0.0, "z": 20.0, "roll": 0.0, "pitch": -90.0,
          "yaw": 0.0, "width": 128, "height": 128, "fov": 90.0}
RIG = [
    CAMERA,
    {"type": "sensor.other.gnss", "id": "gnss", "x": 0.0, "y": 0.0, "z": 0.0},
    {"type": "sensor.other.imu", "id": "imu", "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
    {"type": "sensor.speedometer", "id": "speed"},
]
# The intersection's east-west road, eastbound lane (y = +2): a short straight route.
ROUTE = RouteConfig(0, "s1", "intersection", ((-120.0, 2.0, 0.0), (-60.0, 2.0, 0.0)))


@pytest.fixture(scope="module")
def backend():
    # No background traffic: the image holds only the ego, so colours can be checked exactly. The
    # top-down camera is 20 m up: the 3 m mount-radius rule is turned off for it.
    return SandboxBackend(SandboxConfig(traffic=TrafficConfig(enabled=False), max_mount_distance=None))


def collect(backend, sensors, policy, route=ROUTE, ticks=None):
    frames = []

    def pol(t, data):
        frames.append(data)
        return policy(t, data)

    agent = ScriptedAgent(policy=pol, sensors=sensors)
    out = backend.run_route(route, agent, "", seed=0)
    return out, frames


def test_input_data_contract(backend):
    out, frames = collect(backend, RIG, lambda t, d: (0.5, 0.0, 0.0))
    assert out.status == scoring.STATUS_PERFECT
    assert len(frames) > 20
    for k, data in enumerate(frames[:30]):
        assert set(data) == {"bev", "gnss", "imu", "speed"}
        for sid, value in data.items():
            assert isinstance(value, tuple) and len(value) == 2
            assert value[0] == frames[0][sid][0] + k  # frame numbers grow by one per tick
        img = data["bev"][1]
        assert img.shape == (128, 128, 4) and img.dtype == np.uint8
        assert np.all(img[..., 3] == 255)
        assert data["gnss"][1].shape == (3,) and data["gnss"][1].dtype == np.float64
        assert data["imu"][1].shape == (7,) and data["imu"][1].dtype == np.float64
        assert set(data["speed"][1]) == {"speed"}
    speeds = [d["speed"][1]["speed"] for d in frames]
    assert speeds[0] == 0.0 and speeds[-1] > 3.0


def test_camera_bgra_ego_colour_and_position(backend):
    _, frames = collect(backend, [CAMERA], lambda t, d: (0.0, 0.0, 1.0))
    img = frames[0]["bev"][1]
    ego_rgb = RenderStyle().ego
    bgra = np.array([ego_rgb[2], ego_rgb[1], ego_rgb[0], 255], dtype=np.uint8)
    # The ego (5 m x 2 m) sits 8 m below the image centre (camera x = +8): 3.2 px / m.
    ppm = 128 / (2 * 20.0 * math.tan(math.radians(45)))
    row_centre = 64 + 8.0 * ppm
    rear_row = int(round(row_centre + 1.6 * ppm))  # behind the windscreen mark
    assert np.array_equal(img[rear_row, 64], bgra)
    assert not np.array_equal(img[rear_row, 64], np.array([*ego_rgb, 255], dtype=np.uint8))  # not RGBA
    mask = np.all(img == bgra, axis=-1)
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - row_centre) < 3.0 and abs(cols.mean() - 63.5) < 2.0
    # Image up = ego forward: the car is taller than wide.
    assert (rows.max() - rows.min()) > 2.0 * (cols.max() - cols.min())


def test_camera_any_size_and_fov(backend):
    cam = dict(CAMERA, id="wide", width=96, height=64, fov=120.0)
    _, frames = collect(backend, [cam], lambda t, d: (0.0, 0.0, 1.0))
    assert frames[0]["wide"][1].shape == (64, 96, 4)


def test_gnss_round_trip_and_compass(backend):
    town = get_town(ROUTE.town)
    out, frames = collect(backend, RIG, lambda t, d: (0.6, 0.0, 0.0))
    ego = out.trace.ego
    for k in (5, 20, len(frames) - 1):
        lat, lon, _ = frames[k]["gnss"][1]
        x, y, _ = town.geo.gnss_to_world(lat, lon)
        # frame k is read before tick k, i.e. at the state after tick k-1
        assert math.hypot(x - ego[k - 1, 0], y - ego[k - 1, 1]) < 0.1
        compass = frames[k]["imu"][1][6]
        assert abs(math.remainder(compass_to_yaw(compass) - ego[k - 1, 2], 2 * math.pi)) < 1e-6
        assert frames[k]["speed"][1]["speed"] == pytest.approx(ego[k - 1, 3])
        assert frames[k]["imu"][1][2] == pytest.approx(9.81)


def test_imu_turning_right_has_positive_yaw_rate():
    from carla_eval.sandbox.sensors import EgoReading, SensorSuite
    from carla_eval.sandbox.map_index import get_map_index

    town = get_town("intersection")
    suite = SensorSuite(RIG[1:3], get_map_index(town), town.geo)
    data = suite.read(7, EgoReading(0.0, 0.0, 0.0, 10.0, 1.0, 0.2), [])
    acc_x, acc_y, _, _, _, gyro_z, compass = data["imu"][1]
    assert (acc_x, acc_y, gyro_z) == (1.0, pytest.approx(2.0), 0.2)
    assert compass == pytest.approx(math.pi / 2)  # yaw 0 = east = compass 90 deg
    assert data["imu"][0] == 7


@pytest.mark.parametrize(
    "sensors, message",
    [
        ([{"type": "sensor.lidar.ray_cast", "id": "lidar", "x": 0, "y": 0, "z": 2, "roll": 0, "pitch": 0, "yaw": 0}], "not supported by the sandbox"),
        ([{"type": "sensor.opendrive_map", "id": "map", "reading_frequency": 1}], "not allowed on this track"),
        ([CAMERA, dict(CAMERA)], "duplicated sensor id"),
        ([dict(CAMERA, id=f"c{k}") for k in range(9)], r"too many sensor.camera.rgb \(max 8\)"),
        ([{"type": "sensor.other.gnss", "id": f"g{k}", "x": 0, "y": 0, "z": 1} for k in (1, 2)], r"too many sensor.other.gnss \(max 1\)"),
        ([dict(CAMERA, fov=0.0)], "fov"),
        ([dict(CAMERA, z=-1.0)], "height"),
        ([{"id": "x"}], "not allowed"),
        ("bev", "list"),
    ],
)
def test_invalid_sensor_suites_raise(sensors, message):
    with pytest.raises(SensorConfigError, match=message):
        validate_sensors(sensors)


def test_mount_radius_check_is_optional():
    validate_sensors([CAMERA])
    with pytest.raises(SensorConfigError, match="mounted"):
        validate_sensors([CAMERA], max_mount_distance=3.0)


def test_the_3m_mount_rule_is_on_by_default():
    backend = SandboxBackend(SandboxConfig(traffic=TrafficConfig(enabled=False)))
    agent = ScriptedAgent(controls=[(1.0, 0.0, 0.0)], sensors=RIG)
    out = backend.run_route(ROUTE, agent, "", seed=0)
    assert out.status == scoring.STATUS_SENSORS_INVALID
    assert "'bev' is mounted 21.54 m from the vehicle centre (max 3.0 m)" in out.error


def test_carla_3cam_in_the_sandbox_with_ground_truth_apart_from_input_data():
    from agent.rigs import get_rig
    from carla_eval.sandbox.camera.renderer import decode_carla_depth

    backend = SandboxBackend(SandboxConfig(traffic=TrafficConfig(enabled=False), camera_ground_truth=True,
                                           criteria=CriteriaConfig(max_ticks=5)))
    seen = []

    def policy(t, data):
        seen.append((data, {k: {c: a.copy() for c, a in v.items()} for k, v in backend.session.sensors.ground_truth.items()}))
        return (0.5, 0.0, 0.0)

    out = backend.run_route(ROUTE, ScriptedAgent(policy=policy, sensors=get_rig("carla-3cam").sensors()), "", seed=0)
    assert out.status == scoring.STATUS_AGENT_TIMEOUT  # the tick cap
    data, truth = seen[-1]
    assert set(data) == {"left", "front", "right", "gnss", "imu", "speed"}  # no ground truth in input_data
    for cam in ("left", "front", "right"):
        img = data[cam][1]
        assert img.shape == (160, 288, 4) and img.dtype == np.uint8 and (img[..., 3] == 255).all()
        assert truth["depth"][cam].shape == (160, 288, 4) and truth["semantic"][cam].shape == (160, 288, 4)
    depth = decode_carla_depth(truth["depth"]["front"])
    assert 2.0 < depth[-1, 144] < 10.0 and depth[0, 144] == pytest.approx(1000.0)


def test_unsupported_sensor_fails_route_with_status(backend):
    lidar = [{"type": "sensor.lidar.ray_cast", "id": "lidar", "x": 0, "y": 0, "z": 2, "roll": 0, "pitch": 0, "yaw": 0}]
    agent = ScriptedAgent(controls=[(1.0, 0.0, 0.0)], sensors=lidar)
    out = backend.run_route(ROUTE, agent, "", seed=0)
    assert out.status == scoring.STATUS_SENSORS_INVALID
    assert "lidar" in out.error and "not supported" in out.error
    assert out.trace is None and out.scores["score_composed"] == 0.0
    assert agent.destroyed

"""Sensor rigs and the SENSORS-track validator."""

import copy

import pytest

from agent.rigs import (QUALIFIER_LIMITS, RIGS, SensorSuiteError, get_rig, validate_sensor_suite)


def test_carla_3cam_passes_the_sensors_track_limits():
    sensors = get_rig("carla-3cam").sensors()
    validate_sensor_suite(sensors)
    validate_sensor_suite(sensors, limits=QUALIFIER_LIMITS)  # the stricter LB 2.0 table too
    cams = [s for s in sensors if s["type"] == "sensor.camera.rgb"]
    assert [c["id"] for c in cams] == ["left", "front", "right"]
    assert [c["yaw"] for c in cams] == [-60.0, 0.0, 60.0]
    assert all((c["width"], c["height"]) == (288, 160) for c in cams)
    for kind in ("sensor.other.gnss", "sensor.other.imu", "sensor.speedometer"):
        assert sum(s["type"] == kind for s in sensors) == 1


def test_sandbox_bev_rig_layout_and_mount_radius():
    rig = get_rig("sandbox-bev")
    (cam,) = [s for s in rig.sensors() if s["type"] == "sensor.camera.rgb"]
    assert (cam["id"], cam["width"], cam["height"], cam["x"], cam["y"], cam["z"], cam["pitch"], cam["fov"]) == (
        "bev", 128, 128, 8.0, 0.0, 20.0, -90.0, 90.0)
    assert rig.sandbox_only
    with pytest.raises(SensorSuiteError, match="'bev'.*3.0 m"):
        validate_sensor_suite(rig.sensors())
    validate_sensor_suite(rig.sensors(), max_mount_radius_m=None)


def test_every_rig_has_unique_ids_and_consistent_geometry():
    for rig in RIGS.values():
        ids = [s["id"] for s in rig.sensors()]
        assert len(ids) == len(set(ids))
        assert rig.image_size == (rig.cameras[0].height, rig.cameras[0].width)
        assert {(c.height, c.width) for c in rig.cameras} == {rig.image_size}


def test_unknown_rig_lists_known_names():
    with pytest.raises(ValueError, match="carla-3cam"):
        get_rig("nine-cams")


def _base():
    return get_rig("carla-3cam").sensors()


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda s: s.append(copy.deepcopy(s[0])), "duplicated sensor id 'left'"),
        (lambda s: s.extend({**copy.deepcopy(s[0]), "id": f"c{i}"} for i in range(6)), "too many sensor.camera.rgb"),
        (lambda s: s.append({**copy.deepcopy(s[3]), "id": "gnss2"}), "too many sensor.other.gnss"),
        (lambda s: s.append({"type": "sensor.opendrive_map", "reading_frequency": 1, "id": "map"}), "not allowed"),
        (lambda s: s[0].update(x=2.5, z=2.0), "'left' is mounted"),
        (lambda s: s[1].pop("fov"), "'front'.*lacks \\['fov'\\]"),
        (lambda s: s[2].pop("id"), "no string 'id'"),
    ],
)
def test_validator_rejects(mutate, needle):
    sensors = _base()
    mutate(sensors)
    with pytest.raises(SensorSuiteError, match=needle):
        validate_sensor_suite(sensors)

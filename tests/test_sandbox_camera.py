"""Perspective cameras of the sandbox: pinhole projection of rendered geometry, depth and semantic
ground truth in CARLA's encodings, determinism, appearance presets, and the SENSORS-track rig."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from agent.rigs import get_rig, validate_sensor_suite
from carla_eval.projection import PinholeCamera
from carla_eval.sandbox.camera.appearance import PRESETS, preset_from_weather, route_appearance
from carla_eval.sandbox.camera.renderer import (
    PerspectiveRenderer,
    decode_carla_depth,
    encode_carla_depth,
    ground_plane_depth,
    vehicle_vertices,
)
from carla_eval.sandbox.camera.scene import SEMANTIC_CLASSES
from carla_eval.sandbox.map_index import get_map_index
from carla_eval.sandbox.towns import get_town

CAR = SEMANTIC_CLASSES["car"]
# Highway lane 1 is straight along +x; ego at x = 500.
EGO = (500.0, 4.0, 0.0)


def cam(id="c", x=1.3, y=0.0, z=2.3, roll=0.0, pitch=0.0, yaw=0.0, width=288, height=160, fov=70.0):
    return {"type": "sensor.camera.rgb", "id": id, "x": x, "y": y, "z": z, "roll": roll, "pitch": pitch,
            "yaw": yaw, "width": width, "height": height, "fov": fov}


def vehicle(x, y, heading, actor_id=7, length=5.0, width=2.0):
    return SimpleNamespace(position=np.array([x, y]), heading=heading, actor_id=actor_id, LENGTH=length, WIDTH=width)


@pytest.fixture(scope="module")
def index():
    return get_map_index(get_town("highway"))


def render_one(index, spec, car, ground_truth=True):
    ego = vehicle(*EGO, actor_id=1)
    r = PerspectiveRenderer([spec], index, PRESETS["clear_noon"], ground_truth=ground_truth)
    try:
        return r.render(EGO[0], EGO[1], EGO[2], [ego, car])
    finally:
        r.close()


def projected_bbox(spec, car):
    """Continuous-pixel bbox of the car model's corners, via the ego-frame pinhole projection."""
    verts = vehicle_vertices(car.LENGTH, car.WIDTH)  # vehicle frame of the car
    c, s = math.cos(car.heading - EGO[2]), math.sin(car.heading - EGO[2])
    rel = np.array([car.position[0] - EGO[0], car.position[1] - EGO[1]])
    ce, se = math.cos(-EGO[2]), math.sin(-EGO[2])
    rel = np.array([ce * rel[0] - se * rel[1], se * rel[0] + ce * rel[1]])
    ego_pts = np.stack([rel[0] + c * verts[:, 0] - s * verts[:, 1], rel[1] + s * verts[:, 0] + c * verts[:, 1], verts[:, 2]], 1)
    uv, valid = PinholeCamera.from_spec(spec).project(ego_pts)
    assert valid.all()
    return uv[:, 0].min(), uv[:, 0].max(), uv[:, 1].min(), uv[:, 1].max()


@pytest.mark.parametrize("spec,car", [
    (cam(id="front"), vehicle(518.0, 4.0, 0.0)),  # carla-3cam front, car ahead
    (cam(id="front"), vehicle(525.0, 7.5, 0.3)),  # ahead-right, turned
    (cam(id="left", yaw=-60.0), vehicle(508.0, -6.0, 0.0)),  # carla-3cam left
    (cam(id="right", yaw=60.0), vehicle(507.0, 13.0, -0.5)),  # carla-3cam right
    (cam(x=0.5, y=0.4, z=1.8, pitch=-12.0, roll=4.0, yaw=10.0, width=320, height=240, fov=90.0), vehicle(512.0, 6.0, 1.0)),
])
def test_rendered_vehicle_matches_pinhole_projection(index, spec, car):
    sem = render_one(index, spec, car)["semantic"][spec["id"]][..., 2]
    rows, cols = np.nonzero(sem == CAR)
    assert len(rows) > 30
    u0, u1, v0, v1 = projected_bbox(spec, car)
    # A pixel is drawn when its centre (i + 0.5) is covered: first / last covered pixel indices.
    expect = (math.ceil(u0 - 0.5), math.floor(u1 - 0.5), math.ceil(v0 - 0.5), math.floor(v1 - 0.5))
    got = (cols.min(), cols.max(), rows.min(), rows.max())
    assert np.abs(np.array(got) - np.array(expect)).max() <= 1, (got, expect)


def test_depth_of_a_vertical_face_and_the_ground(index):
    spec = cam(id="front")
    car = vehicle(518.0, 4.0, 0.0)  # rear face at x = 515.5 m: 15.5 - 1.3 = 14.2 m from the camera
    out = render_one(index, spec, car)
    depth = decode_carla_depth(out["depth"]["front"])
    sem = out["semantic"]["front"][..., 2]
    # The centre of the body's rear face (z 0.35-1.1 m) and the pixels around it.
    (u, v), = PinholeCamera.from_spec(spec).project(np.array([[15.5, 0.0, 0.725]]))[0]
    face = depth[int(v) - 2 : int(v) + 3, int(u) - 3 : int(u) + 4]
    assert (sem[int(v) - 2 : int(v) + 3, int(u) - 3 : int(u) + 4] == CAR).all()
    assert np.abs(face - 14.2).max() < 0.05
    plane = ground_plane_depth(PinholeCamera.from_spec(spec))
    ground = np.isin(sem, [SEMANTIC_CLASSES["road"], SEMANTIC_CLASSES["road_line"], SEMANTIC_CLASSES["terrain"]])
    assert ground[-1].all()  # the bottom row sees the ground
    assert np.allclose(depth[ground], plane[ground], atol=1e-3)
    sky = sem == SEMANTIC_CLASSES["sky"]
    assert sky[0].any() and np.allclose(depth[sky], 1000.0, atol=1e-3)
    # Bottom row: 2.3 m camera height, ray (v - 80) / f below the axis.
    f = PinholeCamera.from_spec(spec).focal
    assert depth[-1, 144] == pytest.approx(2.3 * f / (159.5 - 80.0), rel=1e-4)


def test_semantic_classes_and_scene_content(index):
    spec = cam(id="front")
    out = render_one(index, spec, vehicle(520.0, 4.0, 0.0))
    classes = set(np.unique(out["semantic"]["front"][..., 2]).tolist())
    assert {SEMANTIC_CLASSES[k] for k in ("road", "road_line", "terrain", "sky", "car")} <= classes
    rgb = out["rgb"]["front"]
    assert rgb.shape == (160, 288, 4) and rgb.dtype == np.uint8 and (rgb[..., 3] == 255).all()
    # The sky is above the road: top rows bluish, bottom rows grey asphalt / lines.
    assert rgb[:10, :, 0].mean() > rgb[:10, :, 2].mean()  # BGRA: blue > red in the sky
    assert classes & {SEMANTIC_CLASSES[k] for k in ("pole", "traffic_sign", "vegetation", "building", "sidewalk")}


def test_renders_are_deterministic_and_move_with_the_car(index):
    specs = [c.to_sensor() for c in get_rig("carla-3cam").cameras]
    cars = [vehicle(*EGO, actor_id=1)] + [vehicle(510.0 + 7 * k, 4.0 * (k % 3), 0.0, actor_id=10 + k) for k in range(20)]
    images = []
    for _ in range(2):
        r = PerspectiveRenderer(specs, index, route_appearance([], 3, "r"))
        images.append([r.render(EGO[0] + dx, EGO[1], 0.0, cars)["rgb"] for dx in (0.0, 1.0)])
        r.close()
    for cam_id in ("left", "front", "right"):
        assert images[0][0][cam_id].tobytes() == images[1][0][cam_id].tobytes()
        assert images[0][1][cam_id].tobytes() == images[1][1][cam_id].tobytes()
        # 1 m of motion along a straight road changes the picture (texture, markings, roadside).
        assert np.abs(images[0][0][cam_id].astype(int) - images[0][1][cam_id].astype(int)).mean() > 2.0


def test_appearance_presets_follow_weather_and_seed(index):
    assert preset_from_weather({"sun_altitude_angle": "-10"}) == "dusk"
    assert preset_from_weather({"sun_altitude_angle": "70", "precipitation": "60"}) == "wet_cloudy"
    assert preset_from_weather({"sun_altitude_angle": "8"}) == "clear_sunset"
    assert preset_from_weather({"cloudiness": "80", "sun_altitude_angle": "45"}) == "cloudy_noon"
    assert preset_from_weather({"sun_altitude_angle": "45", "cloudiness": "5"}) == "clear_noon"
    with pytest.raises(ValueError, match="cloudiness"):
        preset_from_weather({"cloudiness": "lots"})
    assert route_appearance([], 5, "a") == route_appearance([], 5, "a")
    looks = {route_appearance([], seed, "a").name for seed in range(40)}
    assert len(looks) >= 4
    spec = cam(id="front")
    ego = vehicle(*EGO, actor_id=1)
    means = []
    for name in ("clear_noon", "dusk"):
        r = PerspectiveRenderer([spec], index, PRESETS[name])
        means.append(r.render(EGO[0], EGO[1], 0.0, [ego])["rgb"]["front"][..., :3].mean())
        r.close()
    assert means[1] < 0.7 * means[0]


def test_carla_depth_encoding_round_trip():
    d = np.array([[0.0, 0.5, 12.345, 999.0, 1000.0]])
    assert np.allclose(decode_carla_depth(encode_carla_depth(d)), d, atol=1e-4)


def test_carla_3cam_rig_passes_the_sensors_validator_with_the_3m_rule():
    validate_sensor_suite(get_rig("carla-3cam").sensors(), max_mount_radius_m=3.0)


def test_probe_sprite_lands_where_the_front_camera_sees_the_road(index):
    from training.grounding import ProbeConfig, box_corners, draw_vehicle

    spec = cam(id="front")
    out = render_one(index, spec, vehicle(900.0, 4.0, 0.0), ground_truth=False)  # the car is out of view
    image = np.ascontiguousarray(out["rgb"]["front"][..., 2::-1])
    edited = draw_vehicle(image, spec, np.array([10.0, 0.0]), 0.0, ProbeConfig())
    rows, cols = np.nonzero(np.any(edited != image, axis=-1))
    uv, valid = PinholeCamera.from_spec(spec).project(box_corners(np.array([10.0, 0.0]), 0.0, (5.0, 2.0), 1.5))
    assert valid.all()
    # (anti-aliased edges: within 2 px of the projected box)
    assert abs(cols.min() - uv[:, 0].min()) <= 2 and abs(cols.max() - uv[:, 0].max()) <= 2
    assert abs(rows.min() - uv[:, 1].min()) <= 2 and abs(rows.max() - uv[:, 1].max()) <= 2
    # 10 m ahead of the ego centre is on the road in front: the sprite covers the image centre column.
    assert cols.min() < 144 < cols.max() and rows.max() > 80

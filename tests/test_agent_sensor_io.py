"""Decoding leaderboard input_data: BGRA -> RGB, GNSS -> metres, compass -> yaw, speed, acceleration."""

import math

import numpy as np
import pytest

from agent.geo import GeoReference, yaw_to_compass
from agent.rigs import get_rig
from agent.sensor_io import SensorDecoder, SensorInputError, bgra_to_rgb, resize_rgb
from agent.synthetic import make_input_data


def test_bgra_to_rgb_swaps_channels_and_drops_alpha():
    bgra = np.zeros((2, 3, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 255  # B, G, R, A
    rgb = bgra_to_rgb("cam", bgra, 2, 3)
    assert rgb.shape == (2, 3, 3) and rgb.flags.c_contiguous
    assert rgb[0, 0].tolist() == [30, 20, 10]


def test_resize_to_the_model_size():
    image = np.zeros((160, 288, 3), dtype=np.uint8)
    image[:, 144:] = 200
    small = resize_rgb(image, (80, 144))
    assert small.shape == (80, 144, 3) and small.dtype == np.uint8
    assert small[:, :70].max() == 0 and small[:, 74:].min() == 200
    assert resize_rgb(image, (160, 288)) is image


@pytest.mark.parametrize("geo", [GeoReference(), GeoReference(49.0, 8.4)])
@pytest.mark.parametrize("yaw", [0.0, 1.0, -2.5, math.pi / 2])
def test_decode_ego_state(geo, yaw):
    rig = get_rig("carla-3cam")
    decoder = SensorDecoder(rig, geo, image_size=(80, 144))
    data = make_input_data(rig, geo, (123.4, -56.7), yaw, speed=7.5, frame=3,
                           rng=np.random.default_rng(0), acceleration=1.25)
    frame = decoder.decode(data, timestamp=1.0)
    assert frame.images.shape == (3, 80, 144, 3) and frame.images.dtype == np.uint8
    assert frame.first_camera.shape == (160, 288, 3)
    assert np.allclose(frame.first_camera, data["left"][1][:, :, 2::-1])
    assert np.allclose(frame.ego.position, [123.4, -56.7], atol=1e-4)
    assert math.isclose(math.remainder(frame.ego.yaw - yaw, 2 * math.pi), 0.0, abs_tol=1e-9)
    assert frame.ego.speed == 7.5 and frame.ego.acceleration == 1.25


def test_acceleration_from_speed_differences_and_clipping():
    rig, geo = get_rig("sandbox-bev"), GeoReference()
    decoder = SensorDecoder(rig, geo, (128, 128), acceleration_source="speed", max_abs_acceleration=5.0)
    speeds = [0.0, 0.1, 0.3, 0.3, 5.0]
    accels = [decoder.decode(make_input_data(rig, geo, (0, 0), 0.0, v, i), 0.05 * i).ego.acceleration
              for i, v in enumerate(speeds)]
    assert accels[0] == 0.0
    assert accels[1] == pytest.approx(2.0) and accels[2] == pytest.approx(4.0) and accels[3] == pytest.approx(0.0)
    assert accels[4] == 5.0  # clipped
    imu = SensorDecoder(rig, geo, (128, 128), acceleration_source="imu", max_abs_acceleration=5.0)
    assert imu.decode(make_input_data(rig, geo, (0, 0), 0.0, 1.0, 0, acceleration=-30.0), 0.0).ego.acceleration == -5.0


def _bad_cases():
    rig, geo = get_rig("sandbox-bev"), GeoReference()

    def base():
        return make_input_data(rig, geo, (1.0, 2.0), 0.3, 4.0, 7)

    def case(fn):
        data = base()
        fn(data)
        return data

    yield "missing camera", case(lambda d: d.pop("bev")), "bev"
    yield "missing gnss", case(lambda d: d.pop("gnss")), "gnss"
    yield "missing imu", case(lambda d: d.pop("imu")), "imu"
    yield "missing speed", case(lambda d: d.pop("speed")), "speed"
    yield "camera float", case(lambda d: d.update(bev=(7, d["bev"][1].astype(np.float32)))), "bev"
    yield "camera RGB not BGRA", case(lambda d: d.update(bev=(7, d["bev"][1][:, :, :3].copy()))), "bev"
    yield "camera wrong size", case(lambda d: d.update(bev=(7, np.zeros((64, 64, 4), np.uint8)))), "bev"
    yield "camera not an array", case(lambda d: d.update(bev=(7, [[0]]))), "bev"
    yield "not a pair", case(lambda d: d.update(gnss=np.zeros(3))), "gnss"
    yield "gnss nan", case(lambda d: d.update(gnss=(7, np.array([np.nan, 0.0, 0.0])))), "gnss"
    yield "gnss short", case(lambda d: d.update(gnss=(7, np.array([0.0])))), "gnss"
    yield "gnss out of range", case(lambda d: d.update(gnss=(7, np.array([95.0, 0.0, 0.0])))), "gnss"
    yield "imu inf", case(lambda d: d.update(imu=(7, np.array([0, 0, 0, 0, 0, 0, np.inf])))), "imu"
    yield "imu strings", case(lambda d: d.update(imu=(7, "north"))), "imu"
    yield "speed nan", case(lambda d: d.update(speed=(7, {"speed": float("nan")}))), "speed"
    yield "speed not a dict", case(lambda d: d.update(speed=(7, 3.0))), "speed"


@pytest.mark.parametrize("name,data,sensor_id", list(_bad_cases()), ids=[c[0] for c in _bad_cases()])
def test_bad_inputs_raise_naming_the_sensor(name, data, sensor_id):
    decoder = SensorDecoder(get_rig("sandbox-bev"), GeoReference(), (128, 128))
    with pytest.raises(SensorInputError) as info:
        decoder.decode(data, 0.0)
    assert info.value.sensor_id == sensor_id


def test_non_dict_input_and_bad_timestamp():
    decoder = SensorDecoder(get_rig("sandbox-bev"), GeoReference(), (128, 128))
    with pytest.raises(SensorInputError):
        decoder.decode(None, 0.0)
    data = make_input_data(get_rig("sandbox-bev"), GeoReference(), (0, 0), 0.0, 1.0, 0)
    with pytest.raises(SensorInputError, match="timestamp"):
        decoder.decode(data, float("nan"))
    with pytest.raises(ValueError, match="acceleration_source"):
        SensorDecoder(get_rig("sandbox-bev"), GeoReference(), (128, 128), acceleration_source="gps")


def test_compass_convention_north_is_minus_y():
    rig, geo = get_rig("sandbox-bev"), GeoReference()
    data = make_input_data(rig, geo, (0, 0), 0.0, 0.0, 0)
    data["imu"][1][6] = 0.0  # compass 0 = north = world -y
    frame = SensorDecoder(rig, geo, (128, 128)).decode(data, 0.0)
    assert frame.ego.yaw == pytest.approx(-math.pi / 2)
    assert yaw_to_compass(frame.ego.yaw) == pytest.approx(0.0)


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
def test_whole_factor_shrink_needs_no_opencv_and_equals_it(factor):
    import cv2

    from agent.sensor_io import area_downscale, resize_rgb

    img = np.random.default_rng(factor).integers(0, 256, (80 * factor, 144 * factor, 3), dtype=np.uint8)
    want = cv2.resize(img, (144, 80), interpolation=cv2.INTER_AREA)
    assert np.array_equal(area_downscale(img, factor), want)
    assert np.array_equal(resize_rgb(img, (80, 144)), want)

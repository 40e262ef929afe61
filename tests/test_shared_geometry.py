import math

import numpy as np
import pytest

from agent.ego_frame import ego_to_world, world_to_ego
from agent.geo import GeoReference, compass_to_yaw, wrap_angle, yaw_to_compass


@pytest.mark.parametrize("ref", [GeoReference(), GeoReference(48.5, 9.1), GeoReference(-33.9, 151.2)])
@pytest.mark.parametrize("xy", [(0.0, 0.0), (1234.5, -987.6), (-5000.0, 4000.0)])
def test_gnss_round_trip_below_a_millimetre(ref, xy):
    lat, lon, alt = ref.world_to_gnss(*xy, 3.0)
    x, y, z = ref.gnss_to_world(lat, lon, alt)
    assert abs(x - xy[0]) < 1e-3 and abs(y - xy[1]) < 1e-3 and z == 3.0


def test_gnss_axes_follow_carla_world():
    ref = GeoReference()
    lat0, lon0, _ = ref.world_to_gnss(0.0, 0.0)
    lat_e, lon_e, _ = ref.world_to_gnss(100.0, 0.0)  # east
    lat_s, lon_s, _ = ref.world_to_gnss(0.0, 100.0)  # world +y is south
    assert lon_e > lon0 and abs(lat_e - lat0) < 1e-9
    assert lat_s < lat0 and abs(lon_s - lon0) < 1e-9


def test_bad_geo_reference_is_rejected():
    with pytest.raises(ValueError, match="geo-reference"):
        GeoReference(lat_ref=95.0)


@pytest.mark.parametrize("yaw", np.linspace(-math.pi, math.pi - 1e-6, 13))
def test_compass_round_trip(yaw):
    assert abs(wrap_angle(compass_to_yaw(yaw_to_compass(yaw)) - yaw)) < 1e-9


def test_compass_conventions():
    assert abs(compass_to_yaw(0.0) - (-math.pi / 2)) < 1e-9  # facing north = world -y
    assert abs(compass_to_yaw(math.pi / 2)) < 1e-9  # facing east = world +x


def test_ego_frame_right_is_positive_y():
    # Ego facing east (yaw 0): a point to the south (world +y) is on its right.
    p = world_to_ego(np.array([10.0, 3.0]), np.array([10.0, 0.0]), 0.0)
    assert np.allclose(p, [0.0, 3.0])
    # Ego facing south (yaw +90 deg, clockwise): a point further south is ahead, a point west is right.
    ahead = world_to_ego(np.array([0.0, 5.0]), np.zeros(2), math.pi / 2)
    right = world_to_ego(np.array([-5.0, 0.0]), np.zeros(2), math.pi / 2)
    assert np.allclose(ahead, [5.0, 0.0]) and np.allclose(right, [0.0, 5.0])


def test_ego_world_round_trip():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(20, 2)) * 50
    ego, yaw = np.array([3.0, -7.0]), 2.1
    assert np.allclose(ego_to_world(world_to_ego(pts, ego, yaw), ego, yaw), pts)

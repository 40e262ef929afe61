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


# ------------------------------------------------------------------ geo-reference from the global plan
import math as _math

import numpy as _np

from agent.geo import GeoFitError, plan_geo_reference, solve_geo_reference


def _plan(ref, n=120):
    """A 2.4 km curved route in world metres and its GPS form through CARLA's conversion."""
    t = _np.linspace(0.0, 1.0, n)
    world = _np.stack([-1500.0 + 1800.0 * t, 3600.0 - 900.0 * t + 300.0 * _np.sin(4.0 * t)], axis=-1)
    gps = _np.array([ref.world_to_gnss(x, y)[:2] for x, y in world])
    return gps, world


def test_geo_reference_is_solved_for_town13_and_another_town():
    for lat, lon in ((41.0937, -81.5937), (-33.8688, 151.2093)):
        ref = GeoReference(lat, lon)
        gps, world = _plan(ref)
        solved = solve_geo_reference(gps, world)
        assert abs(solved.lat_ref - lat) < 1e-9 and abs(solved.lon_ref - lon) < 1e-9
        back = solved.gnss_array_to_world(gps)
        assert _np.max(_np.abs(back - world)) < 1e-4
        # a (0, 0) decoder gets Town13's distances wrong by 1/cos(lat): 1.33x there
        wrong = GeoReference().gnss_array_to_world(gps)
        ratio = _np.linalg.norm(_np.diff(wrong, axis=0), axis=1).sum() / _np.linalg.norm(_np.diff(world, axis=0), axis=1).sum()
        assert ratio == pytest.approx(1.0 / _math.cos(_math.radians(lat)), rel=2e-3)


def test_geo_reference_from_leaderboard_plan_forms_and_bad_plans():
    class Loc:
        def __init__(self, x, y):
            self.x, self.y, self.z = x, y, 0.0

    class Transform:
        def __init__(self, x, y):
            self.location = Loc(x, y)

    ref = GeoReference(41.0937, -81.5937)
    gps, world = _plan(ref, 30)
    gps_plan = [({"lat": la, "lon": lo, "z": 0.0}, 4) for la, lo in gps]
    world_plan = [(Transform(x, y), 4) for x, y in world]
    solved = plan_geo_reference(gps_plan, world_plan)
    assert abs(solved.lat_ref - 41.0937) < 1e-9
    shifted = [(Transform(x + (25.0 if i == 7 else 0.0), y), 4) for i, (x, y) in enumerate(world)]
    with pytest.raises(GeoFitError, match="point 7 is"):
        plan_geo_reference(gps_plan, shifted)
    with pytest.raises(GeoFitError, match="point for point"):
        plan_geo_reference(gps_plan, world_plan[:-1])

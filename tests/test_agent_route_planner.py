"""Route planner: target advancing on straight, curved and lane-change plans; commands; ego frame."""

import math

import numpy as np
import pytest

from agent.geo import GeoReference
from agent.route_planner import (CHANGELANELEFT, CHANGELANERIGHT, LANEFOLLOW, LEFT, RoutePlanner,
                                 RoutePlannerConfig, road_option_value, thin_plan)
from agent.synthetic import gps_plan, straight_route


def arc_route(radius=30.0, degrees=90.0, spacing=1.0):
    """A left turn (yaw decreasing: counter-clockwise seen from above in CARLA's frame) starting at
    (0, 0) heading +x; dense points."""
    n = int(math.radians(degrees) * radius / spacing) + 1
    theta = np.linspace(0.0, math.radians(degrees), n)
    # centre at (0, -radius): left of a car heading +x is -y in CARLA's frame
    return np.stack([radius * np.sin(theta), -radius + radius * np.cos(theta)], axis=-1)


def drive_along(planner, points, step=1):
    """Drive an ideal ego exactly along points (heading from the next point); yield targets."""
    out = []
    for i in range(0, len(points) - 1, step):
        d = points[i + 1] - points[i]
        yaw = math.atan2(d[1], d[0])
        out.append((points[i], yaw, planner.step(points[i], yaw)))
    return out


def test_thin_plan_keeps_ends_and_command_changes():
    pts = straight_route(100.0)
    cmds = [LANEFOLLOW] * len(pts)
    cmds[40] = CHANGELANELEFT
    keep = thin_plan(pts, cmds, 30.0)
    assert keep[0] == 0 and keep[-1] == len(pts) - 1
    assert {39, 40, 41} <= set(keep)
    kept = pts[keep]
    gaps = np.hypot(*np.diff(kept, axis=0).T)
    assert gaps.max() <= 30.0 + 1e-9


def test_straight_plan_target_ahead_advances_and_stays_at_the_end():
    planner = RoutePlanner(RoutePlannerConfig(reach_radius_m=4.0, min_spacing_m=20.0))
    pts = straight_route(100.0)
    planner.set_route(pts, [LANEFOLLOW] * len(pts))
    seen = []
    for x in np.arange(0.0, 130.0, 0.5):
        target = planner.step(np.array([x, 0.0]), 0.0)
        seen.append(target.index)
        if not target.is_last:
            assert target.target_ego[0] > 0.0  # always ahead while the route goes on
            assert abs(target.target_ego[1]) < 1e-9
    assert seen == sorted(seen)  # monotonic
    final = planner.step(np.array([150.0, 0.0]), 0.0)  # far past the end
    assert final.is_last and np.allclose(final.target_world, pts[-1])
    assert final.target_ego[0] < 0.0  # the last point stays the target, now behind


def test_points_behind_the_start_are_skipped():
    planner = RoutePlanner(RoutePlannerConfig(reach_radius_m=2.0, min_spacing_m=10.0))
    pts = straight_route(100.0)
    planner.set_route(pts, [LANEFOLLOW] * len(pts))
    target = planner.step(np.array([35.0, 1.0]), 0.0)  # spawned mid-route, off-centre
    assert target.target_world[0] == pytest.approx(40.0)


def test_curved_plan_target_in_ego_frame_bends_left():
    pts = arc_route()
    planner = RoutePlanner(RoutePlannerConfig(reach_radius_m=4.0, min_spacing_m=10.0))
    planner.set_route(pts, [LEFT] * len(pts))
    results = drive_along(planner, pts)
    for position, yaw, target in results[:-5]:
        assert target.command == LEFT
        assert target.target_ego[0] > 0.0
        assert target.target_ego[1] < 0.0  # a left turn: target to the left (-y)
        dist = np.hypot(*(target.target_world - position))
        assert dist <= 10.0 + 4.0 + 1e-6  # never further than one spacing + the reach radius
    assert results[-1][2].is_last


def test_gps_plan_round_trip_and_road_option_enum():
    geo = GeoReference(48.0, 11.0)
    pts = straight_route(60.0, spacing_m=5.0, start=(100.0, -40.0))

    class Opt:  # stands in for agents.navigation.local_planner.RoadOption
        def __init__(self, value):
            self.value = value

    plan = [(gps, Opt(-1)) for gps, _ in gps_plan(pts, [4] * len(pts), geo)]
    planner = RoutePlanner(RoutePlannerConfig(min_spacing_m=0.0))
    planner.set_gps_route(plan, geo)
    assert np.allclose(planner.points, pts, atol=1e-6)
    assert planner.commands == [LANEFOLLOW] * len(pts)  # VOID -> LANEFOLLOW
    target = planner.step(np.array([100.0, -40.0]), math.pi / 2)  # heading south (+y)
    assert target.target_ego[1] == pytest.approx(-5.0, abs=1e-6)  # the route is to the left


def lane_change_route(command):
    """Dense plan: 40 m in the right lane, a lane-change point, then the left lane (y - 3.5)."""
    first = straight_route(40.0)
    second = straight_route(60.0, start=(41.0, -3.5))
    pts = np.vstack([first, second])
    cmds = [LANEFOLLOW] * len(pts)
    cmds[len(first) - 1] = command
    return pts, cmds, len(first) - 1


@pytest.mark.parametrize("command", [CHANGELANELEFT, CHANGELANERIGHT])
def test_lane_change_command_held_until_the_change_point_is_passed(command):
    pts, cmds, change_index = lane_change_route(command)
    planner = RoutePlanner(RoutePlannerConfig(reach_radius_m=3.0, min_spacing_m=20.0, lane_change_hold_m=10.0))
    planner.set_route(pts, cmds)
    commands = {}
    # the ego changes lanes smoothly between x = 38 and x = 50
    for x in np.arange(0.0, 100.0, 0.5):
        y = -3.5 * float(np.clip((x - 38.0) / 12.0, 0.0, 1.0))
        commands[x] = planner.step(np.array([x, y]), 0.0).command
    assert commands[10.0] == LANEFOLLOW
    lane_change_xs = [x for x, c in commands.items() if c == command]
    assert lane_change_xs, "the lane-change command was never given"
    assert min(lane_change_xs) < pts[change_index][0]  # announced before the change point
    assert max(lane_change_xs) >= pts[change_index][0] + 5.0  # and held after passing it
    assert commands[90.0] == LANEFOLLOW  # released afterwards
    # one contiguous stretch
    xs = sorted(commands)
    flags = [commands[x] == command for x in xs]
    assert sum(1 for a, b in zip(flags, flags[1:]) if a != b) == 2


def test_bad_routes_raise():
    planner = RoutePlanner()
    with pytest.raises(ValueError, match="non-empty"):
        planner.set_route(np.zeros((0, 2)), [])
    with pytest.raises(ValueError, match="commands"):
        planner.set_route(np.zeros((3, 2)), [4, 4])
    with pytest.raises(ValueError, match="RoadOption"):
        road_option_value(9)
    with pytest.raises(ValueError, match="empty"):
        planner.set_gps_route([], GeoReference())
    with pytest.raises(RuntimeError, match="set_route"):
        RoutePlanner().step(np.zeros(2), 0.0)


def test_a_sharp_corner_stays_the_target_until_the_ego_is_round_it():
    # 30 m east, then a 120 deg turn back towards the south-west (sparse points, no thinning)
    corner = np.array([30.0, 0.0])
    away = corner + 30.0 * np.array([math.cos(math.radians(120)), math.sin(math.radians(120))])
    pts = np.array([[0.0, 0.0], corner, away])
    planner = RoutePlanner(RoutePlannerConfig(reach_radius_m=2.0, min_spacing_m=0.0))
    planner.set_route(pts, [LANEFOLLOW, LEFT, LANEFOLLOW])
    approaching = planner.step(np.array([25.0, 0.5]), 0.0)  # 5 m before the corner
    assert np.allclose(approaching.target_world, corner)
    round_it = planner.step(corner + 4.0 * (away - corner) / 30.0, math.radians(120))
    assert np.allclose(round_it.target_world, away)


def test_u_turn_point_must_be_reached():
    pts = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 0.5]])
    planner = RoutePlanner(RoutePlannerConfig(reach_radius_m=2.0, min_spacing_m=0.0))
    planner.set_route(pts, [LANEFOLLOW] * 3)
    assert planner.step(np.array([15.0, 0.0]), 0.0).index == 1
    assert planner.step(np.array([19.0, 0.3]), 0.0).index == 2

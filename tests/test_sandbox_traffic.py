"""Background traffic on its own: cars entering a roundabout together, spawning before give-way
zones, and cars that touch each other drive on (no jam)."""

from __future__ import annotations

import numpy as np
from highway_env import utils as hutils

from carla_eval.sandbox.config import TrafficConfig
from carla_eval.sandbox.giveway import GiveWay
from carla_eval.sandbox.map_index import get_map_index
from carla_eval.sandbox.paths import LanePath
from carla_eval.sandbox.towns import get_town
from carla_eval.sandbox.towns import roundabout as rb
from carla_eval.sandbox.traffic import TrafficManager, get_town_paths
from carla_eval.sandbox.vehicle_model import AppliedControl, VehicleModel, VehicleModelConfig
from carla_eval.sandbox.world import World

HOLD = AppliedControl(0.0, 0.0, 1.0)


def roundabout_world(seed: int = 0):
    town = get_town("roundabout")
    index = get_map_index(town)
    paths = get_town_paths(town, index)
    world = World(index, paths, seed, 0.05, VehicleModel(VehicleModelConfig()))
    ego_lane = index.lanes[("ai2", "ae2", 0)]  # the west arm, 100 m out, standing still
    world.spawn_ego(ego_lane.position(20.0, 0.0), float(ego_lane.heading_at(20.0)))
    return town, index, paths, world


def overlapping(a, b) -> bool:
    return bool(hutils.are_polygons_intersecting(a.polygon(), b.polygon(), np.zeros(2), np.zeros(2))[0])


def test_two_cars_entering_a_roundabout_together_do_not_jam():
    """An entering car already past its give-way line and a ring car reach the entry together (the
    scene that jammed the ring): they must not overlap, and both must drive on."""
    town, index, paths, world = roundabout_world()
    entry_path = LanePath(index, rb.movement(0, 2))  # east arm -> west exit, enters the ring at n0
    ring_path = LanePath(index, rb.movement(1, 3))  # south arm -> north exit, passes n0 on the ring
    u_merge_entry = entry_path.coord(("ae0", "n0", 0), index.lanes[("ae0", "n0", 0)].length)
    u_merge_ring = ring_path.coord(("x0", "n0", 0), index.lanes[("x0", "n0", 0)].length)
    zones = paths.stream_zones[("arm0", [p.lanes for p in paths.stream_paths["arm0"]].index(entry_path.lanes))]
    # Both reach the merge point within 0.3 s of each other (1.5 and 1.8 s from now).
    entering = world.spawn_traffic(entry_path, u_merge_entry - 10.0, 6.5, 6.5, False,
                                   giveway=GiveWay(zones, paths.priority_paths))
    ring = world.spawn_traffic(ring_path, u_merge_ring - 13.5, 7.5, 8.0, False)
    assert entering.giveway.active_zone(entering.path_coord(), entering.LENGTH) is None  # committed
    touched = 0
    for _ in range(300):  # 15 s
        world.tick(HOLD)
        touched += overlapping(entering, ring)
    assert touched == 0
    assert not entering.crashed and not ring.crashed
    assert entering.path_coord() - u_merge_entry > 25.0 and ring.path_coord() - u_merge_ring > 25.0


def test_cars_that_touch_are_separated_and_drive_on():
    """Two ring cars placed overlapping (as after a bump) are pushed apart within 1 s, stay apart,
    and both move on."""
    town, index, paths, world = roundabout_world()
    ring_path = LanePath(index, rb.movement(1, 3))
    u0 = ring_path.coord(("x0", "n0", 0), 2.0)
    a = world.spawn_traffic(ring_path, u0, 6.0, 8.0, False)
    b = world.spawn_traffic(ring_path, u0 + 3.0, 6.0, 8.0, False)
    assert overlapping(a, b)
    for _ in range(20):  # 1 s
        world.tick(HOLD)
    for _ in range(200):  # 10 s
        world.tick(HOLD)
        assert not overlapping(a, b)
    assert not a.crashed and not b.crashed
    assert a.path_coord() - u0 > 30.0 and b.path_coord() - u0 > 30.0
    assert world.traffic_contacts >= 1


def test_no_car_spawns_committed_at_a_give_way_line():
    """Cars that must give way start far enough before their first conflict zone (20 m) to stop
    for it."""
    town = get_town("roundabout")
    index = get_map_index(town)
    paths = get_town_paths(town, index)
    config = TrafficConfig()
    n_minor = 0
    for seed in range(12):
        world = World(index, paths, seed, 0.05, VehicleModel(VehicleModelConfig()))
        world.spawn_ego(np.array([0.0, 60.0]), 0.0)  # off the roads, so the whole town fills
        TrafficManager(world, paths, config).populate()
        for v in world.traffic:
            if v.giveway is None or not v.giveway.zones:
                continue
            n_minor += 1
            first = v.giveway.zones[0]
            u = v.path_coord()
            assert u < first.s_in - 20.0 or u > first.s_out + 5.0, (seed, v.actor_id, u, first)
    assert n_minor > 20


class _StraightPath:
    """A priority path whose coordinate is a vehicle's ``u`` attribute."""

    cyclic = False
    length = 1000.0

    def coord_of_vehicle(self, v):
        return v.u

    def ahead(self, a, b):
        return b - a


class _Car:
    LENGTH = 5.0

    def __init__(self, u: float, speed: float) -> None:
        self.u, self.speed = u, speed


def test_give_way_never_stops_inside_a_zone_it_has_entered():
    from carla_eval.sandbox.giveway import ConflictZone

    first = ConflictZone(0, 100.0, 104.0, 50.0, 54.0)
    second = ConflictZone(1, 107.0, 111.0, 50.0, 54.0)
    gw = GiveWay([first, second], [_StraightPath(), _StraightPath()])
    coming = [_Car(30.0, 8.0)]  # on the second zone's road, there in 2.2 s
    # Front already in the first zone: stopping at the second zone's line would block the first
    # road, so it drives on.
    assert gw.stop_distance(99.0, 3.0, 5.0, coming) is None
    # Front just before the first zone and slow: it stops there instead.
    d = gw.stop_distance(96.6, 1.0, 5.0, coming)
    assert d is not None and 96.6 + d + 2.5 == np.float64(99.5)
    # Zones far apart: the usual stop before the second zone, clear of the first.
    far = ConflictZone(1, 120.0, 124.0, 50.0, 54.0)
    gw = GiveWay([first, far], [_StraightPath(), _StraightPath()])
    d = gw.stop_distance(99.0, 3.0, 5.0, coming)
    assert d is not None and 99.0 + d == 120.0 - gw.config.stop_margin - 2.5

"""``signals``: an east-west main road through a signalised junction and a stop-sign junction.

Two four-way junctions of two-lane roads (one lane each way), keep right, boxes |dx|, |dy| <= 10 m:

- ``A`` at (0, 0), signalised: one traffic light per incoming lane, one approach green at a time
  (phases in arm order 0 west, 1 north, 2 east, 3 south; timing in :mod:`carla_eval.sandbox.signals`).
  Every lane of A has the same priority, so nobody gives way there: the lights decide.
- ``B`` at (250, 0), a two-way stop: the east-west road (arms 0 and 2) has priority; the
  north-south arms carry stop signs and give way after stopping.

Every approach has a stop line ``STOP_BACK`` m before the junction box and a zebra crossing
between the line and the box. Nodes per junction J and arm k: ``{J}o{k}`` (outer start of the
incoming lane) -> ``{J}in{k}`` (junction entry), ``{J}out{k}`` (junction exit) -> ``{J}e{k}`` (outer end);
the road between the junctions is ``Aout2 -> Bin0`` (eastbound) and ``Bout0 -> Ain2`` (westbound).
Junction roads ``{J}in{k} -> {J}out{j}``: straight (j = k + 2), right (j = k - 1), left (j = k + 1).
"""

from __future__ import annotations

import math

import numpy as np
from highway_env.road.lane import CircularLane, LineType, StraightLane
from highway_env.road.road import RoadNetwork

from agent.geo import GeoReference
from carla_eval.sandbox.towns.base import (LANE_WIDTH, CrosswalkSpec, SignalSpec, StopSignSpec, Town, TrafficStream,
                                           square)

BOX = 10.0  # half size of a junction box, m
ARM = 150.0  # outer arm length from a junction centre, m
OFFSET = LANE_WIDTH / 2
ARM_SPEED = 12.0
TURN_SPEED = 7.0
CENTRES = {"A": (0.0, 0.0), "B": (250.0, 0.0)}
STOP_BACK = 5.5  # stop line: this far before the junction box (m)
CROSSWALK = (0.5, 4.0)  # zebra crossing: from / to this far before the box (m)
SIDEWALK = 6.5  # ambient walkers walk this far from the road axis (m)
MAJOR_ARMS = (0, 2)
STOP_ARMS = (1, 3)  # arms of B with stop signs


def _rot(k: int) -> np.ndarray:
    a = k * math.pi / 2
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def arm_point(junction: str, arm: int, dist: float, lateral: float) -> np.ndarray:
    """World point ``dist`` m out along arm ``arm`` of ``junction`` at ``lateral`` m from the road
    axis (+ on the incoming lane's side)."""
    return np.asarray(CENTRES[junction]) + _rot(arm) @ np.array([-dist, lateral])


def _xy(p) -> tuple[float, float]:
    return (round(float(p[0]), 6), round(float(p[1]), 6))


def _priority(junction: str, arm: int) -> int:
    if junction == "A":
        return 1
    return 2 if arm in MAJOR_ARMS else 0


def _junction(net: RoadNetwork, j: str, shared: tuple[int, ...]) -> None:
    c, s, n = LineType.CONTINUOUS_LINE, LineType.STRIPED, LineType.NONE
    centre = np.asarray(CENTRES[j])
    for k in range(4):
        R = _rot(k)
        prio = _priority(j, k)
        if k not in shared:
            net.add_lane(f"{j}o{k}", f"{j}in{k}", StraightLane(centre + R @ [-ARM, OFFSET], centre + R @ [-BOX, OFFSET],
                                                             line_types=(s, c), speed_limit=ARM_SPEED, priority=prio))
            net.add_lane(f"{j}out{k}", f"{j}e{k}", StraightLane(centre + R @ [-BOX, -OFFSET], centre + R @ [-ARM, -OFFSET],
                                                              line_types=(n, c), speed_limit=ARM_SPEED, priority=prio))
        a = k * math.pi / 2
        net.add_lane(f"{j}in{k}", f"{j}out{(k - 1) % 4}", CircularLane(centre + R @ [-BOX, BOX], BOX - OFFSET, a - math.pi / 2, a,
                                                                       clockwise=True, line_types=(n, n), speed_limit=TURN_SPEED, priority=prio))
        other = (k + 2) % 4
        straight_prio = prio if j == "A" else (2 if k in MAJOR_ARMS and other in MAJOR_ARMS else prio)
        net.add_lane(f"{j}in{k}", f"{j}out{other}", StraightLane(centre + R @ [-BOX, OFFSET], centre + R @ [BOX, OFFSET],
                                                                 line_types=(n, n), speed_limit=ARM_SPEED, priority=straight_prio))
        left_prio = prio if j == "A" else (1 if k in MAJOR_ARMS else 0)
        net.add_lane(f"{j}in{k}", f"{j}out{(k + 1) % 4}", CircularLane(centre + R @ [-BOX, -BOX], BOX + OFFSET, a + math.pi / 2, a,
                                                                       clockwise=False, line_types=(n, n), speed_limit=TURN_SPEED, priority=left_prio))


def incoming_lane(j: str, k: int) -> tuple[str, str, int]:
    """The lane that enters junction ``j`` from arm ``k``."""
    if (j, k) == ("B", 0):
        return ("Aout2", "Bin0", 0)
    if (j, k) == ("A", 2):
        return ("Bout0", "Ain2", 0)
    return (f"{j}o{k}", f"{j}in{k}", 0)


def outgoing_lane(j: str, k: int) -> tuple[str, str, int]:
    """The lane that leaves junction ``j`` along arm ``k``."""
    if (j, k) == ("A", 2):
        return ("Aout2", "Bin0", 0)
    if (j, k) == ("B", 0):
        return ("Bout0", "Ain2", 0)
    return (f"{j}out{k}", f"{j}e{k}", 0)


def movement(j: str, k_in: int, k_out: int) -> tuple[tuple[str, str, int], ...]:
    """Lanes from arm ``k_in`` through junction ``j`` out along arm ``k_out``."""
    return (incoming_lane(j, k_in), (f"{j}in{k_in}", f"{j}out{k_out}", 0), outgoing_lane(j, k_out))


def build() -> Town:
    net = RoadNetwork()
    _junction(net, "A", shared=(2,))
    _junction(net, "B", shared=(0,))
    gap = CENTRES["B"][0] - CENTRES["A"][0]
    c, s = LineType.CONTINUOUS_LINE, LineType.STRIPED
    net.add_lane("Aout2", "Bin0", StraightLane([BOX, OFFSET], [gap - BOX, OFFSET], line_types=(s, c), speed_limit=ARM_SPEED, priority=2))
    net.add_lane("Bout0", "Ain2", StraightLane([gap - BOX, -OFFSET], [BOX, -OFFSET], line_types=(s, c), speed_limit=ARM_SPEED, priority=1))

    signals, stop_signs, crosswalks = [], [], []
    for j in ("A", "B"):
        for k in range(4):
            lane = incoming_lane(j, k)
            length = float(np.hypot(*np.subtract(net.get_lane(lane).end, net.get_lane(lane).start)))
            s_stop = length - STOP_BACK
            yaw = (k * math.pi / 2) % (2 * math.pi)
            mid = 0.5 * (CROSSWALK[0] + CROSSWALK[1])
            crosswalks.append(CrosswalkSpec(_xy(arm_point(j, k, BOX + mid, 0.0)), yaw, CROSSWALK[1] - CROSSWALK[0], 2 * LANE_WIDTH + 1.0))
            if j == "A":
                pole = arm_point(j, k, BOX + STOP_BACK - 1.0, OFFSET + 3.6)
                head = arm_point(j, k, BOX + STOP_BACK - 1.0, OFFSET)
                signals.append(SignalSpec(100 + k, "A", k, lane, s_stop, _xy(pole), _xy(head)))
            elif k in STOP_ARMS:
                pole = arm_point(j, k, BOX + STOP_BACK, OFFSET + 3.2)
                stop_signs.append(StopSignSpec(200 + k, lane, s_stop, _xy(pole)))

    def stream(name: str, paths, priority: bool) -> TrafficStream:
        return TrafficStream(name=name, paths=tuple(paths), speed_range=(9.0, 11.5), gap_range=(30.0, 80.0), priority=priority)

    east = movement("A", 0, 2) + movement("B", 0, 2)[1:]
    west = movement("B", 2, 0) + movement("A", 2, 0)[1:]
    streams = (
        stream("east", [east], True),
        stream("west", [west], True),
        stream("A_south", [movement("A", 1, 3), movement("A", 1, 0), movement("A", 1, 2) + movement("B", 0, 2)[1:]], True),
        stream("A_north", [movement("A", 3, 1), movement("A", 3, 2) + movement("B", 0, 2)[1:], movement("A", 3, 0)], True),
        stream("B_south", [movement("B", 1, 3)], False),
        stream("B_north", [movement("B", 3, 1)], False),
    )
    junction_roads = frozenset((f"{j}in{k}", f"{j}out{m}") for j in ("A", "B") for k in range(4) for m in range(4) if m != k)
    # Sidewalks beside every road, between the junction corners (walkers do not cross there).
    walker_paths = []
    corner = BOX + CROSSWALK[1] + 0.5
    xa, xb = CENTRES["A"][0], CENTRES["B"][0]
    for side in (-1.0, 1.0):
        for x0, x1 in ((xa - ARM + 5.0, xa - corner), (xa + corner, xb - corner), (xb + corner, xb + ARM - 5.0)):
            walker_paths.append(np.array([[x0, side * SIDEWALK], [x1, side * SIDEWALK]]))
        for cx in (xa, xb):
            for y0, y1 in ((-ARM + 5.0, -corner), (corner, ARM - 5.0)):
                walker_paths.append(np.array([[cx + side * SIDEWALK, y0], [cx + side * SIDEWALK, y1]]))
    return Town(
        name="signals",
        network=net,
        geo=GeoReference(0.0, 0.0),
        junction_roads=junction_roads,
        streams=streams,
        extra_drivable=(square(*CENTRES["A"], BOX), square(*CENTRES["B"], BOX)),
        description="a signalised 4-way junction (one approach green at a time) and a two-way-stop junction on one main road",
        signals=tuple(signals),
        stop_signs=tuple(stop_signs),
        crosswalks=tuple(crosswalks),
        walker_paths=tuple(walker_paths),
    )

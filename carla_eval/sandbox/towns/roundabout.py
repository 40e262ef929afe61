"""``roundabout``: a single-lane roundabout (ring radius 22 m) with four two-lane arms.

Traffic keeps right and circulates counter-clockwise seen from above (yaw decreasing). Arms are
numbered clockwise from the east: 0 east, 1 south, 2 west, 3 north. Ring traffic has priority
(ring lanes priority 1); entering vehicles give way (entry lanes priority 0).

Geometry (east arm, rotated for the others): the incoming lane runs west at y = -2 from
x = cx + 120 to x = cx, then a right-hand fillet (radius 12 m) joins the ring tangentially at ring
phase -theta (node ``n{k}``); the exit fillet leaves the ring at phase +theta (node ``x{k}``) and
joins the outgoing lane at y = +2. cx = sqrt((R + r)^2 - (2 + r)^2).
"""

from __future__ import annotations

import math

import numpy as np
from highway_env.road.lane import CircularLane, LineType, StraightLane
from highway_env.road.road import RoadNetwork

from agent.geo import GeoReference
from carla_eval.sandbox.towns.base import LANE_WIDTH, Town, TrafficStream

RING_R = 22.0
FILLET_R = 12.0
OFFSET = LANE_WIDTH / 2
ARM = 120.0
RING_SPEED = 8.0
FILLET_SPEED = 6.5
ARM_SPEED = 13.0

CX = math.sqrt((RING_R + FILLET_R) ** 2 - (OFFSET + FILLET_R) ** 2)
THETA = math.atan2(OFFSET + FILLET_R, CX)


def _rot(k: int) -> np.ndarray:
    a = k * math.pi / 2
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def ring_path_from(k: int, exit_arm: int) -> tuple[tuple[str, str, int], ...]:
    """Ring lanes from entry node ``n{k}`` to exit node ``x{exit_arm}`` (counter-clockwise)."""
    lanes = []
    j = k
    while True:
        nxt = (j - 1) % 4
        lanes.append((f"n{j}", f"x{nxt}", 0))
        if nxt == exit_arm:
            return tuple(lanes)
        lanes.append((f"x{nxt}", f"n{nxt}", 0))
        j = nxt


def movement(k: int, exit_arm: int) -> tuple[tuple[str, str, int], ...]:
    """Full lane path entering at arm ``k`` and leaving at arm ``exit_arm``."""
    return (
        (f"ai{k}", f"ae{k}", 0),
        (f"ae{k}", f"n{k}", 0),
        *ring_path_from(k, exit_arm),
        (f"x{exit_arm}", f"ao{exit_arm}", 0),
        (f"ao{exit_arm}", f"aend{exit_arm}", 0),
    )


def build() -> Town:
    net = RoadNetwork()
    c, s, n = LineType.CONTINUOUS_LINE, LineType.STRIPED, LineType.NONE
    cc = LineType.CONTINUOUS  # curves: drawn as polylines
    for k in range(4):
        R = _rot(k)
        a = k * math.pi / 2
        net.add_lane(f"ai{k}", f"ae{k}", StraightLane(R @ [CX + ARM, -OFFSET], R @ [CX, -OFFSET], line_types=(s, c), speed_limit=ARM_SPEED, priority=0))
        c_in = R @ [CX, -(OFFSET + FILLET_R)]
        phi_end = math.atan2(OFFSET + FILLET_R, -CX) + a
        net.add_lane(f"ae{k}", f"n{k}", CircularLane(c_in, FILLET_R, a + math.pi / 2, phi_end, clockwise=True, line_types=(cc, cc), speed_limit=FILLET_SPEED, priority=0))
        c_out = R @ [CX, OFFSET + FILLET_R]
        phi_start = math.atan2(-(OFFSET + FILLET_R), -CX) + a
        net.add_lane(f"x{k}", f"ao{k}", CircularLane(c_out, FILLET_R, phi_start, a - math.pi / 2, clockwise=True, line_types=(cc, cc), speed_limit=FILLET_SPEED, priority=1))
        net.add_lane(f"ao{k}", f"aend{k}", StraightLane(R @ [CX, OFFSET], R @ [CX + ARM, OFFSET], line_types=(n, c), speed_limit=ARM_SPEED, priority=1))
        # Ring: exit node x{k} (phase a + THETA) -> entry node n{k} (a - THETA) -> next exit x{k-1}.
        net.add_lane(f"x{k}", f"n{k}", CircularLane([0.0, 0.0], RING_R, a + THETA, a - THETA, clockwise=False, line_types=(cc, cc), speed_limit=RING_SPEED, priority=1))
        net.add_lane(f"n{k}", f"x{(k - 1) % 4}", CircularLane([0.0, 0.0], RING_R, a - THETA, a - math.pi / 2 + THETA, clockwise=False, line_types=(cc, cc), speed_limit=RING_SPEED, priority=1))
    streams = tuple(
        TrafficStream(
            name=f"arm{k}",
            paths=tuple(movement(k, j) for j in range(4) if j != k),
            speed_range=(9.0, 12.0),
            gap_range=(30.0, 80.0),
            priority=False,
        )
        for k in range(4)
    )
    ring = tuple(lane for k in (0, 3, 2, 1) for lane in ((f"x{k}", f"n{k}", 0), (f"n{k}", f"x{(k - 1) % 4}", 0)))
    junction_roads = frozenset(
        [(f"ae{k}", f"n{k}") for k in range(4)]
        + [(f"x{k}", f"ao{k}") for k in range(4)]
        + [(f"x{k}", f"n{k}") for k in range(4)]
        + [(f"n{k}", f"x{(k - 1) % 4}") for k in range(4)]
    )
    return Town(
        name="roundabout",
        network=net,
        geo=GeoReference(0.0, 0.0),
        junction_roads=junction_roads,
        streams=streams,
        priority_paths=((ring, True),),
        description="single-lane roundabout, radius 22 m, four arms; ring traffic has priority",
    )

"""``intersection``: an unsignalised four-way junction of two-lane roads (one lane each way).

Arms are numbered clockwise seen from above: 0 west, 1 north, 2 east, 3 south. Traffic keeps
right. The east-west road (arms 0 and 2) is the major road: its lanes have priority 2; the
north-south arms are minor (priority 0) and must give way. The junction box is |x|, |y| <= 10 m.

Nodes per arm k: ``o{k}`` (outer start of the incoming lane) -> ``in{k}`` (junction entry) and
``out{k}`` (junction exit) -> ``e{k}`` (outer end). Junction roads ``in{k} -> out{j}``: straight
(j = k + 2), right turn (j = k - 1, radius 8 m) and left turn (j = k + 1, radius 12 m), mod 4.
"""

from __future__ import annotations

import math

import numpy as np
from highway_env.road.lane import CircularLane, LineType, StraightLane
from highway_env.road.road import RoadNetwork

from agent.geo import GeoReference
from carla_eval.sandbox.towns.base import LANE_WIDTH, Town, TrafficStream, square

BOX = 10.0  # half size of the junction box, m
ARM = 150.0  # arm length from the centre, m
OFFSET = LANE_WIDTH / 2  # lane centre from the road axis
ARM_SPEED = 14.0
TURN_SPEED = 8.0
MAJOR_ARMS = (0, 2)


def _rot(k: int) -> np.ndarray:
    a = k * math.pi / 2
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def build() -> Town:
    net = RoadNetwork()
    c, s, n = LineType.CONTINUOUS_LINE, LineType.STRIPED, LineType.NONE
    for k in range(4):
        R = _rot(k)
        major = k in MAJOR_ARMS
        prio = 2 if major else 0
        # Incoming (heading towards the centre), drawn in the arm-0 frame then rotated.
        net.add_lane(f"o{k}", f"in{k}", StraightLane(R @ [-ARM, OFFSET], R @ [-BOX, OFFSET], line_types=(s, c), speed_limit=ARM_SPEED, priority=prio))
        net.add_lane(f"out{k}", f"e{k}", StraightLane(R @ [-BOX, -OFFSET], R @ [-ARM, -OFFSET], line_types=(n, c), speed_limit=ARM_SPEED, priority=prio))
        a = k * math.pi / 2
        # Right turn: centre (-BOX, BOX) in the arm-0 frame, radius BOX - OFFSET.
        net.add_lane(f"in{k}", f"out{(k - 1) % 4}", CircularLane(R @ [-BOX, BOX], BOX - OFFSET, a - math.pi / 2, a, clockwise=True, line_types=(n, n), speed_limit=TURN_SPEED, priority=prio))
        # Straight.
        other = (k + 2) % 4
        both_major = major and other in MAJOR_ARMS
        net.add_lane(f"in{k}", f"out{other}", StraightLane(R @ [-BOX, OFFSET], R @ [BOX, OFFSET], line_types=(n, n), speed_limit=ARM_SPEED, priority=2 if both_major else prio))
        # Left turn: centre (-BOX, -BOX), radius BOX + OFFSET.
        net.add_lane(f"in{k}", f"out{(k + 1) % 4}", CircularLane(R @ [-BOX, -BOX], BOX + OFFSET, a + math.pi / 2, a, clockwise=False, line_types=(n, n), speed_limit=TURN_SPEED, priority=1 if major else 0))
    streams = tuple(
        TrafficStream(
            name=f"major{k}",
            paths=(((f"o{k}", f"in{k}", 0), (f"in{k}", f"out{(k + 2) % 4}", 0), (f"out{(k + 2) % 4}", f"e{(k + 2) % 4}", 0)),),
            speed_range=(10.0, 13.0),
            gap_range=(25.0, 70.0),
            priority=True,
        )
        for k in MAJOR_ARMS
    )
    junction_roads = frozenset((f"in{k}", f"out{j}") for k in range(4) for j in range(4) if j != k)
    return Town(
        name="intersection",
        network=net,
        geo=GeoReference(0.0, 0.0),
        junction_roads=junction_roads,
        streams=streams,
        extra_drivable=(square(0.0, 0.0, BOX),),
        description="unsignalised 4-way junction, one lane each way, east-west road has priority",
    )

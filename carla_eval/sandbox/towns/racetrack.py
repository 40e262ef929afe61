"""``racetrack``: a closed two-lane circuit of about 2 km with curves of radius 45-80 m.

Driven clockwise seen from above (mostly right-hand curves, yaw grows), lane 0 on the left. Two
straights are solved so that the loop closes exactly. Curve speed limits follow a 2.5 m/s^2
lateral acceleration on the inner lane.
"""

from __future__ import annotations

import math

import numpy as np
from highway_env.road.road import RoadNetwork

from agent.geo import GeoReference
from carla_eval.sandbox.towns.base import LANE_WIDTH, RoadBuilder, Town, TrafficStream, road_lanes

STRAIGHT_SPEED = 18.0
LATERAL_ACCEL = 2.5
N_LANES = 2

_d = math.radians
# ("S", length | None) or ("T", radius, angle): None marks the two straights solved for closure.
LAYOUT: tuple[tuple, ...] = (
    ("S", 250.0), ("T", 70.0, _d(90)), ("S", 120.0), ("T", 45.0, _d(-90)), ("T", 45.0, _d(90)),
    ("S", 60.0), ("T", 60.0, _d(45)), ("T", 60.0, _d(-45)), ("S", 80.0), ("T", 80.0, _d(90)),
    ("S", None), ("T", 50.0, _d(-60)), ("T", 50.0, _d(60)), ("T", 65.0, _d(90)), ("S", None),
    ("T", 70.0, _d(90)),
)


def _end_point(straights: tuple[float, float]) -> np.ndarray:
    p, h, k = np.zeros(2), 0.0, 0
    for seg in LAYOUT:
        if seg[0] == "S":
            length = seg[1] if seg[1] is not None else straights[k]
            k += seg[1] is None
            p = p + length * np.array([math.cos(h), math.sin(h)])
        else:
            r, ang = seg[1], seg[2]
            right = np.array([-math.sin(h), math.cos(h)])
            c = p + (r if ang > 0 else -r) * right
            phi1 = (h - math.pi / 2 if ang > 0 else h + math.pi / 2) + ang
            p = c + r * np.array([math.cos(phi1), math.sin(phi1)])
            h += ang
    return p


def closing_straights() -> tuple[float, float]:
    """Lengths of the two free straights that bring the turtle back to the origin (linear solve)."""
    p0 = _end_point((0.0, 0.0))
    a = np.stack([_end_point((1.0, 0.0)) - p0, _end_point((0.0, 1.0)) - p0], axis=1)
    sol = np.linalg.solve(a, -p0)
    if not np.all(sol > 0):
        raise RuntimeError(f"racetrack layout does not close with positive straights: {sol}")
    return float(sol[0]), float(sol[1])


def build() -> Town:
    net = RoadNetwork()
    free = closing_straights()
    rb = RoadBuilder(net, (0.0, 0.0), 0.0, N_LANES, "r", STRAIGHT_SPEED, priority=1)
    k = 0
    n_segments = len(LAYOUT)
    for i, seg in enumerate(LAYOUT):
        to = "r0" if i == n_segments - 1 else None
        if seg[0] == "S":
            length = seg[1] if seg[1] is not None else free[k]
            k += seg[1] is None
            rb.straight(length, to=to)
        else:
            r, ang = seg[1], seg[2]
            inner = r - LANE_WIDTH * (N_LANES - 1) if ang > 0 else r
            limit = min(STRAIGHT_SPEED, math.sqrt(LATERAL_ACCEL * inner))
            rb.turn(r, ang, to=to, speed_limit=limit)
    streams = tuple(
        TrafficStream(
            name=f"lane{i}",
            paths=(road_lanes(net, rb.nodes, i),),
            speed_range=(12.0, 16.0) if i == 0 else (10.0, 14.0),
            gap_range=(50.0, 120.0),
            lane_change=True,
            cyclic=True,
        )
        for i in range(N_LANES)
    )
    return Town(
        name="racetrack",
        network=net,
        geo=GeoReference(0.0, 0.0),
        streams=streams,
        description="closed 2-lane circuit of about 2 km, curves of radius 45-80 m",
    )

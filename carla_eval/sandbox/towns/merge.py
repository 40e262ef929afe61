"""``merge``: a two-lane motorway with an on-ramp whose acceleration lane ends after 150 m.

Main road (east): a (x 0) -> b (x 350) -> c (x 500) -> d (x 1700), lanes at y = 0 and 4. Between b
and c a third lane (y = 8, id 2) is the ramp's acceleration lane; it has no successor, so a vehicle
on it must change left before c. The ramp runs parallel at y = 14.5 from x 50 to x 250 (j -> k),
then an S-curve (sine lane, k -> b) brings it onto the acceleration lane.
"""

from __future__ import annotations

import math

import numpy as np
from highway_env.road.lane import LineType, SineLane, StraightLane
from highway_env.road.road import RoadNetwork

from agent.geo import GeoReference
from carla_eval.sandbox.towns.base import Town, TrafficStream

X_B, X_C, X_D = 350.0, 500.0, 1700.0
RAMP_START = 50.0
RAMP_STRAIGHT_END = 250.0
AMPLITUDE = 3.25
SPEED_LIMIT = 25.0
RAMP_SPEED_LIMIT = 20.0


def build() -> Town:
    net = RoadNetwork()
    c, s, n = LineType.CONTINUOUS_LINE, LineType.STRIPED, LineType.NONE
    xs = {"a": 0.0, "b": X_B, "c": X_C, "d": X_D}
    for a, b in (("a", "b"), ("b", "c"), ("c", "d")):
        net.add_lane(a, b, StraightLane([xs[a], 0.0], [xs[b], 0.0], line_types=(c, s), speed_limit=SPEED_LIMIT, priority=1))
        net.add_lane(a, b, StraightLane([xs[a], 4.0], [xs[b], 4.0], line_types=(n, c if b != "c" else s), speed_limit=SPEED_LIMIT, priority=1))
    # Acceleration lane (id 2 of b -> c): forbidden for lane changes INTO it.
    net.add_lane("b", "c", StraightLane([X_B, 8.0], [X_C, 8.0], line_types=(n, c), forbidden=True, speed_limit=RAMP_SPEED_LIMIT, priority=0))
    # Ramp.
    y_ramp = 8.0 + 2 * AMPLITUDE
    ramp = StraightLane([RAMP_START, y_ramp], [RAMP_STRAIGHT_END, y_ramp], line_types=(c, c), speed_limit=RAMP_SPEED_LIMIT, priority=0)
    net.add_lane("j", "k", ramp)
    sine_len = X_B - RAMP_STRAIGHT_END
    start = ramp.position(ramp.length, -AMPLITUDE)
    net.add_lane(
        "k",
        "b",
        SineLane(
            start,
            start + np.array([sine_len, 0.0]),
            AMPLITUDE,
            math.pi / sine_len,
            math.pi / 2,
            line_types=(LineType.CONTINUOUS, LineType.CONTINUOUS),
            forbidden=True,
            speed_limit=RAMP_SPEED_LIMIT,
            priority=0,
        ),
    )
    main = lambda i: (("a", "b", i), ("b", "c", i), ("c", "d", i))  # noqa: E731
    streams = (
        TrafficStream("main0", (main(0),), (21.0, 24.0), (30.0, 80.0), lane_change=True),
        TrafficStream("main1", (main(1),), (18.0, 22.0), (30.0, 80.0), lane_change=True),
    )
    return Town(
        name="merge",
        network=net,
        geo=GeoReference(0.0, 0.0),
        streams=streams,
        description="two-lane motorway with an on-ramp and a 150 m acceleration lane that ends",
    )


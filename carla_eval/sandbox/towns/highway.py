"""``highway``: a straight four-lane one-way motorway, 4 km long, heading east."""

from __future__ import annotations

from highway_env.road.road import RoadNetwork

from agent.geo import GeoReference
from carla_eval.sandbox.towns.base import RoadBuilder, Town, TrafficStream, road_lanes

LENGTH = 4000.0
N_LANES = 4
SPEED_LIMIT = 25.0


def build() -> Town:
    net = RoadNetwork()
    rb = RoadBuilder(net, (0.0, 0.0), 0.0, N_LANES, "h", SPEED_LIMIT, priority=1)
    rb.straight(LENGTH)
    speeds = {0: (22.0, 25.0), 1: (20.0, 23.0), 2: (18.0, 21.0), 3: (15.0, 19.0)}
    streams = tuple(
        TrafficStream(
            name=f"lane{i}",
            paths=(road_lanes(net, rb.nodes, i),),
            speed_range=speeds[i],
            gap_range=(35.0, 90.0),
            lane_change=True,
        )
        for i in range(N_LANES)
    )
    return Town(
        name="highway",
        network=net,
        geo=GeoReference(0.0, 0.0),
        streams=streams,
        description=f"straight one-way motorway, {N_LANES} lanes x 4 m, {LENGTH:.0f} m, limit {SPEED_LIMIT:.0f} m/s",
    )

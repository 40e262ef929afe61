"""Routes of the ``signals`` town for the suites: red / green lights, stop signs, pedestrians.

Used by :mod:`make_routes` (appended after the older routes, so their ids and bytes stay put).
Every choice comes from the route's generator ``rng``.
"""

from __future__ import annotations

import numpy as np

from carla_eval.sandbox.map_index import get_map_index
from carla_eval.sandbox.towns import get_town
from carla_eval.sandbox.towns import signals as sg

# (junction, arm in, arm out) per route of each kind, cycled by the route's number k.
MOVES: dict[str, tuple[tuple[str, int, int], ...]] = {
    "VanillaSignalizedTurnEncounterRedLight": (("A", 0, 2), ("A", 1, 2), ("A", 3, 2)),
    "VanillaSignalizedTurnEncounterGreenLight": (("A", 2, 0), ("A", 0, 1), ("A", 3, 1)),
    "VanillaNonSignalizedTurnEncounterStopsign": (("B", 1, 3), ("B", 1, 0), ("B", 3, 0), ("B", 3, 1)),
    "PedestrianCrossing": (("B", 0, 2), ("B", 2, 0), ("B", 0, 3)),
}


def _lane_point(lane, s: float) -> np.ndarray:
    idx = get_map_index(get_town("signals"))
    return idx.lanes[lane].position(float(s), 0.0)


def _lane_length(lane) -> float:
    return float(get_map_index(get_town("signals")).lanes[lane].length)


def junction_route(f, scenario, kind: str, k: int, rng: np.random.Generator, seed: int) -> None:
    """A route through one junction of the ``signals`` town (``MOVES[kind][k % n]``)."""
    j, a, b = MOVES[kind][k % len(MOVES[kind])]
    lanes = sg.movement(j, a, b)
    l_in, l_mid, l_out = lanes
    len_in, len_out = _lane_length(l_in), _lane_length(l_out)
    s_in = len_in - float(np.round(rng.uniform(70.0, 110.0), 1))
    s_out = float(np.round(rng.uniform(40.0, min(70.0, len_out - 10.0)), 1))
    mid = get_map_index(get_town("signals")).lanes[l_mid]
    pts = [_lane_point(l_in, s_in), mid.position(mid.length / 2, 0.0), _lane_point(l_out, s_out)]
    if kind == "PedestrianCrossing":
        trig_s = len_in - sg.STOP_BACK - float(np.round(rng.uniform(30.0, 45.0), 1))
        params = {}
    else:
        trig_s = len_in - sg.STOP_BACK - 2.0
        if kind.endswith("RedLight"):
            params = {"red_wait": float(rng.uniform(5.0, 12.0)), "arrival_speed": 10.0}
        elif kind.endswith("GreenLight"):
            params = {"into_green": float(rng.uniform(0.5, 2.0)), "arrival_speed": 10.0}
        else:
            params = {"gap_min": float(rng.uniform(35.0, 45.0)), "gap_max": float(rng.uniform(90.0, 120.0))}
    trig = _lane_point(l_in, trig_s)
    heading = float(get_map_index(get_town("signals")).lanes[l_in].heading_at(trig_s))
    f.add("signals", pts, [scenario(kind, k, trig, heading, **params)], seed)


# DynamicObjectCrossing: (start lane, start s, end lane, end s) per route; the parked car stands
# near the middle of the straight run.
DYNAMIC_RUNS = (
    (("Aout2", "Bin0", 0), 20.0, ("Aout2", "Bin0", 0), 200.0),
    (("Ao0", "Ain0", 0), 15.0, ("Ao0", "Ain0", 0), 125.0),
    (("Bo2", "Bin2", 0), 10.0, ("Bo2", "Bin2", 0), 125.0),
)


def dynamic_crossing_route(f, scenario, k: int, rng: np.random.Generator, seed: int) -> None:
    lane0, s0, lane1, s1 = DYNAMIC_RUNS[k % len(DYNAMIC_RUNS)]
    s0 = s0 + float(np.round(rng.uniform(0.0, 8.0), 1))
    trig_s = s0 + float(np.round(rng.uniform(45.0, 60.0), 1))
    pts = [_lane_point(lane0, s0), _lane_point(lane1, s1)]
    heading = float(get_map_index(get_town("signals")).lanes[lane0].heading_at(trig_s))
    f.add("signals", pts, [scenario("DynamicObjectCrossing", k, _lane_point(lane0, trig_s), heading,
                                    distance=float(rng.uniform(10.0, 14.0)))], seed)


# (builder, kind, count) of the bench's rule routes, in file order.
BENCH_PLAN: tuple[tuple[str, str, int], ...] = (
    ("junction", "VanillaSignalizedTurnEncounterRedLight", 3),
    ("junction", "VanillaSignalizedTurnEncounterGreenLight", 3),
    ("junction", "VanillaNonSignalizedTurnEncounterStopsign", 4),
    ("junction", "PedestrianCrossing", 3),
    ("dynamic", "DynamicObjectCrossing", 3),
)


def add_bench_routes(f, scenario, base_seed: int, first: int) -> None:
    """Append the rule routes to factory ``f``, numbered from ``first``; route n gets seed ``base_seed + n``."""
    n = first
    for builder, kind, count in BENCH_PLAN:
        for k in range(count):
            seed = base_seed + n
            rng = np.random.default_rng(seed)
            if builder == "junction":
                junction_route(f, scenario, kind, k, rng, seed)
            else:
                dynamic_crossing_route(f, scenario, k, rng, seed)
            n += 1

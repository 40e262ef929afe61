"""Generate the sandbox route suites (leaderboard route XML) deterministically.

    python -m carla_eval.sandbox.make_routes --out routes/sandbox [--seed 20260524]

writes ``smoke.xml`` (3 short routes, one minute or less with the expert) and ``bench.xml`` (62
routes: every scenario type with several seeds, long multi-scenario routes on the highway and the
racetrack, then the traffic-light, stop-sign and pedestrian routes of the ``signals`` town). Every route carries a ``seed`` attribute (the seed to run it with) and its scenario
parameters as ``<name value=.../>`` children; the same command always writes the same bytes.

Seeds: with base seed ``S`` (``--seed``), bench route ``n`` is drawn from seed ``S + n`` (n = 0..45)
and the smoke routes from ``S + 1000 ... S + 1002``; a suite occupies the seeds ``[S, S + 1003)``.
The default ``S = 20260524`` gives the committed suites. Fresh held-out suites of the same kinds
use ``S = HELD_OUT_BASE + 10000 k`` (k = 0, 1, 2, ...), which never overlaps the published seeds.
Training suites of the same kinds (``make weights``, the DAgger loop) use ``S = TRAINING_BASE + 10000 k``
(40,000,000 + 10,000 k), a range no evaluation suite uses:
``python -m carla_eval.sandbox.make_routes --suite training --index 0 --count 5 --out DIR`` writes
``train_0.xml ... train_4.xml`` (310 routes).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from carla_eval.routes import RouteConfig, ScenarioConfig, write_routes_file
from carla_eval.sandbox.map_index import get_map_index
from carla_eval.sandbox.paths import LanePath
from carla_eval.sandbox.towns import get_town
from carla_eval.sandbox.towns import intersection as ix
from carla_eval.sandbox.towns import roundabout as rb
from carla_eval.sandbox.towns.racetrack import N_LANES as RACE_LANES

BASE_SEED = 20260524  # the committed routes/sandbox suites
SUITE_SEED_SPAN = 1003  # a suite with base seed S uses the seeds [S, S + SUITE_SEED_SPAN)
HELD_OUT_BASE = 30000000  # fresh suites: HELD_OUT_BASE + 10000 k
TRAINING_BASE = 40000000  # training suites: TRAINING_BASE + 10000 k (never an evaluation suite)
MAX_BASE_SEED = 2**31 - 1 - SUITE_SEED_SPAN  # route seeds stay non-negative int32


def _pt(p) -> tuple[float, float, float]:
    return (round(float(p[0]), 3), round(float(p[1]), 3), 0.0)


def _scenario(kind: str, k: int, xy, yaw: float, **params) -> ScenarioConfig:
    return ScenarioConfig(
        name=f"{kind}_{k}",
        type=kind,
        trigger=(round(float(xy[0]), 3), round(float(xy[1]), 3), 0.0, round(math.degrees(yaw), 3)),
        params={key: {"value": (f"{v:.3f}" if isinstance(v, float) else str(v))} for key, v in params.items()},
    )


class RouteFactory:
    """Builds routes for each town; ``rng`` decides positions and parameters."""

    def __init__(self) -> None:
        self.routes: list[RouteConfig] = []

    def add(self, town: str, waypoints: list, scenarios: list[ScenarioConfig], seed: int, **attrs) -> None:
        rid = str(len(self.routes))
        attributes = {"seed": str(seed), **{k: str(v) for k, v in attrs.items()}}
        self.routes.append(RouteConfig(len(self.routes), rid, town, tuple(_pt(w) for w in waypoints), tuple(scenarios), (), attributes))


# ---------------------------------------------------------------------------- highway
def _highway_pts(x0: float, x1: float, lane: int, step: float = 100.0) -> list:
    xs = list(np.arange(x0, x1, step)) + [x1]
    return [(x, 4.0 * lane) for x in xs]


def highway_route(f: RouteFactory, kind: str, k: int, rng: np.random.Generator, seed: int) -> None:
    length = float(rng.uniform(550.0, 800.0))
    x0 = float(np.round(rng.uniform(40.0, 2800.0), 1))
    trig = x0 + float(rng.uniform(260.0, 380.0))
    if kind == "CutIn":
        lane = int(rng.integers(1, 3))
        side = "left" if rng.random() < 0.5 else "right"
        sc = _scenario(kind, k, (trig, 4.0 * lane), 0.0, side=side, cut_gap=float(rng.uniform(6.0, 12.0)),
                       speed_delta=float(rng.uniform(3.0, 5.0)), brake_decel=float(rng.uniform(3.0, 5.0)), final_ratio=float(rng.uniform(0.5, 0.7)))
        f.add("highway", _highway_pts(x0, x0 + length, lane), [sc], seed)
        return
    lane = int(rng.integers(0, 4))
    if kind == "HardBrake":
        sc = _scenario(kind, k, (trig, 4.0 * lane), 0.0, brake_gap=float(rng.uniform(12.0, 20.0)), brake_decel=float(rng.uniform(5.0, 8.0)),
                       lead_speed=float(rng.uniform(14.0, 19.0)), hold_time=float(rng.uniform(2.0, 4.0)))
    elif kind == "StoppedVehicle":
        sc = _scenario(kind, k, (trig, 4.0 * lane), 0.0, lateral_offset=float(rng.uniform(-0.4, 0.4)))
    elif kind == "SlowVehicle":
        sc = _scenario(kind, k, (trig, 4.0 * lane), 0.0, slow_speed=float(rng.uniform(3.0, 8.0)))
    elif kind == "LaneChangeDense":
        target = lane + (1 if lane < 2 else -1)
        pts = _highway_pts(x0, trig, lane) + _highway_pts(trig + 90.0, x0 + length, target)
        sc = _scenario(kind, k, (trig, 4.0 * lane), 0.0, gap_min=float(rng.uniform(12.0, 18.0)), gap_max=float(rng.uniform(28.0, 40.0)))
        f.add("highway", pts, [sc], seed)
        return
    else:
        raise ValueError(kind)
    f.add("highway", _highway_pts(x0, x0 + length, lane), [sc], seed)


# ---------------------------------------------------------------------------- racetrack
def _race_path(lane: int) -> LanePath:
    town = get_town("racetrack")
    idx = get_map_index(town)
    stream = next(s for s in town.streams if s.name == f"lane{lane}")
    return LanePath(idx, stream.paths[0], cyclic=True)


def _race_points(path: LanePath, u0: float, length: float, step: float = 100.0) -> list:
    us = list(np.arange(u0, u0 + length, step)) + [u0 + length]
    return [path.position(u % path.length) for u in us]


def race_route(f: RouteFactory, kind: str, k: int, rng: np.random.Generator, seed: int) -> None:
    lane = int(rng.integers(0, RACE_LANES))
    path = _race_path(lane)
    u0 = float(np.round(rng.uniform(0.0, path.length), 1))
    length = float(rng.uniform(600.0, 850.0))
    u_trig = u0 + float(rng.uniform(250.0, 350.0))
    sc = _race_scenario(kind, k, path, u_trig, rng, lane)
    f.add("racetrack", _race_points(path, u0, length), [sc], seed)


def _race_scenario(kind: str, k: int, path: LanePath, u: float, rng: np.random.Generator, lane: int) -> ScenarioConfig:
    xy, yaw = path.position(u % path.length), path.heading(u % path.length)
    if kind == "HardBrake":
        return _scenario(kind, k, xy, yaw, brake_gap=float(rng.uniform(12.0, 18.0)), brake_decel=float(rng.uniform(5.0, 7.5)),
                         lead_speed=float(rng.uniform(8.0, 11.0)), hold_time=float(rng.uniform(2.0, 4.0)))
    if kind == "CutIn":
        side = "right" if lane == 0 else "left"
        return _scenario(kind, k, xy, yaw, side=side, cut_gap=float(rng.uniform(7.0, 12.0)), speed_delta=float(rng.uniform(3.0, 4.5)),
                         brake_decel=float(rng.uniform(3.0, 4.5)), final_ratio=float(rng.uniform(0.55, 0.7)))
    if kind == "StoppedVehicle":
        return _scenario(kind, k, xy, yaw, lateral_offset=float(rng.uniform(-0.3, 0.3)))
    if kind == "SlowVehicle":
        return _scenario(kind, k, xy, yaw, slow_speed=float(rng.uniform(3.0, 6.0)))
    raise ValueError(kind)


# ---------------------------------------------------------------------------- merge
def merge_route(f: RouteFactory, k: int, rng: np.random.Generator, seed: int) -> None:
    from carla_eval.sandbox.towns import merge as mg

    x_start = float(np.round(rng.uniform(mg.RAMP_START + 10.0, mg.RAMP_STRAIGHT_END - 60.0), 1))
    y_ramp = 8.0 + 2 * mg.AMPLITUDE
    x_change = float(np.round(rng.uniform(mg.X_B + 10.0, mg.X_B + 50.0), 1))
    x_end = float(np.round(rng.uniform(900.0, 1300.0), 1))
    pts = [(x_start, y_ramp), (mg.RAMP_STRAIGHT_END - 5.0, y_ramp), (x_change, 8.0)] + [(x, 4.0) for x in np.arange(x_change + 100.0, x_end, 150.0)] + [(x_end, 4.0)]
    sc = _scenario("HighwayMerge", k, (x_change, 8.0), 0.0, gap_min=float(rng.uniform(14.0, 20.0)), gap_max=float(rng.uniform(35.0, 50.0)),
                   speed_min=float(rng.uniform(15.0, 17.0)), speed_max=float(rng.uniform(19.0, 21.0)))
    f.add("merge", pts, [sc], seed)


# ---------------------------------------------------------------------------- intersection
def _arm_point(arm: int, dist: float, incoming: bool) -> np.ndarray:
    a = arm * math.pi / 2
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return rot @ np.array([-dist, ix.OFFSET if incoming else -ix.OFFSET])


def intersection_route(f: RouteFactory, kind: str, k: int, rng: np.random.Generator, seed: int) -> None:
    town = get_town("intersection")
    idx = get_map_index(town)
    if kind == "JunctionLeftTurn":
        arm = [1, 3, 0, 2][k % 4]
        exit_arm = (arm + 1) % 4
    elif kind == "JunctionRightTurn":
        arm = [1, 3][k % 2]
        exit_arm = (arm - 1) % 4
    else:
        arm = [1, 3][k % 2]
        exit_arm = (arm + 2) % 4
    junction_lane = idx.lanes[(f"in{arm}", f"out{exit_arm}", 0)]
    mid = junction_lane.position(junction_lane.length / 2, 0.0)
    d_in = float(np.round(rng.uniform(60.0, 100.0), 1))
    d_out = float(np.round(rng.uniform(50.0, 80.0), 1))
    pts = [_arm_point(arm, d_in, True), mid, _arm_point(exit_arm, d_out, False)]
    entry = _arm_point(arm, ix.BOX + 2.0, True)
    heading = (arm * math.pi / 2) % (2 * math.pi)
    sc = _scenario(kind, k, entry, heading, gap_min=float(rng.uniform(35.0, 45.0)), gap_max=float(rng.uniform(90.0, 120.0)),
                   speed_min=float(rng.uniform(9.0, 10.5)), speed_max=float(rng.uniform(11.5, 13.0)))
    f.add("intersection", pts, [sc], seed)


# ---------------------------------------------------------------------------- roundabout
def roundabout_route(f: RouteFactory, k: int, rng: np.random.Generator, seed: int) -> None:
    town = get_town("roundabout")
    idx = get_map_index(town)
    arm = int(rng.integers(0, 4))
    exit_arm = (arm - 1 - int(rng.integers(0, 3))) % 4
    lanes = rb.movement(arm, exit_arm)
    ring = [l for l in lanes if l[0].startswith(("n", "x")) and l[1].startswith(("n", "x"))]
    mid_lane = idx.lanes[ring[len(ring) // 2]]
    arm_in = idx.lanes[lanes[0]]
    arm_out = idx.lanes[lanes[-1]]
    s_in = float(np.round(rng.uniform(20.0, 50.0), 1))
    s_out = float(np.round(rng.uniform(50.0, 90.0), 1))
    pts = [arm_in.position(s_in, 0.0), mid_lane.position(mid_lane.length / 2, 0.0), arm_out.position(s_out, 0.0)]
    entry = arm_in.position(arm_in.length - 2.0, 0.0)
    sc = _scenario("RoundaboutEntry", k, entry, arm_in.heading_at(0.0), gap_min=float(rng.uniform(22.0, 30.0)),
                   gap_max=float(rng.uniform(60.0, 90.0)), speed_min=float(rng.uniform(7.0, 8.0)), speed_max=float(rng.uniform(9.0, 10.0)))
    f.add("roundabout", pts, [sc], seed)


# ---------------------------------------------------------------------------- long routes
def long_highway(f: RouteFactory, k: int, rng: np.random.Generator, seed: int) -> None:
    x0 = float(np.round(rng.uniform(30.0, 200.0), 1))
    lane = 1
    trig = [x0 + 400.0, x0 + 1100.0, x0 + 1800.0, x0 + 2500.0]
    kinds = ["HardBrake", "StoppedVehicle", "CutIn", "SlowVehicle"]
    order = list(rng.permutation(len(kinds)))
    scs = []
    for j, o in enumerate(order):
        kind = kinds[o]
        x = trig[j]
        if kind == "HardBrake":
            scs.append(_scenario(kind, k * 10 + j, (x, 4.0 * lane), 0.0, brake_gap=15.0, brake_decel=float(rng.uniform(5.0, 7.0)), lead_speed=16.0, hold_time=3.0))
        elif kind == "StoppedVehicle":
            scs.append(_scenario(kind, k * 10 + j, (x, 4.0 * lane), 0.0, lateral_offset=0.0))
        elif kind == "CutIn":
            scs.append(_scenario(kind, k * 10 + j, (x, 4.0 * lane), 0.0, side="left", cut_gap=9.0, speed_delta=4.0, brake_decel=4.0, final_ratio=0.6))
        else:
            scs.append(_scenario(kind, k * 10 + j, (x, 4.0 * lane), 0.0, slow_speed=6.0))
    f.add("highway", _highway_pts(x0, x0 + 3000.0, lane), scs, seed)


def long_racetrack(f: RouteFactory, k: int, rng: np.random.Generator, seed: int) -> None:
    lane = int(rng.integers(0, RACE_LANES))
    path = _race_path(lane)
    u0 = float(np.round(rng.uniform(0.0, path.length), 1))
    length = float(rng.uniform(1700.0, 1900.0))
    kinds = ["SlowVehicle", "HardBrake", "StoppedVehicle", "CutIn"]
    order = list(rng.permutation(len(kinds)))
    scs = [_race_scenario(kinds[o], k * 10 + j, path, u0 + 300.0 + 400.0 * j, rng, lane) for j, o in enumerate(order)]
    f.add("racetrack", _race_points(path, u0, length), scs, seed)


# ---------------------------------------------------------------------------- suites
def check_base_seed(base_seed: int) -> int:
    """``base_seed`` if usable (an int in [0, MAX_BASE_SEED]); ValueError naming the range otherwise."""
    if isinstance(base_seed, bool) or not isinstance(base_seed, int) or not 0 <= base_seed <= MAX_BASE_SEED:
        raise ValueError(f"route suite base seed must be an integer in [0, {MAX_BASE_SEED}], got {base_seed!r}")
    return base_seed


def held_out_seed(k: int) -> int:
    """Base seed of the k-th fresh held-out suite (0 <= k < 1000, below the training range)."""
    if not isinstance(k, int) or not 0 <= k < 1000:
        raise ValueError(f"held-out suite index must be an integer in [0, 1000), got {k!r}")
    return check_base_seed(HELD_OUT_BASE + 10000 * k)


def training_seed(k: int) -> int:
    """Base seed of the k-th generated training suite (k >= 0); disjoint from every evaluation suite."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"training suite index must be an integer >= 0, got {k!r}")
    return check_base_seed(TRAINING_BASE + 10000 * k)


def bench_routes(base_seed: int = BASE_SEED) -> list[RouteConfig]:
    """The bench suite drawn from ``base_seed`` (route n from seed ``base_seed + n``)."""
    check_base_seed(base_seed)
    f = RouteFactory()
    plan: list[tuple[str, str, int]] = []  # (builder, kind, count)
    plan += [("highway", "HardBrake", 3), ("race", "HardBrake", 2), ("highway", "CutIn", 3), ("race", "CutIn", 2)]
    plan += [("highway", "StoppedVehicle", 3), ("race", "StoppedVehicle", 2), ("highway", "SlowVehicle", 3), ("race", "SlowVehicle", 2)]
    plan += [("merge", "HighwayMerge", 5), ("highway", "LaneChangeDense", 5)]
    plan += [("intersection", "JunctionLeftTurn", 4), ("intersection", "JunctionRightTurn", 2), ("intersection", "JunctionCrossing", 2)]
    plan += [("roundabout", "RoundaboutEntry", 4)]
    plan += [("long_highway", "", 2), ("long_race", "", 2)]
    n = 0
    for builder, kind, count in plan:
        for k in range(count):
            seed = base_seed + n
            rng = np.random.default_rng(seed)
            if builder == "highway":
                highway_route(f, kind, k, rng, seed)
            elif builder == "race":
                race_route(f, kind, k, rng, seed)
            elif builder == "merge":
                merge_route(f, k, rng, seed)
            elif builder == "intersection":
                intersection_route(f, kind, k, rng, seed)
            elif builder == "roundabout":
                roundabout_route(f, k, rng, seed)
            elif builder == "long_highway":
                long_highway(f, k, rng, seed)
            else:
                long_racetrack(f, k, rng, seed)
            n += 1
    from carla_eval.sandbox.make_routes_rules import add_bench_routes

    add_bench_routes(f, _scenario, base_seed, n)  # lights, stop signs, pedestrians (signals town)
    return f.routes


def smoke_routes(base_seed: int = BASE_SEED) -> list[RouteConfig]:
    """The smoke suite drawn from ``base_seed`` (seeds ``base_seed + 1000 ... + 1002``)."""
    check_base_seed(base_seed)
    f = RouteFactory()
    seed = base_seed + 1000
    rng = np.random.default_rng(seed)
    x0 = 100.0
    f.add("highway", _highway_pts(x0, x0 + 320.0, 1),
          [_scenario("HardBrake", 0, (x0 + 150.0, 4.0), 0.0, brake_gap=15.0, brake_decel=6.0, lead_speed=12.0, hold_time=2.0)], seed)
    intersection_route(f, "JunctionLeftTurn", 0, np.random.default_rng(seed + 1), seed + 1)
    roundabout_route(f, 0, np.random.default_rng(seed + 2), seed + 2)
    del rng
    return f.routes


def training_suites(first: int, count: int) -> list[tuple[str, list[RouteConfig]]]:
    """``count`` training suites of the bench kinds from index ``first``: (file stem, routes) per
    suite, suite ``k`` drawn from :func:`training_seed` ``(k)`` (62 routes each, every town and
    scenario kind with freshly sampled parameters)."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"training suite count must be an integer >= 1, got {count!r}")
    return [(f"train_{k}", bench_routes(training_seed(k))) for k in range(first, first + count)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="routes/sandbox", help="output folder (default routes/sandbox)")
    ap.add_argument("--seed", type=int, default=BASE_SEED,
                    help=f"base seed of the suites (default {BASE_SEED}: the committed files); fresh held-out "
                         f"suites: {HELD_OUT_BASE} + 10000 k")
    ap.add_argument("--suite", choices=("all", "bench", "smoke", "training"), default="all",
                    help="which file(s) to write; training: --count suites train_K.xml from the training seed "
                         f"range ({TRAINING_BASE} + 10000 K, K = --index ...), which no evaluation suite uses")
    ap.add_argument("--index", type=int, default=0, help="--suite training: index K of the first suite")
    ap.add_argument("--count", type=int, default=1, help="--suite training: number of suites (62 routes each)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.suite == "training":
        try:
            suites_k = training_suites(args.index, args.count)
        except ValueError as e:
            ap.error(str(e))
        out.mkdir(parents=True, exist_ok=True)
        for stem, routes in suites_k:
            write_routes_file(routes, out / f"{stem}.xml")
        print(f"wrote {sum(len(r) for _, r in suites_k)} routes in {len(suites_k)} training suites to {out}")
        return
    try:
        base = check_base_seed(args.seed)
    except ValueError as e:
        ap.error(str(e))
    out.mkdir(parents=True, exist_ok=True)
    suites = [("smoke", smoke_routes), ("bench", bench_routes)]
    for name, build in suites:
        if args.suite not in ("all", name):
            continue
        routes = build(base)
        write_routes_file(routes, out / f"{name}.xml")
        print(f"wrote {len(routes)} routes to {out / (name + '.xml')}")


if __name__ == "__main__":
    main()

"""Sandbox routes: the suites in routes/sandbox, the generator, route planning and the global plan."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from carla_eval.routes import RouteConfig, parse_routes_file
from carla_eval.sandbox.map_index import get_map_index
from carla_eval.sandbox.road_option import RoadOption
from carla_eval.sandbox.route_plan import RoutePlanError, RoutePlanner, build_global_plan, downsample_indices
from carla_eval.sandbox.scenarios import SCENARIO_ABILITIES
from carla_eval.sandbox.towns import TOWN_NAMES, get_town

ROUTES = Path(__file__).resolve().parents[1] / "routes" / "sandbox"


def plan_of(route: RouteConfig):
    town = get_town(route.town)
    return town, RoutePlanner(get_map_index(town)).plan([w[:2] for w in route.waypoints])


def test_road_option_values_match_carla():
    assert {o.name: int(o) for o in RoadOption} == {
        "VOID": -1, "LEFT": 1, "RIGHT": 2, "STRAIGHT": 3, "LANEFOLLOW": 4, "CHANGELANELEFT": 5, "CHANGELANERIGHT": 6}


def test_suites_parse_and_have_the_required_counts():
    smoke = parse_routes_file(ROUTES / "smoke.xml")
    bench = parse_routes_file(ROUTES / "bench.xml")
    assert 2 <= len(smoke) <= 4
    assert len(bench) >= 40
    for r in smoke + bench:
        assert r.error is None
        assert r.town in TOWN_NAMES
        assert r.scenarios and all(s.type in SCENARIO_ABILITIES for s in r.scenarios)
        assert int(r.attributes["seed"]) >= 0
    kinds = [r.scenario_type for r in bench]
    assert {SCENARIO_ABILITIES[k] for k in kinds} == {"Emergency_Brake", "Overtaking", "Merging", "Give_Way", "Traffic_Signs"}
    for kind in SCENARIO_ABILITIES:
        assert sum(any(s.type == kind for s in r.scenarios) for r in bench) >= 2, kind
    seeds = [r.attributes["seed"] for r in bench]
    assert len(set(seeds)) == len(seeds)


def test_bench_keeps_its_first_46_routes_and_adds_rule_routes():
    from carla_eval.metrics import abilities_of

    bench = parse_routes_file(ROUTES / "bench.xml")
    assert [r.route_id for r in bench[:46]] == [str(k) for k in range(46)]
    assert all(r.town != "signals" for r in bench[:46])
    new = bench[46:]
    groups = [abilities_of(r.scenario_type, SCENARIO_ABILITIES[r.scenario_type]) for r in new]
    assert sum("Traffic_Signs" in g for g in groups) >= 8
    assert sum(r.scenario_type in ("PedestrianCrossing", "DynamicObjectCrossing") for r in new) >= 6
    assert all(r.town == "signals" for r in new)


def test_bench_has_long_multi_scenario_routes():
    bench = parse_routes_file(ROUTES / "bench.xml")
    long_routes = [r for r in bench if len(r.scenarios) >= 3]
    assert len(long_routes) >= 2
    towns = set()
    for r in long_routes:
        _, plan = plan_of(r)
        assert plan.length >= 1500.0  # 2+ minutes at the towns' speeds
        towns.add(r.town)
    assert {"highway", "racetrack"} <= towns


def test_every_bench_route_plans():
    for r in parse_routes_file(ROUTES / "bench.xml") + parse_routes_file(ROUTES / "smoke.xml"):
        _, plan = plan_of(r)
        assert plan.length > 100.0
        for sc in r.scenarios:
            d = np.hypot(plan.xy[:, 0] - sc.trigger[0], plan.xy[:, 1] - sc.trigger[1]).min()
            assert d < 10.0, (r.route_id, sc.name)


def test_generator_is_deterministic_and_files_are_current(tmp_path):
    from carla_eval.sandbox import make_routes

    make_routes.main(["--out", str(tmp_path)])
    for name in ("smoke.xml", "bench.xml"):
        assert (tmp_path / name).read_bytes() == (ROUTES / name).read_bytes(), name


def test_route_commands_follow_the_manoeuvre():
    bench = parse_routes_file(ROUTES / "bench.xml")
    expected = {"JunctionLeftTurn": RoadOption.LEFT, "JunctionRightTurn": RoadOption.RIGHT, "JunctionCrossing": RoadOption.STRAIGHT}
    for r in bench:
        if r.scenario_type in expected:
            _, plan = plan_of(r)
            opts = set(int(o) for o in plan.option)
            assert int(expected[r.scenario_type]) in opts, r.route_id
            assert opts <= {int(expected[r.scenario_type]), int(RoadOption.LANEFOLLOW)}
        if r.scenario_type == "LaneChangeDense":
            _, plan = plan_of(r)
            assert {int(RoadOption.CHANGELANELEFT), int(RoadOption.CHANGELANERIGHT)} & set(int(o) for o in plan.option)


def test_dense_route_is_1m_spaced_and_continuous():
    route = RouteConfig(0, "x", "highway", ((10.0, 4.0, 0.0), (200.0, 4.0, 0.0), (300.0, 8.0, 0.0), (500.0, 8.0, 0.0)))
    _, plan = plan_of(route)
    step = np.hypot(*np.diff(plan.xy, axis=0).T)
    assert np.allclose(step, 1.0, atol=0.02)
    changes = np.nonzero(plan.option == int(RoadOption.CHANGELANERIGHT))[0]
    assert changes.size > 10 and plan.xy[changes[0], 0] == pytest.approx(200.0, abs=2.0)
    assert plan.xy[-1] == pytest.approx([500.0, 8.0], abs=0.01)


def test_downsampling_keeps_changes_and_the_end():
    opts = [4] * 120 + [5] * 20 + [4] * 130 + [1] * 15 + [4] * 60
    xy = np.stack([np.arange(len(opts), dtype=float), np.zeros(len(opts))], axis=1)
    keep = downsample_indices(xy, opts, 50.0)
    assert keep[0] == 0 and keep[-1] == len(opts) - 1
    assert set(range(120, 140)) <= set(keep)  # every lane-change point
    assert 270 in keep and 285 in keep  # command changes
    gaps = np.diff([k for k in keep if k < 120])
    assert gaps.max() <= 52
    assert downsample_indices(xy[:3], [4, 4, 4], 50.0) == [0, 2]


def test_global_plan_entries():
    import carla

    route = RouteConfig(0, "x", "intersection", ((-100.0, 2.0, 0.0), (-1.515, -1.515, 0.0), (2.0, -80.0, 0.0)))
    town, plan = plan_of(route)
    gp = build_global_plan(plan, town.geo, 50.0)
    assert len(gp.gps) == len(gp.world) >= 3
    for (gps, opt_g), (tf, opt_w) in zip(gp.gps, gp.world):
        assert set(gps) == {"lat", "lon", "z"} and opt_g == opt_w and isinstance(opt_w, RoadOption)
        assert isinstance(tf, carla.Transform)
        x, y, _ = town.geo.gnss_to_world(gps["lat"], gps["lon"])
        assert math.hypot(x - tf.location.x, y - tf.location.y) < 0.05
    last = gp.world[-1][0].location
    assert (last.x, last.y) == pytest.approx((2.0, -80.0), abs=0.05)
    assert RoadOption.LEFT in [o for _, o in gp.world]
    dense = build_global_plan(plan, town.geo, None)
    assert len(dense.world) == len(plan.s)


def test_planner_errors_are_clear():
    town = get_town("highway")
    planner = RoutePlanner(get_map_index(town))
    with pytest.raises(RoutePlanError, match="off its nearest lane"):
        planner.plan([(10.0, 4.0), (200.0, 60.0)])
    with pytest.raises(RoutePlanError, match="at least 2"):
        planner.plan([(10.0, 4.0)])
    with pytest.raises(ValueError, match="unknown sandbox town"):
        get_town("Town12")


def test_generator_seed_option(tmp_path):
    from carla_eval.sandbox import make_routes

    # The default base seed, given explicitly, reproduces the committed files byte for byte.
    make_routes.main(["--out", str(tmp_path / "default"), "--seed", str(make_routes.BASE_SEED)])
    for name in ("smoke.xml", "bench.xml"):
        assert (tmp_path / "default" / name).read_bytes() == (ROUTES / name).read_bytes(), name
    # A held-out seed draws another suite of the same kinds, with seeds outside the published range.
    base = make_routes.held_out_seed(1)
    make_routes.main(["--out", str(tmp_path / "fresh"), "--seed", str(base), "--suite", "bench"])
    assert not (tmp_path / "fresh" / "smoke.xml").exists()
    fresh = parse_routes_file(tmp_path / "fresh" / "bench.xml")
    bench = parse_routes_file(ROUTES / "bench.xml")
    assert [sorted(s.type for s in r.scenarios) for r in fresh] == [sorted(s.type for s in r.scenarios) for r in bench]
    assert [r.town for r in fresh] == [r.town for r in bench]
    assert [int(r.attributes["seed"]) for r in fresh] == [base + n for n in range(len(bench))]
    published = range(make_routes.BASE_SEED, make_routes.BASE_SEED + make_routes.SUITE_SEED_SPAN)
    assert not {int(r.attributes["seed"]) for r in fresh} & set(published)
    assert [r.waypoints for r in fresh] != [r.waypoints for r in bench]
    for r in fresh:
        _, plan = plan_of(r)
        assert plan.length > 100.0


def test_the_committed_held_out_suite_is_the_generators(tmp_path):
    """routes/sandbox/held_out_8.xml, the held-out suite of docs/training.md, is held-out suite k = 8
    (base seed 30,080,000) as make_routes writes it, byte for byte."""
    from carla_eval.sandbox import make_routes

    make_routes.main(["--out", str(tmp_path), "--seed", str(make_routes.held_out_seed(8)), "--suite", "bench"])
    assert (tmp_path / "bench.xml").read_bytes() == (ROUTES / "held_out_8.xml").read_bytes()


def test_generator_rejects_a_bad_seed(tmp_path, capsys):
    from carla_eval.sandbox import make_routes

    with pytest.raises(SystemExit):
        make_routes.main(["--out", str(tmp_path), "--seed", "-1"])
    assert "base seed must be an integer in [0," in capsys.readouterr().err
    with pytest.raises(ValueError, match="held-out suite index"):
        make_routes.held_out_seed(-2)


def test_training_suite_seeds_never_meet_an_evaluation_suite():
    from carla_eval.sandbox import make_routes

    span = make_routes.SUITE_SEED_SPAN

    def seeds(base):
        return set(range(base, base + span))

    evaluation = seeds(make_routes.BASE_SEED).union(*(seeds(make_routes.held_out_seed(k)) for k in range(1000)))
    training = set().union(*(seeds(make_routes.training_seed(k)) for k in range(200)))
    assert make_routes.training_seed(0) == 40_000_000 and not training & evaluation
    with pytest.raises(ValueError, match="training suite index"):
        make_routes.training_seed(-1)


def test_the_training_suite_cli_writes_suites_from_the_training_seed_range(tmp_path):
    from carla_eval.routes import parse_routes_file
    from carla_eval.sandbox import make_routes

    make_routes.main(["--suite", "training", "--index", "3", "--count", "2", "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_3.xml", "train_4.xml"]
    bench = parse_routes_file(Path(__file__).resolve().parents[1] / "routes" / "sandbox" / "bench.xml")
    for k in (3, 4):
        routes = parse_routes_file(tmp_path / f"train_{k}.xml")
        seeds = [int(r.attributes["seed"]) for r in routes]
        base = make_routes.training_seed(k)
        assert len(routes) == len(bench) and all(base <= s < base + make_routes.SUITE_SEED_SPAN for s in seeds)
        assert [r.town for r in routes] == [r.town for r in bench]  # the bench kinds, route by route
        assert {r.scenario_type for r in routes} == {r.scenario_type for r in bench}
    with pytest.raises(SystemExit):
        make_routes.main(["--suite", "training", "--count", "0", "--out", str(tmp_path)])

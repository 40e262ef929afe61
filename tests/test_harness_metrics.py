"""Metrics against hand-computed examples."""

import pytest

from carla_eval import scoring
from carla_eval.metrics import (
    ComfortConfig,
    ExpectedRoute,
    compute_metrics,
    record_abilities,
    route_comfort,
    route_efficiency,
)


def _rec(rid, status="Perfect", rc=100.0, infractions=None, length=100.0, scenario="HardBreakRoute", ability="", formula="2.0"):
    inf = scoring.empty_infractions()
    inf.update(infractions or {})
    return {
        "index": 0, "route_id": f"RouteScenario_{rid}_rep0", "status": status,
        "num_infractions": sum(len(v) for v in inf.values()), "infractions": inf,
        "scores": scoring.route_scores(rc, inf, formula),
        "meta": {"route_length": length, "duration_game": 10.0, "duration_system": 2.0},
        "save_name": f"s{rid}", "scenario_name": scenario, "town_name": "t", "weather_id": 0, "ability": ability,
    }


def _expected(*ids, scenario=""):
    return [ExpectedRoute(f"RouteScenario_{i}_rep0", scenario) for i in ids]


def test_driving_score_with_several_penalties_both_formulas():
    inf = {
        "collisions_pedestrian": ["p"],
        "red_light": ["r"],
        "stop_infraction": ["s"],
        "min_speed_infractions": [scoring.msg_min_speed(50.0)],  # no penalty (Bench2Drive)
    }
    recs = [_rec(0, "Failed", 80.0, inf), _rec(1, "Perfect", 100.0)]
    m = compute_metrics(recs, _expected(0, 1))
    ds0 = 80.0 * 0.5 * 0.7 * 0.8
    assert m.driving_score == pytest.approx((ds0 + 100.0) / 2)
    assert m.infraction_penalty == pytest.approx((0.28 + 1.0) / 2)
    assert m.route_completion == pytest.approx(90.0)
    m21 = compute_metrics(recs, _expected(0, 1), penalty_formula="2.1")
    weights = sum(1.0 / p - 1.0 for p in (0.5, 0.7, 0.8))
    assert m21.driving_score == pytest.approx((80.0 / (1.0 + weights) + 100.0) / 2)
    assert m.success_rate == pytest.approx(50.0) and m.n_success == 1


def test_success_ignores_min_speed_but_not_other_infractions():
    ok = _rec(0, "Perfect", infractions={"min_speed_infractions": [scoring.msg_min_speed(70.0)]})
    bad = _rec(1, "Completed", infractions={"outside_route_lanes": [scoring.msg_outside_lanes(1.0, 1.0)]})
    m = compute_metrics([ok, bad], _expected(0, 1))
    assert m.n_success == 1


def test_missing_routes_count_zero_and_are_listed():
    recs = [_rec(0), _rec(1), _rec(2)]
    m = compute_metrics(recs, _expected(0, 1, 2, 3))
    assert m.driving_score == pytest.approx(300.0 / 4)
    assert m.success_rate == pytest.approx(75.0)
    assert m.missing == ["RouteScenario_3_rep0"] and not m.complete
    assert m.notes[0].startswith("INCOMPLETE: 3 of 4")
    assert m.to_json()["complete"] is False


def test_duplicates_and_strangers_are_errors():
    with pytest.raises(ValueError, match="twice"):
        compute_metrics([_rec(0), _rec(0)], _expected(0))
    with pytest.raises(ValueError, match="not in the route file"):
        compute_metrics([_rec(0), _rec(9)], _expected(0))


def test_efficiency_parses_min_speed_messages():
    a = _rec(0, infractions={"min_speed_infractions": [scoring.msg_min_speed(80.0), scoring.msg_min_speed(120.0),
                                                       scoring.msg_min_speed(1500.0)]})
    b = _rec(1, infractions={"min_speed_infractions": ["Average speed is 60% of the surrounding traffic's one"]})
    c = _rec(2)
    assert route_efficiency(a) == pytest.approx(100.0)  # 1500% dropped
    assert route_efficiency(c) is None
    m = compute_metrics([a, b, c], _expected(0, 1, 2))
    assert m.efficiency == pytest.approx(80.0) and m.efficiency_routes == 2


def test_ability_grouping():
    assert record_abilities(_rec(0, scenario="PedestrianCrossing")) == {"Emergency_Brake", "Traffic_Signs"}
    assert record_abilities(_rec(0, scenario="HighwayCutIn")) == {"Merging"}
    assert record_abilities(_rec(0, scenario="SandboxMerge", ability="Merging")) == {"Merging"}
    assert record_abilities(_rec(0, scenario="Unknown")) == set()
    recs = [
        _rec(0, scenario="PedestrianCrossing"),
        _rec(1, "Failed", 40.0, scenario="HardBreakRoute"),
        _rec(2, scenario="SandboxOvertake", ability="Overtaking"),
    ]
    expected = _expected(0, 1, 2) + [ExpectedRoute("RouteScenario_3_rep0", "ControlLoss")]
    m = compute_metrics(recs, expected)
    eb = m.abilities["Emergency_Brake"]
    assert (eb.n_success, eb.n_routes, eb.n_missing) == (1, 3, 1)
    assert eb.success_rate == pytest.approx(100.0 / 3)
    assert m.abilities["Traffic_Signs"].success_rate == pytest.approx(100.0)
    assert m.abilities["Overtaking"].success_rate == pytest.approx(100.0)
    assert m.abilities["Give_Way"].success_rate is None
    assert m.ability_mean == pytest.approx((100.0 / 3 + 100.0 + 100.0) / 3)


def _metric_info(n, spikes=()):
    info = {}
    for i in range(n):
        a = 6.0 if i in spikes else 0.5
        info[str(i)] = {
            "acceleration": [a, 0.0, 0.0], "angular_velocity": [0.0, 0.0, 0.0], "forward_vector": [1.0, 0.0, 0.0],
            "right_vector": [0.0, 1.0, 0.0], "location": [i * 0.5, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0],
        }
    return info


def test_comfort_chunking():
    assert route_comfort(_metric_info(45)) == pytest.approx(1.0)
    assert route_comfort(_metric_info(45, spikes={28, 29, 30})) == pytest.approx(0.5)  # second chunk fails
    assert route_comfort(_metric_info(45, spikes={41, 42, 43})) == pytest.approx(1.0)  # partial tail dropped
    assert route_comfort(_metric_info(15)) == 1.0  # one short chunk, tested whole
    assert route_comfort(_metric_info(15, spikes={7, 8, 9})) == 0.0
    assert route_comfort(_metric_info(2)) is None
    # key order in the file must not matter: entries are sorted by step
    shuffled = dict(sorted(_metric_info(45, spikes={28, 29, 30}).items(), key=lambda kv: -int(kv[0])))
    assert route_comfort(shuffled) == pytest.approx(0.5)


def test_comfort_yaw_rate_units():
    info = _metric_info(20)
    for e in info.values():
        e["angular_velocity"] = [0.0, 0.0, 30.0]  # deg/s, as CARLA writes it
    assert route_comfort(info) == 0.0  # Bench2Drive reads 30 against its 0.95 bound
    assert route_comfort(info, ComfortConfig(bench2drive_compat=False)) == 1.0  # 0.52 rad/s


def test_comfort_in_metrics_averages_routes_with_metric_info():
    recs = [_rec(0), _rec(1), _rec(2)]
    infos = {"s0": _metric_info(45), "s1": _metric_info(45, spikes={5, 6, 7})}
    m = compute_metrics(recs, _expected(0, 1, 2), metric_info_of=lambda r: infos.get(r["save_name"]))
    assert m.comfort == pytest.approx(75.0) and m.comfort_routes == 2
    assert any("comfort: 1" in n for n in m.notes)


def test_infractions_per_km():
    recs = [
        _rec(0, rc=100.0, length=2000.0, infractions={"collisions_vehicle": ["a", "b"]}),
        _rec(1, "Failed", rc=50.0, length=1000.0, infractions={"outside_route_lanes": [scoring.msg_outside_lanes(100.0, 20.0)]}),
    ]
    m = compute_metrics(recs, _expected(0, 1))
    assert m.km_driven == pytest.approx(2.5)
    assert m.infractions_per_km["collisions_vehicle"] == pytest.approx(2 / 2.5)
    assert m.infractions_per_km["outside_route_lanes"] == pytest.approx(0.1)

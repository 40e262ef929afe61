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


# ------------------------------------------------- files written by the real statistics managers
import json

from carla_eval.cli import main as cli_main
from carla_eval.merge import merge_runs
from carla_eval.result_formats import (
    FORMAT_B2D_MERGED,
    FORMAT_BENCH2DRIVE,
    FORMAT_LEADERBOARD,
    load_results_any,
    scenario_type_of_name,
)

KEYS = list(scoring.INFRACTION_KEYS)


def _inf(**kw):
    out = {k: [] for k in KEYS}
    out.update(kw)
    return out


LABELS = ["Avg. driving score", "Avg. route completion", "Avg. infraction penalty", "Collisions with pedestrians",
          "Collisions with vehicles", "Collisions with layout", "Red lights infractions", "Stop sign infractions",
          "Off-road infractions", "Route deviations", "Route timeouts", "Agent blocked",
          "Yield emergency vehicles infractions", "Scenario timeouts", "Min speed infractions"]

# A Leaderboard 2.0 checkpoint as statistics_manager.py (branch leaderboard-2.0) writes it at the end
# of a 3-route run: no save_name / scenario_name / town_name / weather_id; min speed IS a penalty
# there (x (1 - 0.3 (1 - pct/100)), unclipped), outside lanes x (1 - pct/100) with the unrounded pct.
LB20_CHECKPOINT = {
    "_checkpoint": {
        "global_record": {
            "index": -1, "route_id": -1, "status": "Failed",
            "infractions": {"collisions_layout": 0.0, "collisions_pedestrian": 0.0, "collisions_vehicle": 4.077,
                            "red_light": 0.0, "stop_infraction": 0.0, "outside_route_lanes": 0.013,
                            "min_speed_infractions": 8.153, "yield_emergency_vehicle_infractions": 0.0,
                            "scenario_timeouts": 0.0, "route_dev": 0.0, "vehicle_blocked": 4.077, "route_timeout": 4.077},
            "scores_mean": {"score_composed": 61.347729, "score_route": 75.207819, "score_penalty": 0.855526},
            "scores_std_dev": {"score_composed": 18.419, "score_route": 27.766, "score_penalty": 0.217},
            "meta": {"total_length": 345.5, "duration_game": 281.45, "duration_system": 1210.8,
                     "exceptions": [["RouteScenario_1_rep0", 1, "Failed - Agent got blocked"],
                                    ["RouteScenario_2_rep0", 2, "Failed - Agent timed out"]]},
        },
        "progress": [3, 3],
        "records": [
            {"index": 0, "route_id": "RouteScenario_0_rep0", "status": "Completed", "num_infractions": 3,
             "infractions": _inf(
                 collisions_vehicle=["Agent collided against object with type=vehicle.tesla.model3 and id=2345 at "
                                     "(x=-497.7, y=3630.1, z=364.2)"],
                 min_speed_infractions=["Average speed is 80.0% of the surrounding traffic's one",
                                        "Average speed is 120.5% of the surrounding traffic's one"]),
             "scores": {"score_route": 100.0, "score_penalty": 0.598686, "score_composed": 59.8686},
             "meta": {"route_length": 120.0, "duration_game": 80.15, "duration_system": 402.1}},
            {"index": 1, "route_id": "RouteScenario_1_rep0", "status": "Failed - Agent got blocked", "num_infractions": 2,
             "infractions": _inf(
                 outside_route_lanes=["Agent went outside its route lanes for about 12.5 meters (3.21% of the completed route)"],
                 vehicle_blocked=["Agent got blocked at (x=12.3, y=-4.5, z=0.1)"]),
             "scores": {"score_route": 45.123456, "score_penalty": 0.967891, "score_composed": 43.674587},
             "meta": {"route_length": 130.0, "duration_game": 120.3, "duration_system": 500.2}},
            {"index": 2, "route_id": "RouteScenario_2_rep0", "status": "Failed - Agent timed out", "num_infractions": 1,
             "infractions": _inf(route_timeout=["Route timeout."]),
             "scores": {"score_route": 80.5, "score_penalty": 1.0, "score_composed": 80.5},
             "meta": {"route_length": 95.5, "duration_game": 81.0, "duration_system": 308.5}},
        ],
    },
    "entry_status": "Finished", "eligible": True,
    "sensors": ["carla_camera", "carla_camera", "carla_camera", "carla_gnss", "carla_imu", "carla_speedometer"],
    "values": ["61.347729", "75.207819", "0.855526", "0.0", "4.077", "0.0", "0.0", "0.0", "0.013", "0.0", "4.077",
               "4.077", "0.0", "0.0", "8.153"],
    "labels": LABELS,
}


def _b2d_record(index, rid, status, rc, ip, scenario, weather, **inf):
    rec = {"index": index, "route_id": f"RouteScenario_{rid}_rep0", "status": status,
           "num_infractions": sum(len(v) for v in inf.values()), "infractions": _inf(**inf),
           "scores": {"score_route": rc, "score_penalty": ip, "score_composed": round(rc * ip, 6)},
           "meta": {"route_length": 150.0, "duration_game": 60.0, "duration_system": 240.0},
           "scenario_name": scenario, "weather_id": weather,
           "save_name": f"RouteScenario_{rid}_rep0_Town12_{scenario}_{weather}_12_01_10_11_12"}
    rec["town_name"] = "Town12"  # set after the others in Bench2Drive's create_route_data
    return rec


# A Bench2Drive checkpoint (its statistics_manager.py): scenario *names*, weather ids as STRINGS (or
# null when weather.xml has no match), save_name with a time stamp; min speed carries no penalty.
B2D_RECORDS = [
    _b2d_record(0, 1711, "Completed", 100.0, 0.6, "ParkingCutIn_1", "15",
                collisions_vehicle=["Agent collided against object with type=vehicle.audi.a2 and id=77 at (x=-497.7, y=3650.1, z=364.5)"],
                min_speed_infractions=["Average speed is 70.5% of the surrounding traffic's one"]),
    _b2d_record(1, 1773, "Perfect", 100.0, 1.0, "ParkedObstacle_1", "3"),
    _b2d_record(2, 1790, "Failed - TickRuntime", 33.3, 1.0, "HazardAtSideLane_1", None),
]
B2D_CHECKPOINT = {
    "_checkpoint": {
        "global_record": {
            "index": -1, "route_id": -1, "status": "Failed",
            "infractions": {k: 0.0 for k in KEYS} | {"collisions_vehicle": 2.571, "min_speed_infractions": 2.571},
            "scores_mean": {"score_composed": 64.433333, "score_route": 77.766667, "score_penalty": 0.866667},
            "scores_std_dev": {"score_composed": 33.404, "score_route": 38.509, "score_penalty": 0.231},
            "meta": {"total_length": 450.0, "duration_game": 180.0, "duration_system": 720.0,
                     "exceptions": [["RouteScenario_1790_rep0", 2, "Failed - TickRuntime"]]},
        },
        "progress": [3, 3],
        "records": B2D_RECORDS,
    },
    "entry_status": "Finished", "eligible": True, "sensors": ["carla_camera"] * 6 + ["carla_imu", "carla_gnss", "carla_speedometer"],
    "values": ["64.433333", "77.766667", "0.866667"] + ["0.0"] * 12, "labels": LABELS,
}
# tools/merge_route_json.py over a folder holding that checkpoint: records lose "index", are sorted by
# route_id descending; "driving score" / "success rate" are over Bench2Drive's 220 routes.
B2D_MERGED = {
    "_checkpoint": {"records": [{k: v for k, v in r.items() if k != "index"}
                                for r in sorted(B2D_RECORDS, key=lambda d: d["route_id"], reverse=True)]},
    "driving score": 193.3 / 220, "success rate": 1 / 220, "eval num": 3,
}

ROUTE_XML = """  <route id="{rid}" town="Town12">
    <waypoints><position x="0.0" y="0.0" z="0.0"/><position x="100.0" y="0.0" z="0.0"/></waypoints>
    <scenarios><scenario name="{stype}_1" type="{stype}"><trigger_point x="1" y="0" z="0" yaw="0"/></scenario></scenarios>
  </route>"""


def _routes_file(tmp_path, pairs, name="routes.xml"):
    path = tmp_path / name
    path.write_text("<routes>\n" + "\n".join(ROUTE_XML.format(rid=r, stype=t) for r, t in pairs) + "\n</routes>\n")
    return path


def _metrics_json(tmp_path, *argv):
    out = tmp_path / "m.json"
    assert cli_main(["metrics", *map(str, argv), "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_formats_are_recognised():
    from carla_eval.result_formats import normalise_results

    assert normalise_results(json.loads(json.dumps(LB20_CHECKPOINT))).format == FORMAT_LEADERBOARD
    b2d = normalise_results(json.loads(json.dumps(B2D_CHECKPOINT)))
    assert b2d.format == FORMAT_BENCH2DRIVE and b2d.total == 3
    assert [r["weather_id"] for r in b2d.data["_checkpoint"]["records"]] == [15, 3, None]
    merged = normalise_results(json.loads(json.dumps(B2D_MERGED)))
    assert merged.format == FORMAT_B2D_MERGED
    assert [r["index"] for r in merged.data["_checkpoint"]["records"]] == [0, 1, 2]
    assert scenario_type_of_name("ParkedObstacle_1") == "ParkedObstacle"
    assert scenario_type_of_name("T_Junction") == "T_Junction" and scenario_type_of_name(None) == ""


def test_leaderboard_checkpoint_reproduces_the_statistics_manager(tmp_path):
    path = tmp_path / "lb.json"
    path.write_text(json.dumps(LB20_CHECKPOINT, indent=4))
    routes = _routes_file(tmp_path, [("0", "ParkedObstacle"), ("1", "HardBreakRoute"), ("2", "YieldToEmergencyVehicle")])
    m = _metrics_json(tmp_path, path, "--routes", routes)
    g = LB20_CHECKPOINT["_checkpoint"]["global_record"]["scores_mean"]
    assert abs(m["driving_score"] - g["score_composed"]) < 0.01
    assert abs(m["route_completion"] - g["score_route"]) < 0.01
    assert abs(m["infraction_penalty"] - g["score_penalty"]) < 0.01
    # LB 2.0 writes no scenario_name: each route is in its ability through the route file's type
    assert {k: v["n_routes"] for k, v in m["abilities"].items()} == {
        "Merging": 0, "Overtaking": 1, "Emergency_Brake": 1, "Give_Way": 1, "Traffic_Signs": 0}
    assert m["n_success"] == 0 and m["complete"]
    # a route file with a fourth route: the leaderboard's denominator grows, the route is missing
    routes4 = _routes_file(tmp_path, [("0", "ParkedObstacle"), ("1", "HardBreakRoute"), ("2", "YieldToEmergencyVehicle"),
                                      ("3", "Accident")], "routes4.xml")
    m4 = _metrics_json(tmp_path, path, "--routes", routes4)
    assert m4["missing"] == ["RouteScenario_3_rep0"]
    assert abs(m4["driving_score"] - 3 * g["score_composed"] / 4) < 0.01


def test_leaderboard_checkpoint_in_progress_counts_its_progress_total(tmp_path):
    data = json.loads(json.dumps(LB20_CHECKPOINT))
    data["_checkpoint"]["progress"] = [3, 5]
    data["_checkpoint"]["global_record"] = {}
    data["entry_status"] = "Started"
    path = tmp_path / "lb.json"
    path.write_text(json.dumps(data))
    m = _metrics_json(tmp_path, path)
    assert m["n_expected"] == 5 and not m["complete"]
    assert abs(m["driving_score"] - (59.8686 + 43.674587 + 80.5) / 5) < 0.01


def test_bench2drive_checkpoint_and_merged_file(tmp_path):
    ck = tmp_path / "eval_0.json"
    ck.write_text(json.dumps(B2D_CHECKPOINT, indent=4))
    save = tmp_path / "save_path"  # Bench2Drive's SAVE_PATH/<save_name>/metric_info.json
    for rec in B2D_RECORDS:
        (save / rec["save_name"]).mkdir(parents=True)
        info = {str(i): {"acceleration": [0.2, 0.0, 0.0], "angular_velocity": [0.0, 0.0, 0.0],
                         "forward_vector": [1.0, 0.0, 0.0], "right_vector": [0.0, 1.0, 0.0],
                         "location": [0.1 * i, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0]} for i in range(40)}
        (save / rec["save_name"] / "metric_info.json").write_text(json.dumps(info))
    m = _metrics_json(tmp_path, ck, "--metric-info", save)
    g = B2D_CHECKPOINT["_checkpoint"]["global_record"]["scores_mean"]
    assert abs(m["driving_score"] - g["score_composed"]) < 0.01 and abs(m["route_completion"] - g["score_route"]) < 0.01
    # names map to types: ParkingCutIn -> Emergency_Brake, ParkedObstacle + HazardAtSideLane -> Overtaking
    ab = m["abilities"]
    assert ab["Overtaking"]["n_routes"] == 2 and ab["Overtaking"]["n_success"] == 1
    assert ab["Emergency_Brake"]["n_routes"] == 1 and ab["Emergency_Brake"]["n_success"] == 0
    assert m["comfort_routes"] == 3 and m["comfort"] == pytest.approx(100.0)
    assert m["efficiency"] == pytest.approx(70.5)
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps(B2D_MERGED, indent=4))
    mm = _metrics_json(tmp_path, merged, "--metric-info", save)
    assert abs(mm["driving_score"] - g["score_composed"]) < 0.01 and mm["comfort_routes"] == 3
    routes = _routes_file(tmp_path, [("1711", "ParkingCutIn"), ("1773", "ParkedObstacle"), ("1790", "HazardAtSideLane"),
                                     ("1711_extra", "Accident")])
    with_routes = _metrics_json(tmp_path, merged, "--routes", routes)
    assert with_routes["missing"] == ["RouteScenario_1711_extra_rep0"]
    assert with_routes["abilities"]["Overtaking"]["n_routes"] == 3 and with_routes["abilities"]["Overtaking"]["n_missing"] == 1


def test_metric_info_dir_must_exist(tmp_path):
    ck = tmp_path / "eval_0.json"
    ck.write_text(json.dumps(B2D_CHECKPOINT))
    with pytest.raises(Exception, match="no such folder"):
        merge_runs([ck], metric_info_dirs=[tmp_path / "nope"])
    assert load_results_any(ck).total == 3

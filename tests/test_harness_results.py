"""Results file: leaderboard records, global record, schema, and refusal of broken files."""

import json
import math

import numpy as np
import pytest

from carla_eval import scoring
from carla_eval.backend import RouteOutcome, RouteTrace
from carla_eval.results import (
    GLOBAL_LABELS,
    ResultsFileError,
    ResultsStore,
    entry_status,
    failure_record,
    global_record,
    global_values,
    read_results_file,
    record_from_outcome,
    sensor_icons,
    validate_results,
)
from carla_eval.routes import RouteConfig, ScenarioConfig


def _route(rid: str, length: float = 100.0, scenario: str = "HardBrake") -> RouteConfig:
    sc = (ScenarioConfig(f"{scenario}_1", scenario, (0.0, 0.0, 0.0, 0.0)),) if scenario else ()
    return RouteConfig(int(rid), rid, "highway", ((0.0, 0.0, 0.0), (length, 0.0, 0.0)), sc)


def _outcome(route, status, rc, infractions, length, rep=0):
    inf = scoring.empty_infractions()
    inf.update(infractions)
    return RouteOutcome(
        route=route, repetition=rep, status=status, infractions=inf, scores=scoring.route_scores(rc, inf),
        route_length=length, duration_game=12.5, duration_system=3.25, scenario_name=route.scenario_type,
        town_name=route.town, ability="Emergency_Brake", save_name=f"{route.record_id(rep)}_x",
        trace=RouteTrace(0, np.zeros((0, 3)), np.zeros((0, 4))),
    )


def _two_records():
    a = _outcome(_route("0", 1000.0), "Completed", 100.0,
                 {"collisions_vehicle": [scoring.msg_collision("vehicle.car", 3, 1.0, 2.0)]}, 1000.0)
    b = _outcome(_route("1", 500.0), scoring.STATUS_BLOCKED, 50.0,
                 {"outside_route_lanes": [scoring.msg_outside_lanes(20.0, 4.0)], "vehicle_blocked": [scoring.msg_blocked(1, 2)]},
                 500.0)
    return record_from_outcome(a, 0, seed=11, attempts=1), record_from_outcome(b, 1, seed=12, attempts=2)


def test_record_has_the_leaderboard_layout_and_scores():
    rec, _ = _two_records()
    assert rec["route_id"] == "RouteScenario_0_rep0"
    assert list(rec["infractions"]) == list(scoring.INFRACTION_KEYS)
    assert rec["num_infractions"] == 1
    assert rec["scores"] == {"score_route": 100.0, "score_penalty": 0.6, "score_composed": 60.0}
    assert rec["meta"] == {"route_length": 1000.0, "duration_game": 12.5, "duration_system": 3.25}
    for key in ("save_name", "scenario_name", "town_name", "weather_id"):
        assert key in rec
    assert rec["seed"] == 11 and rec["attempts"] == 1


def test_record_rescored_with_the_2_1_formula():
    route = _route("5")
    two = [scoring.msg_collision("vehicle.car", i, 0, 0) for i in range(2)]
    out = _outcome(route, "Completed", 100.0, {"collisions_vehicle": two}, 100.0)
    r20 = record_from_outcome(out, 0, penalty_formula="2.0", seed=0, attempts=1)
    r21 = record_from_outcome(out, 0, penalty_formula="2.1", seed=0, attempts=1)
    assert r20["scores"]["score_penalty"] == pytest.approx(0.36)
    w = 1 / 0.6 - 1  # one vehicle collision's weight
    assert r21["scores"]["score_penalty"] == pytest.approx(1 / (1 + 2 * w), abs=1e-6)


def test_record_refuses_unknown_infraction_keys():
    out = _outcome(_route("0"), "Completed", 100.0, {}, 100.0)
    out.infractions["collisions_bicycle"] = ["x"]
    with pytest.raises(ValueError, match="collisions_bicycle"):
        record_from_outcome(out, 0, seed=0, attempts=1)


def test_global_record_against_hand_computed_values():
    a, b = _two_records()
    g = global_record([a, b], total=3)  # the third route is missing: counts 0 in the means
    assert g["index"] == -1 and g["route_id"] == -1
    assert g["scores_mean"]["score_composed"] == pytest.approx((60.0 + 48.0) / 3)
    assert g["scores_mean"]["score_route"] == pytest.approx(50.0)
    assert g["scores_mean"]["score_penalty"] == pytest.approx((0.6 + 0.96) / 3)
    assert g["scores_std_dev"]["score_composed"] == pytest.approx(math.sqrt(((60 - 36) ** 2 + (48 - 36) ** 2) / 2), abs=1e-3)
    km = 1.0 * 1.0 + 0.5 * 0.5
    assert g["infractions"]["collisions_vehicle"] == pytest.approx(1 / km, abs=1e-3)
    assert g["infractions"]["vehicle_blocked"] == pytest.approx(1 / km, abs=1e-3)
    assert g["infractions"]["outside_route_lanes"] == pytest.approx(0.02)  # km outside lanes, not per km
    assert g["status"] == "Failed"
    assert g["meta"]["exceptions"] == [["RouteScenario_1_rep0", 1, scoring.STATUS_BLOCKED]]
    assert g["meta"]["total_length"] == pytest.approx(1500.0)
    values = global_values(g)
    assert len(values) == len(GLOBAL_LABELS) == 15
    assert all(isinstance(v, str) for v in values)
    assert float(values[0]) == pytest.approx(36.0)
    assert float(values[4]) == pytest.approx(0.8)  # "Collisions with vehicles"


def test_entry_status_follows_the_leaderboard():
    a, b = _two_records()
    assert entry_status([a, b], 3) == "Started"
    assert entry_status([a, b], 2) == "Finished"
    crash = failure_record(_route("2"), 0, 2, status=scoring.STATUS_SIM_CRASH, error="boom", seed=0, attempts=3)
    assert entry_status([a, b, crash], 3) == "Crashed"
    assert crash["scores"]["score_composed"] == 0.0 and crash["error"] == "boom"


def test_sensor_icons():
    assert sensor_icons([{"type": "sensor.camera.rgb", "id": "a"}, {"type": "sensor.speedometer", "id": "s"}]) == [
        "carla_camera", "carla_speedometer"]


def test_store_round_trip_validates_and_refuses_duplicates(tmp_path):
    a, b = _two_records()
    path = tmp_path / "results.json"
    store = ResultsStore.create(path, ["RouteScenario_0_rep0", "RouteScenario_1_rep0", "RouteScenario_2_rep0"])
    store.add(b)
    store.add(a)
    with pytest.raises(ValueError, match="already recorded"):
        store.add(a)
    store.save()
    data = read_results_file(path)  # schema-validated
    assert [r["route_id"] for r in data["_checkpoint"]["records"]] == ["RouteScenario_0_rep0", "RouteScenario_1_rep0"]
    assert data["_checkpoint"]["progress"] == [2, 3]
    assert data["entry_status"] == "Started" and data["eligible"] is False
    again = ResultsStore.load(path, store.expected)
    assert again.pending() == ["RouteScenario_2_rep0"]
    with pytest.raises(ResultsFileError, match="not part of this run"):
        ResultsStore.load(path, ["RouteScenario_0_rep0"])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b'{"_checkpoint": {"global_record": {}, "progress": [1, 2], "rec', "not valid JSON"),
        (b'{"_checkpoint": {}}', "schema"),
    ],
)
def test_broken_results_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "results.json"
    path.write_bytes(content)
    with pytest.raises(ResultsFileError, match=message):
        read_results_file(path)


def test_schema_rejects_a_bad_record(tmp_path):
    a, b = _two_records()
    store = ResultsStore.create(tmp_path / "r.json", [a["route_id"], b["route_id"]])
    store.add(a)
    store.add(b)
    data = store.to_json()
    validate_results(data)
    bad = json.loads(json.dumps(data))
    del bad["_checkpoint"]["records"][0]["infractions"]["route_timeout"]
    with pytest.raises(ResultsFileError, match="route_timeout"):
        validate_results(bad)
    bad = json.loads(json.dumps(data))
    bad["_checkpoint"]["records"][1]["status"] = "Mostly fine"
    with pytest.raises(ResultsFileError, match="status"):
        validate_results(bad)


# ----------------------------------------------------------------- weather, export for Bench2Drive
WEATHER_TABLE = """<weathers>
  <case weather_id="0"><weather route_percentage="0" cloudiness="5.0" precipitation="0.0"/></case>
  <case weather_id="15"><weather route_percentage="0" cloudiness="100.0" precipitation="50.0"/>
                        <weather route_percentage="100" cloudiness="100.0" precipitation="50.0"/></case>
</weathers>"""


def test_weather_comes_from_the_route_file(tmp_path):
    from carla_eval.weather import read_weather_table, route_weather_id

    table_path = tmp_path / "weather.xml"
    table_path.write_text(WEATHER_TABLE)
    table = read_weather_table(table_path)
    wet = RouteConfig(0, "0", "Town12", ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
                      weathers=({"route_percentage": "0", "cloudiness": "100", "precipitation": "50.0"},))
    assert route_weather_id(wet, table) == 15  # numbers compared as numbers
    assert route_weather_id(wet) is None  # no table, no attribute: unknown, not 0
    tagged = RouteConfig(0, "0", "Town12", ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)), attributes={"weather_id": "7"})
    assert route_weather_id(tagged, table) == 7
    out = _outcome(_route("3"), "Perfect", 100.0, {}, 100.0)
    assert record_from_outcome(out, 0, seed=1, attempts=1)["weather_id"] is None
    out.weather_id = 15  # Bench2Drive's evaluator named it
    rec = record_from_outcome(out, 0, seed=1, attempts=1)
    assert rec["weather_id"] == 15
    validate_results({"_checkpoint": {"global_record": {}, "progress": [1, 1], "records": [dict(rec, weather_id="15")]},
                      "entry_status": "Finished", "eligible": True, "sensors": [], "values": [], "labels": []})


def test_export_folder_holds_only_what_bench2drives_tools_read(tmp_path):
    from carla_eval.cli import main as cli_main

    run = tmp_path / "run"
    run.mkdir()
    a, b = _two_records()
    store = ResultsStore.create(run / "results.json", [a["route_id"], b["route_id"]])
    store.add(a)
    store.add(b)
    store.save()
    (run / "run_manifest.json").write_text("{}")
    (run / "metrics.json").write_text("{}")
    info = run / "metric_info" / a["save_name"] / "metric_info.json"
    info.parent.mkdir(parents=True)
    info.write_text('{"0": {}}')
    out = tmp_path / "b2d"
    assert cli_main(["export", str(run), "--out", str(out)]) == 0
    jsons = sorted(out.glob("*.json"))  # what tools/merge_route_json.py globs
    assert [p.name for p in jsons] == ["run.json"]
    for p in jsons:
        assert "records" in json.loads(p.read_text())["_checkpoint"]
    assert (out / a["save_name"] / "metric_info.json").is_file()  # efficiency tool: -m DIR
    assert cli_main(["export", str(run), "--out", str(out)]) == 2  # would mix with the old files

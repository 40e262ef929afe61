"""`carla-eval compare`: models side by side over seeds, from real run folders of the scripted backend."""

import json

import pytest

from carla_eval.cli import main
from carla_eval.compare import CompareError, compare, markdown_table, per_route_table
from carla_eval.scripted_backend import scripted_routes_xml

CLEAN = [{"id": str(i)} for i in range(3)] + [{"id": "3"}]
CRASHY = [{"id": "0"}, {"id": "1", "params": {"collision_tick": 20}}, {"id": "2"}, {"id": "3"}]


def _run(tmp, routes, out, seed, *extra):
    assert main(["run", "--backend", "scripted", "--routes", str(tmp / routes), "--agent", "expert", "--out",
                 str(tmp / out), "--seed", str(seed), "--video", "none", "--no-progress", *extra]) == 0
    return tmp / out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    (tmp / "clean.xml").write_text(scripted_routes_xml(CLEAN))
    (tmp / "crashy.xml").write_text(scripted_routes_xml(CRASHY))
    return {
        "clean": [_run(tmp, "clean.xml", f"clean_s{s}", s) for s in (0, 1)],
        "crashy": [_run(tmp, "crashy.xml", f"crashy_s{s}", s) for s in (0, 1)],
        "subset": _run(tmp, "clean.xml", "subset_s2", 2, "--routes-subset", "0-1"),
        "tmp": tmp,
    }


def test_models_over_seeds_with_abilities_and_routes(runs, capsys):
    result = compare([("clean", runs["clean"]), ("crashy", runs["crashy"])])
    crashy = result["crashy"]
    assert crashy["ds"] == {"0": 90.0, "1": 90.0}  # one collision (x 0.6) on one of four routes
    assert crashy["ds_mean"] == 90.0 and crashy["ds_sd"] == 0.0
    assert crashy["per_seed"]["0"]["route_ds"]["RouteScenario_1_rep0"] == 60.0
    assert crashy["per_seed"]["1"]["abilities"] == {"Emergency_Brake": [3, 4]}
    assert result["clean"]["ds_mean"] == 100.0 and result["clean"]["runs"]["1"] == str(runs["clean"][1])

    lines = markdown_table([([name], r) for name, r in result.items()]).splitlines()
    assert lines[0] == "| model | DS per seed | DS mean ± sd | RC % | Emergency_Brake |"
    assert lines[3] == "| crashy | 90.00 / 90.00 | 90.00 ± 0.00 | 100.0 | 6/8 |"
    routes = per_route_table(result).splitlines()
    assert routes[0] == "| route | clean | crashy |"
    assert "| RouteScenario_1_rep0 | 100.0 / 100.0 (100.0) | 60.0 / 60.0 (60.0) |" in routes

    out = runs["tmp"] / "compare.json"
    args = ["compare", "--model", "clean", *map(str, runs["clean"]), "--model", "crashy", *map(str, runs["crashy"])]
    assert main(args + ["--per-route", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| crashy | 90.00 / 90.00 |" in printed and "| RouteScenario_1_rep0 |" in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))


def test_what_cannot_be_compared_is_refused_by_name(runs, capsys):
    with pytest.raises(CompareError, match="does not cover the routes.*missing .*RouteScenario_2_rep0"):
        compare([("clean", runs["clean"]), ("subset", [runs["subset"]])])
    with pytest.raises(CompareError, match="seed 0 in both"):
        compare([("clean", [runs["clean"][0], runs["clean"][0]])])
    with pytest.raises(CompareError, match="named twice"):
        compare([("a", runs["clean"]), ("a", runs["crashy"])])
    with pytest.raises(CompareError, match="nowhere: no run folder"):
        compare([("a", [runs["tmp"] / "nowhere"])])
    assert main(["compare", "--model", "clean"]) == 2
    assert "--model clean names no run folder" in capsys.readouterr().err


def test_an_unfinished_run_is_refused_with_its_missing_routes(runs, tmp_path):
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(runs["clean"][0], cut)
    results = json.loads((cut / "results.json").read_text())
    results["_checkpoint"]["records"] = [r for r in results["_checkpoint"]["records"]
                                         if r["route_id"] != "RouteScenario_3_rep0"]
    (cut / "results.json").write_text(json.dumps(results))
    with pytest.raises(CompareError, match=r"cut: unfinished, 1 route\(s\) not recorded \(RouteScenario_3_rep0\)"):
        compare([("clean", [cut])])

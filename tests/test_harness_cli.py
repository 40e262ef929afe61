"""The carla-eval CLI: split runs merged by `metrics`, missing routes shouted, exit codes."""

import json

import pytest

from carla_eval.cli import build_parser, main
from carla_eval.scripted_backend import scripted_routes_xml

ROUTES = [{"id": str(i), "params": {"collision_tick": 20} if i == 2 else {}} for i in range(4)] + [
    {"id": "4", "type": "HighwayMerge"}]  # a sandbox scenario type (ability Merging)


def _run(tmp_path, out, *extra):
    return main(["run", "--backend", "scripted", "--routes", str(tmp_path / "routes.xml"), "--agent", "expert",
                 "--out", str(tmp_path / out), "--video", "none", "--no-progress", *extra])


@pytest.fixture(scope="module")
def split_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "routes.xml").write_text(scripted_routes_xml(ROUTES))
    assert _run(tmp, "a", "--routes-subset", "0-1") == 0
    assert _run(tmp, "b", "--routes-subset", "2-4", "--workers", "2") == 0
    assert _run(tmp, "c", "--routes-subset", "1,3") == 0
    return tmp


def test_split_runs_merge_into_complete_metrics(split_runs, capsys):
    out = split_runs / "merged.json"
    assert main(["metrics", str(split_runs / "a"), str(split_runs / "b"), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["n_expected"] == 5 and m["n_recorded"] == 5 and m["complete"] is True
    assert m["driving_score"] == pytest.approx((4 * 100.0 + 60.0) / 5)
    assert "INCOMPLETE" not in capsys.readouterr().out


def test_one_split_alone_is_incomplete_and_says_so(split_runs, capsys):
    out = split_runs / "a_only.json"
    assert main(["metrics", str(split_runs / "a"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "INCOMPLETE" in text and "RouteScenario_4_rep0" in text
    m = json.loads(out.read_text())
    assert m["missing"] == ["RouteScenario_2_rep0", "RouteScenario_3_rep0", "RouteScenario_4_rep0"]
    assert m["driving_score"] == pytest.approx(200.0 / 5)  # divided by the whole route file
    assert m["abilities"]["Merging"] == {"success_rate": 0.0, "n_success": 0, "n_routes": 1, "n_missing": 1}


def test_duplicates_across_runs_are_an_error(split_runs, capsys):
    assert main(["metrics", str(split_runs / "a"), str(split_runs / "c")]) == 2
    assert "RouteScenario_1_rep0" in capsys.readouterr().out


def test_metrics_with_the_2_1_formula_and_an_explicit_route_file(split_runs):
    out = split_runs / "m21.json"
    assert main(["metrics", str(split_runs / "a"), str(split_runs / "b"), "--routes", str(split_runs / "routes.xml"),
                 "--penalty-formula", "2.1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["penalty_formula"] == "2.1"


def test_run_refusal_exit_code(split_runs, capsys):
    assert _run(split_runs, "a") == 2  # exists, no --resume
    assert "refusing to overwrite" in capsys.readouterr().out


def test_parser_knows_the_documented_options():
    args = build_parser().parse_args([
        "run", "--backend", "sandbox", "--routes", "r.xml", "--agent", "a.py", "--agent-config", "c.yaml", "--out", "o",
        "--workers", "3", "--ray-address", "local", "--routes-subset", "0-4,7", "--repetitions", "2", "--resume",
        "--seed", "4", "--video", "all", "--retries", "1", "--penalty-formula", "2.1", "--backend-option", "x=1",
    ])
    assert (args.workers, args.ray_address, args.repetitions, args.video, args.penalty_formula) == (3, "local", 2, "all", "2.1")
    assert args.backend_option == [("x", 1)]


def test_demo_names_what_is_missing(tmp_path, monkeypatch, capsys):
    from carla_eval import demo

    monkeypatch.setattr(demo, "REQUIRED", {**demo.REQUIRED, "agent config": tmp_path / "ik-tiny" / "agent.yaml"})
    assert demo.main([]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and str(tmp_path / "ik-tiny" / "agent.yaml") in err

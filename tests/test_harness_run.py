"""End-to-end runs on the scripted backend: parallel workers, crashes, retries, refusals, videos."""

import io
import json

import pytest
from rich.console import Console

from carla_eval import scoring
from carla_eval.results import read_results_file
from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig
from carla_eval.runner import RunError, run
from carla_eval.scripted_backend import scripted_routes_xml
from carla_eval.video import probe_video

ROUTES = [
    {"id": "0", "type": "CutIn"},
    {"id": "1", "type": "HardBrake", "params": {"fault": "kill_once", "fault_tick": 5}},
    {"id": "2", "type": "HardBrake", "params": {"collision_tick": 30}},
    {"id": "3", "waypoints": [(0.0, 0.0)]},  # malformed: one waypoint
    {"id": "4", "type": "YieldAtJunction", "params": {"blocked_at_pct": 50}},
    {"id": "5", "type": "StopSign", "params": {"min_speed_pct": 90}},
]


def _config(tmp_path, routes, out="run", workers=2, agent="expert", **kw):
    rf = tmp_path / "routes.xml"
    if not rf.exists():
        rf.write_text(scripted_routes_xml(routes))
    opts = {"marker_dir": str(tmp_path / "markers")}
    return RunConfig(
        backend=BackendSpec("scripted", opts), routes_file=rf, agent=AgentSpec(agent), out_dir=tmp_path / out,
        workers=workers, show_progress=False, **kw,
    )


def _run(config):
    return run(config, Console(file=io.StringIO(), width=120))


def test_parallel_run_survives_a_killed_worker_and_a_bad_route(tmp_path):
    summary = _run(_config(tmp_path, ROUTES))
    out = summary.run_dir
    data = read_results_file(out / "results.json")
    recs = {r["route_id"]: r for r in data["_checkpoint"]["records"]}
    assert sorted(recs) == sorted(f"RouteScenario_{r['id']}_rep0" for r in ROUTES)  # each route exactly once
    assert [r["index"] for r in data["_checkpoint"]["records"]] == list(range(len(ROUTES)))
    assert data["_checkpoint"]["progress"] == [6, 6]
    killed = recs["RouteScenario_1_rep0"]
    assert killed["status"] == "Perfect" and killed["attempts"] == 2
    assert (tmp_path / "markers" / "RouteScenario_1_rep0.kill_once").exists()
    bad = recs["RouteScenario_3_rep0"]
    assert bad["status"] == scoring.STATUS_SIM_CRASH and "invalid route" in bad["error"]
    assert recs["RouteScenario_2_rep0"]["status"] == "Completed"
    assert recs["RouteScenario_2_rep0"]["scores"]["score_penalty"] == pytest.approx(0.6)
    assert recs["RouteScenario_4_rep0"]["status"] == scoring.STATUS_BLOCKED
    assert data["entry_status"] == "Crashed"  # the malformed route counts as a crash, like the leaderboard
    assert data["sensors"] == ["carla_camera", "carla_speedometer"]
    log = (out / "run.log").read_text()
    assert "killed by SIGKILL" in log
    for name in (r["save_name"] for r in recs.values() if r["route_id"] != "RouteScenario_3_rep0"):
        assert (out / "metric_info" / name / "metric_info.json").is_file()
        assert (out / "traces" / f"{name}.npz").is_file()
    videos = sorted(p.name for p in (out / "videos").glob("*.mp4"))
    assert videos == sorted([recs["RouteScenario_2_rep0"]["save_name"] + ".mp4", recs["RouteScenario_4_rep0"]["save_name"] + ".mp4"])
    for v in (out / "videos").glob("*.mp4"):
        info = probe_video(v)
        assert info.codec == "h264" and 0 < info.frames <= 100
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_recorded"] == 6 and metrics["complete"] is True
    assert metrics["driving_score"] == pytest.approx(sum(r["scores"]["score_composed"] for r in recs.values()) / 6)
    assert not list(out.rglob(".*.tmp"))  # no leftovers of atomic writes
    # resuming a finished run runs nothing and keeps the records
    before = (out / "results.json").read_bytes()
    again = _run(_config(tmp_path, ROUTES, resume=True))
    assert again.recorded == 6
    assert json.loads(before)["_checkpoint"]["records"] == read_results_file(out / "results.json")["_checkpoint"]["records"]


def test_simulator_exceptions_exhaust_the_retries(tmp_path):
    routes = [{"id": "0", "params": {"fault": "raise_always", "fault_tick": 3}}, {"id": "1"}]
    summary = _run(_config(tmp_path, routes, workers=1, retries=1, video=VideoConfig(mode="none")))
    recs = {r["route_id"]: r for r in read_results_file(summary.results_path)["_checkpoint"]["records"]}
    crashed = recs["RouteScenario_0_rep0"]
    assert crashed["status"] == scoring.STATUS_SIM_CRASH
    assert crashed["attempts"] == 2
    assert "scripted simulator failure" in crashed["error"]
    assert recs["RouteScenario_1_rep0"]["status"] == "Perfect"
    assert not (summary.run_dir / "videos").exists()


AGENT_FILE = '''
from carla_eval.vehicle_control import make_control

def get_entry_point():
    return "StraightAgent"

class StraightAgent:
    def __init__(self, host, port, debug):
        self.args = (host, port, debug)
    def set_global_plan(self, gps, world):
        self.plan = world
    def setup(self, path_to_conf_file):
        self.conf = path_to_conf_file
    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "speed"}]
    def run_step(self, input_data, timestamp):
        v = input_data["speed"][1]["speed"]
        return make_control(0.6 if v < 8 else 0.0, 0.0, 0.0)
    def __call__(self, input_data, timestamp):
        return self.run_step(input_data, timestamp)
    def destroy(self):
        pass
'''


def test_agent_file_is_loaded_like_the_leaderboard_and_without_frames_there_is_no_video(tmp_path):
    agent_dir = tmp_path / "agents"
    agent_dir.mkdir()
    (agent_dir / "straight_agent.py").write_text(AGENT_FILE)
    routes = [{"id": "7", "params": {"collision_tick": 20}}]
    summary = _run(_config(tmp_path, routes, workers=1, agent=str(agent_dir / "straight_agent.py")))
    rec = read_results_file(summary.results_path)["_checkpoint"]["records"][0]
    assert rec["status"] == "Completed" and rec["scores"]["score_composed"] == pytest.approx(60.0)
    assert not (summary.run_dir / "videos").exists()
    assert "has no get_debug_frame()" in (summary.run_dir / "run.log").read_text()


def test_an_agent_that_cannot_be_loaded_is_recorded_with_its_error(tmp_path):
    bad = tmp_path / "broken_agent.py"
    bad.write_text("import a_module_that_does_not_exist\n")
    summary = _run(_config(tmp_path, [{"id": "0"}], workers=1, agent=str(bad), retries=1))
    rec = read_results_file(summary.results_path)["_checkpoint"]["records"][0]
    assert rec["status"] == scoring.STATUS_AGENT_SETUP
    assert "a_module_that_does_not_exist" in rec["error"] and rec["attempts"] == 2


def test_existing_run_folders_are_never_overwritten(tmp_path):
    cfg = _config(tmp_path, [{"id": "0"}, {"id": "1"}], workers=1, video=VideoConfig(mode="none"))
    cfg.out_dir.mkdir()
    (cfg.out_dir / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        _run(cfg)
    assert (cfg.out_dir / "notes.txt").read_text() == "mine"
    with pytest.raises(RunError, match="nothing to resume|not a carla-eval run"):
        _run(_config(tmp_path, [], out="elsewhere", workers=1, resume=True))


def test_resume_refuses_a_changed_route_file_and_a_broken_results_file(tmp_path):
    routes = [{"id": "0"}, {"id": "1"}]
    summary = _run(_config(tmp_path, routes, workers=1, video=VideoConfig(mode="none")))
    rf = tmp_path / "routes.xml"
    rf.write_text(scripted_routes_xml(routes + [{"id": "2"}]))
    with pytest.raises(RunError, match="route file changed"):
        _run(_config(tmp_path, routes, workers=1, resume=True))
    rf.write_text(scripted_routes_xml(routes))  # back to the original bytes
    results = summary.results_path
    half = results.read_bytes()[: len(results.read_bytes()) // 2]
    results.write_bytes(half)
    with pytest.raises(RunError, match="not valid JSON"):
        _run(_config(tmp_path, routes, workers=1, resume=True))
    assert results.read_bytes() == half  # nothing overwritten
    with pytest.raises(RunError, match="seed"):
        _run(_config(tmp_path, routes, workers=1, resume=True, seed=5))


def test_a_route_over_its_time_limit_is_stopped_and_recorded(tmp_path):
    routes = [{"id": "0", "waypoints": [(0.0, 0.0), (400.0, 0.0)]}, {"id": "1", "waypoints": [(0.0, 0.0), (5.0, 0.0)]}]
    cfg = _config(tmp_path, routes, workers=1, retries=0, route_timeout_s=1.5, video=VideoConfig(mode="none"))
    cfg = RunConfig(**{**cfg.__dict__, "backend": BackendSpec("scripted", {"tick_sleep_s": 0.01})})
    summary = _run(cfg)
    recs = {r["route_id"]: r for r in read_results_file(summary.results_path)["_checkpoint"]["records"]}
    slow = recs["RouteScenario_0_rep0"]
    assert slow["status"] == scoring.STATUS_SIM_CRASH and "time limit of 1.5 s" in slow["error"]
    assert recs["RouteScenario_1_rep0"]["status"] == "Perfect"  # the replacement worker ran the next route


def test_a_backend_that_cannot_start_stops_the_run_with_its_reason(tmp_path):
    cfg = _config(tmp_path, [{"id": "0"}], workers=1)
    cfg = RunConfig(**{**cfg.__dict__, "backend": BackendSpec("scripted", {"max_ticks": "many"})})
    with pytest.raises(RunError, match="failed to start.*'many'"):  # the constructor's reason
        _run(cfg)
    assert not cfg.out_dir.exists()  # refused before the run folder was written
    with pytest.raises(RunError, match="unknown backend"):
        _run(RunConfig(**{**cfg.__dict__, "backend": BackendSpec("nonsense"), "out_dir": tmp_path / "x"}))


def test_route_seeds_are_stable_and_honour_the_route_file():
    from carla_eval.run_config import route_file_seed, route_seed

    assert route_seed(0, "3", 0) == route_seed(0, "3", 0)
    assert len({route_seed(0, "3", 0), route_seed(0, "3", 1), route_seed(1, "3", 0), route_seed(0, "4", 0)}) == 4
    assert route_file_seed({"seed": "20260524"}) == 20260524 and route_file_seed({"seed": "x"}) is None
    assert route_seed(0, "3", 0, 20260524) == 20260524  # the route's own seed at --seed 0, repetition 0
    assert route_seed(0, "3", 1, 20260524) != 20260524

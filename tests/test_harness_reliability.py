"""Fault injection on the harness: hung agents, code changes on resume, unwritable disks, an
unreachable Ray cluster, non-finite controls, bad inputs, concurrent runs, invalid routes and
inconsistent results files. Every route must still be recorded exactly once (or not at all)."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from carla_eval import manifest as manifest_module
from carla_eval import scoring
from carla_eval.results import read_results_file
from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig, WatchdogConfig
from carla_eval.runner import RunError, run
from carla_eval.scripted_backend import scripted_routes_xml

REPO = Path(__file__).resolve().parent.parent

AGENT_TEMPLATE = '''
import math
import time

from carla_eval.vehicle_control import make_control

def get_entry_point():
    return "FaultyAgent"

class FaultyAgent:
    def __init__(self, host, port, debug):
        self.tick = 0
    def set_global_plan(self, gps, world):
        pass
    def setup(self, path_to_conf_file):
        pass
    def sensors(self):
        return [{{"type": "sensor.speedometer", "id": "speed"}}]
    def run_step(self, input_data, timestamp):
        self.tick += 1
        if self.tick > {fault_tick}:
            {fault}
        v = input_data["speed"][1]["speed"]
        return make_control(0.6 if v < 8 else 0.0, 0.0, 0.0)
    def __call__(self, input_data, timestamp):
        return self.run_step(input_data, timestamp)
    def destroy(self):
        pass
'''
HANG = "time.sleep(3600)"
NAN = "return make_control(float('nan'), 0.0, 0.0)"


def _agent(tmp_path: Path, name: str, fault: str, fault_tick: int = 5) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(AGENT_TEMPLATE.format(fault=fault, fault_tick=fault_tick))
    return path


def _routes(tmp_path: Path, routes: list[dict], name: str = "routes.xml") -> Path:
    path = tmp_path / name
    path.write_text(scripted_routes_xml(routes))
    return path


def _config(routes: Path, out: Path, agent: str = "expert", **kw) -> RunConfig:
    kw.setdefault("video", VideoConfig(mode="none"))
    kw.setdefault("workers", 1)
    backend = kw.pop("backend", BackendSpec("scripted"))
    return RunConfig(backend, routes, AgentSpec(agent), out, show_progress=False, **kw)


def _run(config: RunConfig):
    return run(config, Console(file=io.StringIO(), width=200))


def _records(path: Path) -> dict[str, dict]:
    return {r["route_id"]: r for r in read_results_file(path)["_checkpoint"]["records"]}


def _cli_args(routes: Path, out: Path, *extra: str, agent: str = "expert") -> list[str]:
    return [sys.executable, "-m", "carla_eval.cli", "run", "--backend", "scripted", "--routes", str(routes),
            "--agent", agent, "--out", str(out), "--workers", "1", "--video", "none", "--no-progress", *extra]


def _cli(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run the CLI in its own process group; a run that overstays ``timeout`` is killed (its group)
    and fails the test."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"carla-eval run still running after {timeout:g} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, "")


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.strip()]


# ----------------------------------------------------------------------- 1. hung agent, watchdogs
def test_a_hung_agent_is_stopped_by_the_agent_watchdog_and_recorded_as_the_leaderboard_does(tmp_path):
    agent = _agent(tmp_path, "hung_agent", HANG)
    routes = _routes(tmp_path, [{"id": "0"}, {"id": "1"}])
    t0 = time.monotonic()
    proc = _cli(_cli_args(routes, tmp_path / "run", "--agent-timeout", "1", agent=str(agent)), timeout=90)
    assert proc.returncode == 0, proc.stdout
    assert time.monotonic() - t0 < 60
    recs = _records(tmp_path / "run" / "results.json")
    assert sorted(recs) == ["RouteScenario_0_rep0", "RouteScenario_1_rep0"]  # each exactly once
    for rec in recs.values():
        # leaderboard-2.0: the agent watchdog's RuntimeError becomes an AgentError -> "Agent crashed"
        assert rec["status"] == scoring.STATUS_AGENT_CRASH
        assert rec["error"].startswith("Agent took longer than 1.0s to send its command")
        assert "time.sleep(3600)" in rec["error"]  # where the agent was stuck
        assert rec["attempts"] == 1  # an agent failure is not retried
    log = (tmp_path / "run" / "run.log").read_text()
    assert "retrying" not in log


def test_an_agent_hung_in_setup_is_recorded_as_not_set_up(tmp_path):
    agent = tmp_path / "slow_setup_agent.py"
    agent.write_text(AGENT_TEMPLATE.format(fault="pass", fault_tick=0).replace(
        "    def setup(self, path_to_conf_file):\n        pass", "    def setup(self, path_to_conf_file):\n        time.sleep(3600)"))
    routes = _routes(tmp_path, [{"id": "0"}])
    summary = _run(_config(routes, tmp_path / "run", agent=str(agent), watchdog=WatchdogConfig(agent_timeout_s=0.5)))
    (rec,) = _records(summary.results_path).values()
    assert rec["status"] == scoring.STATUS_AGENT_SETUP and rec["attempts"] == 1
    assert rec["error"].startswith("Timeout: Agent took longer than 0.5s to setup")


def test_the_default_route_limit_is_derived_from_the_route():
    w = WatchdogConfig()
    # 300 s start-up + (60 s + 600 m / 3 m/s) / 0.1
    assert w.route_limit_s(600.0) == pytest.approx(300.0 + 260.0 / 0.1)
    assert w.route_limit_s(600.0, explicit_s=12.5) == 12.5  # --route-timeout wins
    assert w.route_limit_s(600.0, explicit_s=0.0) is None  # --route-timeout 0 / none: no limit
    assert w.agent_limit_s == 300.0 and WatchdogConfig(agent_timeout_s=0).agent_limit_s is None
    with pytest.raises(ValueError, match="realtime factor"):
        WatchdogConfig(realtime_factor=0)


def test_without_route_timeout_the_derived_limit_stops_a_stalled_route(tmp_path):
    agent = _agent(tmp_path, "hung_agent", HANG)
    routes = _routes(tmp_path, [{"id": "0"}])
    # agent watchdog off, no --route-timeout: only the derived limit 0.5 + (60 + 60/3) / 400 = 0.7 s
    watchdog = WatchdogConfig(startup_s=0.5, realtime_factor=400.0, agent_timeout_s=0.0)
    summary = _run(_config(routes, tmp_path / "run", agent=str(agent), retries=0, watchdog=watchdog))
    (rec,) = _records(summary.results_path).values()
    assert rec["status"] == scoring.STATUS_SIM_CRASH and "time limit of 0.7 s" in rec["error"]


def test_route_timeout_none_on_the_command_line_disables_the_limit():
    from carla_eval.cli import build_parser

    args = build_parser().parse_args(["run", "--routes", "r.xml", "--agent", "expert", "--out", "o", "--route-timeout", "none"])
    assert args.route_timeout == 0.0
    args = build_parser().parse_args(["run", "--routes", "r.xml", "--agent", "expert", "--out", "o"])
    assert args.route_timeout is None and args.agent_timeout == 300.0


# --------------------------------------------------------------------- 2. git revision on resume
def _drop_last_record(results: Path) -> None:
    from carla_eval.results import ResultsStore

    data = read_results_file(results)
    ids = [r["route_id"] for r in data["_checkpoint"]["records"]]
    store = ResultsStore.load(results, ids)
    store.records.pop(ids[-1])
    store.expected = ids
    store.save()


def test_resume_refuses_other_code_unless_allowed_and_then_records_every_revision(tmp_path, monkeypatch):
    routes = _routes(tmp_path, [{"id": "0"}, {"id": "1"}])
    out = tmp_path / "run"
    monkeypatch.setattr(manifest_module, "git_revision", lambda folder: "a" * 40)
    _run(_config(routes, out))
    _drop_last_record(out / "results.json")
    before = (out / "results.json").read_bytes()
    monkeypatch.setattr(manifest_module, "git_revision", lambda folder: "b" * 40)
    with pytest.raises(RunError, match="code changed.*a{40} -> b{40}.*--allow-code-change"):
        _run(_config(routes, out, resume=True))
    assert (out / "results.json").read_bytes() == before  # refused before anything was written
    summary = _run(_config(routes, out, resume=True, allow_code_change=True))
    assert summary.recorded == 2
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["git_revision"] == "a" * 40
    assert manifest["git_revisions"] == ["a" * 40, "b" * 40]
    assert [s["git_revision"] for s in manifest["sessions"]] == ["a" * 40, "b" * 40]
    assert json.loads((out / "metrics.json").read_text())["git_revisions"] == ["a" * 40, "b" * 40]


# ------------------------------------------------------------- 3. read-only and full output disk
@pytest.fixture
def tmpfs(tmp_path):
    """A tmpfs mounted for the test (root only) and unmounted after it; ``make(size, name)``."""
    mounted: list[Path] = []

    def make(size: str, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"this test needs to mount a tmpfs (run as root): mount said {proc.stderr.strip()!r}")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _check_one_line_error(proc: subprocess.CompletedProcess, reason: str) -> str:
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stdout, proc.stdout
    lines = _error_lines(proc.stdout)  # progress lines of recorded routes may come first
    errors = [ln for ln in lines if ln.startswith("carla-eval run:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stdout
    assert errors[0].startswith("carla-eval run: cannot write to the run folder") and reason in errors[0], errors[0]
    return errors[0]


def test_a_full_output_disk_is_one_error_line_with_exit_2_and_intact_results(tmp_path, tmpfs):
    disk = tmpfs("160k")
    routes = _routes(tmp_path, [{"id": str(i), "waypoints": [(0.0, 0.0), (120.0, 0.0)]} for i in range(8)])
    proc = _cli(_cli_args(routes, disk / "run"))
    _check_one_line_error(proc, "No space left on device")
    data = read_results_file(disk / "run" / "results.json")  # still the last complete file
    assert data["_checkpoint"]["progress"][0] < 8
    assert not list((disk / "run").rglob(".*.tmp"))  # no half-written temporaries left


def test_a_read_only_output_disk_is_one_error_line_with_exit_2_and_untouched_files(tmp_path, tmpfs):
    disk = tmpfs("16m")
    routes = _routes(tmp_path, [{"id": "0"}, {"id": "1"}])
    out = disk / "run"
    assert _cli(_cli_args(routes, out)).returncode == 0
    _drop_last_record(out / "results.json")
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    _check_one_line_error(_cli(_cli_args(routes, out, "--resume")), "Read-only file system")
    _check_one_line_error(_cli(_cli_args(routes, disk / "fresh")), "Read-only file system")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


# ---------------------------------------------------------------------- 4. unreachable Ray cluster
def test_an_unreachable_ray_address_fails_fast_and_leaves_no_folder(tmp_path):
    routes = _routes(tmp_path, [{"id": "0"}])
    out = tmp_path / "run"
    t0 = time.monotonic()
    proc = _cli(_cli_args(routes, out, "--ray-address", "127.0.0.1:1"), timeout=90)
    assert proc.returncode == 2, proc.stdout
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in proc.stdout
    assert time.monotonic() - t0 < 60
    assert not out.exists()


def test_the_ray_connect_timeout_bounds_a_silent_address():
    from carla_eval.ray_pool import RayConnectError, connect_ray

    class NeverReturns:
        def init(self, **kwargs):
            time.sleep(30)

    t0 = time.monotonic()
    with pytest.raises(RayConnectError, match="did not finish within 0.5 s"):
        connect_ray(NeverReturns(), "auto", 0.5)
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------------ 5. non-finite controls
def test_non_finite_controls_are_an_agent_error_with_a_message_logged_once(tmp_path):
    agent = _agent(tmp_path, "nan_agent", NAN, fault_tick=10)
    routes = _routes(tmp_path, [{"id": "0"}, {"id": "1"}])
    summary = _run(_config(routes, tmp_path / "run", agent=str(agent)))
    recs = _records(summary.results_path)
    for rec in recs.values():
        assert rec["status"] == scoring.STATUS_AGENT_CRASH
        assert rec["error"] == "the agent returned a non-finite control at tick 10 (throttle=nan, steer=0.0, brake=0.0)"
        assert rec["attempts"] == 1
    log = (summary.run_dir / "run.log").read_text().splitlines()
    for rid in recs:
        assert len([ln for ln in log if rid in ln and "non-finite control" in ln]) == 1


# --------------------------------------------------------------------- 6./7. validation up front
def test_a_yaml_passed_as_agent_is_refused_before_anything_is_written(tmp_path):
    conf = tmp_path / "agent.yaml"
    conf.write_text("preset: tiny\n")
    routes = _routes(tmp_path, [{"id": "0"}])
    proc = _cli(_cli_args(routes, tmp_path / "run", agent=str(conf)))
    assert proc.returncode == 2, proc.stdout
    assert "--agent must be a leaderboard agent .py file" in proc.stdout and "--agent-config" in proc.stdout
    assert not (tmp_path / "run").exists()
    broken = tmp_path / "broken_agent.py"
    broken.write_text("def get_entry_point(:\n")
    with pytest.raises(RunError, match="not valid Python"):
        _run(_config(routes, tmp_path / "run", agent=str(broken)))
    assert not (tmp_path / "run").exists()


def test_a_refused_backend_option_leaves_no_folder_and_the_corrected_command_runs(tmp_path):
    routes = _routes(tmp_path, [{"id": "0"}])
    out = tmp_path / "run"
    proc = _cli(_cli_args(routes, out, "--backend-option", "tick_sleep=0.01"))
    assert proc.returncode == 2, proc.stdout
    assert "tick_sleep" in proc.stdout and "tick_sleep_s" in proc.stdout  # names the option and the known ones
    assert not out.exists()
    with pytest.raises(RunError, match="nothing to resume"):
        _run(_config(routes, out, resume=True))
    fixed = _cli(_cli_args(routes, out, "--backend-option", "tick_sleep_s=0.0"))
    assert fixed.returncode == 0, fixed.stdout
    assert list(_records(out / "results.json")) == ["RouteScenario_0_rep0"]
    # the same on --resume: the run's files stay as they were, and the corrected resume goes on
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    refused = _cli(_cli_args(routes, out, "--backend-option", "tick_sleep=0.0", "--resume"))
    assert refused.returncode == 2 and "tick_sleep" in refused.stdout, refused.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    resumed = _cli(_cli_args(routes, out, "--backend-option", "tick_sleep_s=0.0", "--resume"))
    assert resumed.returncode == 0, resumed.stdout


def test_carla_options_are_checked_without_starting_anything():
    from carla_eval.backend_factory import BackendError, check_backend_options

    roots = {"carla_root": "/opt/carla", "leaderboard_root": "/lb", "scenario_runner_root": "/sr"}
    check_backend_options(BackendSpec("carla", roots))
    with pytest.raises(BackendError, match="gpuu"):
        check_backend_options(BackendSpec("carla", {**roots, "gpuu": 1}))
    with pytest.raises(BackendError, match="carla_root"):
        check_backend_options(BackendSpec("carla", {"leaderboard_root": "/lb", "scenario_runner_root": "/sr"}))


def test_sandbox_options_are_checked_against_its_config(tmp_path):
    routes = tmp_path / "r.xml"
    routes.write_text((REPO / "routes" / "sandbox" / "smoke.xml").read_text())
    with pytest.raises(RunError, match="no option"):
        _run(_config(routes, tmp_path / "run", backend=BackendSpec("sandbox", {"no_such_knob": 1})))
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------- 8. folder lock
def test_a_second_run_on_a_locked_folder_is_refused_with_the_holders_pid(tmp_path):
    routes = _routes(tmp_path, [{"id": str(i)} for i in range(4)])
    out = tmp_path / "run"
    first = subprocess.Popen(_cli_args(routes, out, "--backend-option", "tick_sleep_s=0.015"), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "run_manifest.json").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first run must still be running"
        second = _cli(_cli_args(routes, out, "--backend-option", "tick_sleep_s=0.015", "--resume"))
        assert second.returncode == 2, second.stdout
        assert f"in use by another carla-eval run (PID {first.pid})" in second.stdout
        first_out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 0, first_out
    recs = read_results_file(out / "results.json")["_checkpoint"]["records"]
    assert sorted(r["route_id"] for r in recs) == [f"RouteScenario_{i}_rep0" for i in range(4)]
    assert all(r["attempts"] == 1 for r in recs)
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert [s["kind"] for s in manifest["sessions"]] == ["start"]


def test_the_lock_is_taken_in_process_too_and_given_back_after_the_run(tmp_path):
    from carla_eval.run_lock import RunLock

    routes = _routes(tmp_path, [{"id": "0"}])
    out = tmp_path / "run"
    _run(_config(routes, out))
    holder = RunLock(out)
    holder.acquire()
    try:
        with pytest.raises(RunError, match=f"PID {os.getpid()}"):
            _run(_config(routes, out, resume=True))
    finally:
        holder.release()
    assert _run(_config(routes, out, resume=True)).recorded == 1  # free again once released


# ---------------------------------------------------------------------------- 9. invalid routes
SANDBOX_INVALID = """<?xml version="1.0"?>
<routes>
  <route id="0" town="atlantis" seed="1">
    <waypoints><position x="0" y="0" z="0"/><position x="100" y="0" z="0"/></waypoints>
  </route>
  <route id="1" town="highway" seed="1">
    <waypoints><position x="50" y="900" z="0"/><position x="170" y="900" z="0"/></waypoints>
  </route>
</routes>
"""


def test_routes_that_cannot_run_are_recorded_as_invalid_up_front_and_never_retried(tmp_path):
    routes = tmp_path / "invalid.xml"
    routes.write_text(SANDBOX_INVALID)
    summary = _run(_config(routes, tmp_path / "run", backend=BackendSpec("sandbox")))
    recs = _records(summary.results_path)
    town, lanes = recs["RouteScenario_0_rep0"], recs["RouteScenario_1_rep0"]
    for rec in (town, lanes):
        assert rec["status"] == scoring.STATUS_SIM_CRASH  # what the leaderboard records for a route it cannot load
        assert rec["error"].startswith("invalid route: ") and rec["attempts"] == 0
    assert "unknown sandbox town 'atlantis'" in town["error"]
    assert "off its nearest lane" in lanes["error"]
    log = (summary.run_dir / "run.log").read_text()
    assert "retrying" not in log and "worker" not in log  # checked in the main process, no worker started


def test_an_invalid_route_found_by_a_worker_is_not_retried(tmp_path):
    from carla_eval.agent_loader import AgentFactory
    from carla_eval.backend import RouteInvalidError
    from carla_eval.route_job import RouteTask, run_task
    from carla_eval.routes import parse_routes_file

    class NoSuchTown:
        def run_route(self, route, agent, agent_config, **kw):
            raise RouteInvalidError(f"unknown town {route.town!r}")

    (route,) = parse_routes_file(_routes(tmp_path, [{"id": "0", "town": "nowhere"}]))
    task = RouteTask("RouteScenario_0_rep0", 0, route, 0, 1, 0, AgentSpec("expert"), VideoConfig(mode="none"))
    result = run_task(NoSuchTown(), task, AgentFactory(AgentSpec("expert"), lambda: object()))
    assert result.failure_kind == "invalid_route" and result.status == scoring.STATUS_SIM_CRASH
    assert result.error == "invalid route: unknown town 'nowhere'"

    from carla_eval.pool import TaskDone
    from carla_eval.scheduler import Scheduler, SchedulerHooks

    class OnePool:
        size = 1

        def __init__(self):
            self.sent = []

        def idle_workers(self):
            return [0] if not self.sent else []

        def submit(self, worker, t):
            self.sent.append(t)

        def poll(self, timeout):
            return [TaskDone(0, result)] if len(self.sent) == 1 and not given else []

        def replace(self, worker):
            pass

        def kill(self, worker):
            pass

    given = []
    pool = OnePool()
    Scheduler(pool, SchedulerHooks(on_done=lambda r: None, on_given_up=given.append), retries=2).run([task])
    assert len(pool.sent) == 1 and len(given) == 1
    assert given[0].status == scoring.STATUS_SIM_CRASH and given[0].attempts == 1


# ----------------------------------------------------------------------- 10. record index repair
def test_inconsistent_record_indexes_are_repaired_on_resume_with_a_note(tmp_path):
    routes = _routes(tmp_path, [{"id": str(i)} for i in range(3)])
    out = tmp_path / "run"
    _run(_config(routes, out))
    results = out / "results.json"
    data = json.loads(results.read_text())
    recs = data["_checkpoint"]["records"]
    recs[0]["index"], recs[2]["index"] = 2, 0  # swapped
    recs[1]["index"] = 7  # out of range
    results.write_text(json.dumps(data))
    _run(_config(routes, out, resume=True))
    fixed = read_results_file(results)["_checkpoint"]["records"]
    assert [(r["index"], r["route_id"]) for r in fixed] == [(i, f"RouteScenario_{i}_rep0") for i in range(3)]
    notes = json.loads((out / "run_manifest.json").read_text())["notes"]
    (note,) = [n for n in notes if n["kind"] == "record indexes repaired"]
    assert sorted((d["route_id"], d["recorded"], d["repaired"]) for d in note["detail"]) == [
        ("RouteScenario_0_rep0", 2, 0), ("RouteScenario_1_rep0", 7, 1), ("RouteScenario_2_rep0", 0, 2)]
    assert "repaired the index of RouteScenario_1_rep0" in (out / "run.log").read_text()

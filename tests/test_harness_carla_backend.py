"""CARLA backend without a server: commands, ports, checkpoint parsing, process-group stops."""

import json
import os
import sys
import time
from pathlib import Path

import pytest

from carla_eval import scoring
from carla_eval.carla_backend import (
    CarlaBackendError,
    CarlaServerConfig,
    EvaluatorConfig,
    ManagedProcess,
    allocate_ports,
    evaluator_command,
    evaluator_env,
    find_free_ports,
    read_checkpoint,
    record_to_outcome,
    server_command,
)
from carla_eval.routes import RouteConfig, ScenarioConfig


def test_ports_never_clash_between_workers():
    blocks = [allocate_ports(i, rpc_base=30000, tm_base=50000, stride=10) for i in range(32)]
    used = [p for b in blocks for p in b.all()]
    assert len(used) == len(set(used))
    assert blocks[3].rpc == 30030 and blocks[3].streaming == 30031 and blocks[3].traffic_manager == 50030
    with pytest.raises(ValueError):
        allocate_ports(0, stride=2)
    with pytest.raises(ValueError):
        allocate_ports(0, rpc_base=2000, tm_base=2100, stride=10)  # TM ports would land on CARLA blocks
    with pytest.raises(ValueError):
        allocate_ports(512)
    with pytest.raises(ValueError):
        allocate_ports(400, rpc_base=63000, tm_base=20000)  # above 65535


def test_busy_blocks_are_skipped():
    busy = {2000, 2641}
    ports = find_free_ports(0, rpc_base=2000, tm_base=8000, stride=10, slots_per_round=64, is_free=lambda p: p not in busy)
    assert ports.rpc == 2640 + 640  # slot 0 busy, slot 64 (2640..2642) busy too, slot 128 free
    with pytest.raises(CarlaBackendError):
        find_free_ports(0, tries=2, is_free=lambda p: False)


def test_server_command_is_an_argument_list():
    cmd = server_command(CarlaServerConfig(Path("/opt/carla"), gpu=2), allocate_ports(1))
    assert cmd == ["/opt/carla/CarlaUE4.sh", "-RenderOffScreen", "-nosound", "-carla-rpc-port=2010",
                   "-carla-streaming-port=2011", "-graphicsadapter=2"]


def test_evaluator_command_and_env(tmp_path):
    cfg = EvaluatorConfig(Path("/lb"), Path("/sr"), Path("/opt/carla"), python="/usr/bin/python3", timeout_s=600)
    ports = allocate_ports(2)
    cmd = evaluator_command(cfg, routes=Path("/w/r.xml"), subset="7", agent="/a/ik_agent.py", agent_config="/a/c.yaml",
                            checkpoint=Path("/w/c.json"), ports=ports, tm_seed=42, resume=True)
    assert cmd[:2] == ["/usr/bin/python3", "/lb/leaderboard/leaderboard_evaluator.py"]
    for expected in ("--port=2020", "--traffic-manager-port=8020", "--traffic-manager-seed=42", "--routes=/w/r.xml",
                     "--routes-subset=7", "--agent=/a/ik_agent.py", "--agent-config=/a/c.yaml", "--checkpoint=/w/c.json",
                     "--timeout=600", "--resume=1", "--track=SENSORS"):
        assert expected in cmd
    env = evaluator_env(cfg, {"PYTHONPATH": "/mine", "HOME": "/h"}, save_path=tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep) == ["/lb", "/sr", "/opt/carla/PythonAPI/carla", "/opt/carla/PythonAPI", "/mine"]
    assert env["SAVE_PATH"] == str(tmp_path) and env["HOME"] == "/h"


def _route():
    return RouteConfig(0, "7", "Town12", ((0.0, 0.0, 0.0), (100.0, 0.0, 0.0)),
                       (ScenarioConfig("Acc_1", "Accident", (0.0, 0.0, 0.0, 0.0)),))


def test_checkpoint_records_become_outcomes(tmp_path):
    record = {
        "index": 0, "route_id": "RouteScenario_7_rep0", "status": "Completed", "num_infractions": 1,
        "infractions": {"collisions_vehicle": ["Agent collided against object with type=vehicle.x and id=1 at (x=1, y=2, z=0)"],
                        "route_dev": []},
        "scores": {"score_route": 100.0, "score_penalty": 0.6, "score_composed": 60.0},
        "meta": {"route_length": 98.5, "duration_game": 20.0, "duration_system": 80.0},
        "save_name": "RouteScenario_7_rep0_Town12_Accident_1_0_01_01", "town_name": "Town12", "scenario_name": "Accident",
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"_checkpoint": {"records": [record], "progress": [1, 1], "global_record": {}}}))
    (rec,) = read_checkpoint(path)
    out = record_to_outcome(rec, _route(), repetition=2)
    assert out.status == "Completed" and out.repetition == 2
    assert set(out.infractions) == set(scoring.INFRACTION_KEYS)
    assert out.infractions["collisions_vehicle"] == record["infractions"]["collisions_vehicle"]
    assert out.scores["score_composed"] == 60.0 and out.route_length == 98.5
    assert out.save_name == record["save_name"] and out.scenario_name == "Accident"
    path.write_text('{"_checkpoint": {"recor')
    with pytest.raises(CarlaBackendError, match="not valid JSON"):
        read_checkpoint(path)
    with pytest.raises(CarlaBackendError, match="no checkpoint"):
        read_checkpoint(tmp_path / "missing.json")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_stop_kills_the_process_group_it_started(tmp_path):
    # a parent that ignores SIGTERM and has a grandchild: both must go, through the group only
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(tmp_path / 'child.pid')!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    bystander = ManagedProcess([sys.executable, "-c", "import time; time.sleep(600)"])
    bystander.start()
    proc = ManagedProcess([sys.executable, "-c", script], log_path=tmp_path / "log.txt")
    pid = proc.start()
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int((tmp_path / "child.pid").read_text())
        assert os.getpgid(pid) == pid and os.getpgid(grandchild) == pid
        t0 = time.monotonic()
        proc.stop(grace_s=0.5)
        assert time.monotonic() - t0 < 10
        deadline = time.monotonic() + 5
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proc.running() and not _alive(grandchild)
        assert bystander.running()  # another group is untouched
    finally:
        bystander.stop(grace_s=1.0)


# ------------------------------------------------------------------ stand-in CARLA and evaluators
import signal
import subprocess

from carla_eval.carla_backend import CarlaBackend
from carla_eval.routes import parse_routes_file
from carla_eval.supervisor import group_alive, recorded_pgids
from tests.carla_standins import make_standins


def _backend(s, tmp_path, mode, **kw):
    opts = dict(carla_root=str(s.carla_root), work_dir=str(tmp_path / "work"), rpc_base=21000 + 10 * (os.getpid() % 50),
                tm_base=41000 + 10 * (os.getpid() % 50), startup_timeout_s=20.0, probe_timeout_s=2.0, stop_grace_s=1.0,
                timeout_s=3.0)
    if mode == "leaderboard":
        opts.update(leaderboard_root=str(s.lb_root), scenario_runner_root=str(s.sr_root))
    else:
        opts.update(mode="bench2drive", bench2drive_root=str(s.b2d_root))
    opts.update(kw)
    return CarlaBackend(**opts)


def _wait_gone(pgids, timeout=20.0):
    deadline = time.monotonic() + timeout
    left = [g for g in pgids if group_alive(g)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [g for g in left if group_alive(g)]
    return left


def test_leaderboard_mode_starts_and_waits_for_its_server(tmp_path):
    s = make_standins(tmp_path)
    s.server_cfg(startup_s=1.0)
    route = parse_routes_file(s.routes_file(tmp_path))[0]
    b = _backend(s, tmp_path, "leaderboard", gpu=2)
    try:
        out = b.run_route(route, str(s.agent), "cfg.yaml", repetition=1, seed=5)
        assert out.status == "Perfect" and out.repetition == 1
        assert out.sensor_icons[:1] == ["carla_camera"]  # the checkpoint's sensors reach the run
        (start,) = s.server_starts()
        assert start["args"] == ["-RenderOffScreen", "-nosound", f"-carla-rpc-port={b.ports.rpc}",
                                 f"-carla-streaming-port={b.ports.streaming}", "-graphicsadapter=2"]
        (call,) = s.lb_calls()
        assert f"--port={b.ports.rpc}" in call["argv"] and not any(a.startswith("--gpu-rank") for a in call["argv"])
        assert call["cuda"] == "2" and call["carla_root"] is None
        assert out.scenario_name == "ParkedObstacle" and out.weather_id is None  # LB 2.0 writes neither
    finally:
        b.close()
    assert _wait_gone(recorded_pgids(b.root / "process_groups.jsonl")) == []


def test_leaderboard_mode_restarts_a_crashed_or_hung_server_on_free_ports(tmp_path):
    s = make_standins(tmp_path)
    route = parse_routes_file(s.routes_file(tmp_path))[0]
    for failure in ("crash_first_start_after", "hang_first_start_after"):
        (s.carla_root / "server_starts.jsonl").unlink(missing_ok=True)
        s.server_cfg(startup_s=0.2, **{failure: 1})  # answers the readiness probe, then fails
        b = _backend(s, tmp_path / failure, "leaderboard")
        try:
            with pytest.raises(CarlaBackendError, match="recorded nothing"):
                b.run_route(route, str(s.agent), "")
            first = b.ports
            import socket
            with socket.socket() as holder:  # another program now holds the old RPC port
                holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if not group_alive(s.server_starts()[0]["pgid"]):
                    holder.bind(("127.0.0.1", first.rpc))
                    holder.listen(1)
                out = b.run_route(route, str(s.agent), "")
                assert out.status == "Perfect"
                starts = s.server_starts()
                assert len(starts) == 2, failure
                assert not group_alive(starts[0]["pgid"])
                if holder.getsockname()[1] == first.rpc:
                    assert b.ports.rpc != first.rpc  # a held port is never reused
        finally:
            b.close()


def test_bench2drive_mode_lets_the_evaluator_start_its_server(tmp_path):
    s = make_standins(tmp_path)
    s.server_cfg(startup_s=0.2, ignore_sigterm=True)
    route = parse_routes_file(s.routes_file(tmp_path))[0]
    b = _backend(s, tmp_path, "bench2drive", gpu=3)
    try:
        out = b.run_route(route, str(s.agent), "cfg.yaml")
        (call,) = s.b2d_calls()
        assert call["cwd"] == str(s.b2d_root.resolve())  # weather.xml is opened relative to it
        assert call["carla_root"] == str(s.carla_root) and "--gpu-rank=3" in call["argv"] and call["cuda"] == "3"
        (start,) = s.server_starts()  # the evaluator's own server only
        assert "-graphicsadapter=3" in start["args"] and start["sid"] == start["pid"]
        assert out.status == "Perfect" and out.weather_id == 15  # Bench2Drive's "15"
        assert out.scenario_name == "ParkedObstacle_1" and out.save_name.startswith("RouteScenario_7_rep0_Town12_ParkedObstacle_1_15_")
        assert len(out.metric_info) == 30
        assert _wait_gone([start["pgid"]], 5.0) == []  # its server went with it
    finally:
        b.close()
    with pytest.raises(ValueError, match="weather.xml"):
        _backend(s, tmp_path, "bench2drive", bench2drive_root=str(tmp_path))


def _hang_everything(s):
    s.server_cfg(startup_s=0.2, ignore_sigterm=True, spawn_child=True)
    hang = {"hang": True, "ignore_sigterm": True, "spawn_child": True}
    s.lb_behaviour(**{"7": hang})
    s.b2d_behaviour(**{"7": hang})


@pytest.mark.parametrize("mode", ["leaderboard", "bench2drive"])
def test_route_time_limit_stops_every_group(tmp_path, mode):
    s = make_standins(tmp_path)
    _hang_everything(s)
    route = parse_routes_file(s.routes_file(tmp_path))[0]
    b = _backend(s, tmp_path, mode, route_wall_timeout_s=2.0)
    registry = b.root / "process_groups.jsonl"
    try:
        with pytest.raises(CarlaBackendError, match="exceeded"):
            b.run_route(route, str(s.agent), "")
        evaluator = [c["pgid"] for c in (s.lb_calls() if mode == "leaderboard" else s.b2d_calls())]
        servers = [st["pgid"] for st in s.server_starts()]
        assert set(evaluator + servers) <= set(recorded_pgids(registry))
        assert _wait_gone(evaluator + servers, 10.0) == []  # the time limit restarts the server too
    finally:
        b.close()
    assert _wait_gone(recorded_pgids(registry)) == []


WORKER_SCRIPT = """
import json, sys
from carla_eval.carla_backend import CarlaBackend
from carla_eval.routes import parse_routes_file
opts = json.loads(sys.argv[1])
route = parse_routes_file(sys.argv[2])[0]
b = CarlaBackend(**opts)
b.run_route(route, sys.argv[3], "")
"""


@pytest.mark.parametrize("mode", ["leaderboard", "bench2drive"])
def test_sigkilled_worker_leaves_no_process(tmp_path, mode):
    s = make_standins(tmp_path)
    _hang_everything(s)
    opts = dict(carla_root=str(s.carla_root), work_dir=str(tmp_path / "work"), rpc_base=23000, tm_base=43000,
                startup_timeout_s=20.0, probe_timeout_s=2.0, stop_grace_s=1.0)
    if mode == "leaderboard":
        opts.update(leaderboard_root=str(s.lb_root), scenario_runner_root=str(s.sr_root))
    else:
        opts.update(mode="bench2drive", bench2drive_root=str(s.b2d_root))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, json.dumps(opts), str(s.routes_file(tmp_path)), str(s.agent)],
                              env=env)
    registry = tmp_path / "work" / "worker0" / "process_groups.jsonl"
    try:
        deadline = time.monotonic() + 60
        calls = s.lb_calls if mode == "leaderboard" else s.b2d_calls
        while time.monotonic() < deadline and not (calls() and len(s.server_starts()) >= 1 and len(recorded_pgids(registry)) >= 2):
            time.sleep(0.1)
        time.sleep(1.0)  # the evaluator's own server (Bench2Drive) is up and seen
        assert calls(), "the evaluator never started"
        os.kill(worker.pid, signal.SIGKILL)  # what --route-timeout does to a worker
        worker.wait(timeout=10)
        started = [c["pgid"] for c in calls()] + [st["pgid"] for st in s.server_starts()]
        assert set(started) <= set(recorded_pgids(registry))
        assert _wait_gone(recorded_pgids(registry)) == []
    finally:
        if worker.poll() is None:
            worker.kill()


def test_only_tagged_groups_are_signalled():
    from carla_eval.supervisor import TAG_ENV, new_tag, stop_groups

    tag = new_tag("t")
    sleeper = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
    tagged = subprocess.Popen(sleeper, env=dict(os.environ, **{TAG_ENV: tag}), start_new_session=True)
    other = subprocess.Popen(sleeper, start_new_session=True)  # e.g. a group id recorded long ago, now reused
    try:
        time.sleep(0.5)
        signalled = stop_groups([tagged.pid, other.pid], tag, grace_s=0.5)
        assert signalled == [tagged.pid]
        assert tagged.wait(timeout=10) is not None
        assert other.poll() is None  # untouched: no member carries the tag
        stop_groups([other.pid], new_tag("x"), grace_s=0.1)
        assert other.poll() is None
    finally:
        for p in (tagged, other):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def test_a_python_without_carla_is_named(tmp_path):
    s = make_standins(tmp_path)
    route = parse_routes_file(s.routes_file(tmp_path))[0]
    no_carla = tmp_path / "python-without-carla"  # an interpreter where `import carla` fails
    no_carla.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'carla'\" >&2\nexit 1\n")
    no_carla.chmod(0o755)
    b = _backend(s, tmp_path, "leaderboard", python=str(no_carla), startup_timeout_s=3.0)
    try:
        with pytest.raises(CarlaBackendError, match="must import carla"):
            b.run_route(route, str(s.agent), "")
    finally:
        b.close()

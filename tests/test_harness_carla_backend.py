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

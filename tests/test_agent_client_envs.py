"""The evaluator side under the evaluators' own Pythons (3.7 and 3.8, built by .ci/client_envs.sh):
agent/ik_agent.py loaded the leaderboard's way drives with the shipped weights through a model
server in the project's venv; its plans equal the in-process plans; a server crash mid-route; several
evaluator processes on one server; a static minimum-version check of every client-side module.

The environments hold numpy, carla 0.9.15, pyzmq and PyYAML only, and the project root is on
PYTHONPATH alone (no install), as in the Leaderboard 2.0 submission image (TEAM_CODE_ROOT).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
AGENT_FILE = REPO / "agent" / "ik_agent.py"
DRIVER = REPO / "tests" / "leaderboard_like_run.py"
SHIPPED_CONFIG = REPO / "weights" / "ik-tiny" / "agent.yaml"
CLIENT_PYTHONS = {"3.7": REPO / ".venv-py37" / "bin" / "python", "3.8": REPO / ".venv-py38" / "bin" / "python"}
# agent/*.py that only the project's own Python imports (the model server, benchmarks, in-process model)
SERVER_SIDE = {"plan_runner", "serve", "benchmark_serve", "benchmark_agent"}
CLIENT_MODULES = sorted("agent." + p.stem if p.stem != "__init__" else "agent"
                        for p in (REPO / "agent").glob("*.py") if p.stem not in SERVER_SIDE)


def client_python(version):
    python = CLIENT_PYTHONS[version]
    if not python.exists():
        pytest.fail(f"{python} missing: build the client environments with `make client-envs` (make test does)")
    return str(python)


def client_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO)  # TEAM_CODE_ROOT
    return env


def write_config(tmp_path, planner, name="agent.yaml", **overrides):
    """The shipped tiny model's agent.yaml with a planner section (model path made absolute)."""
    data = yaml.safe_load(SHIPPED_CONFIG.read_text())
    data["model"] = str(SHIPPED_CONFIG.parent.resolve())
    data["planner"] = planner
    data.update(overrides)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def start_planner(address, log_file, **start):
    return {"mode": "server", "address": address, "request_timeout_s": 30.0,
            "start": {"python": sys.executable, "ready_timeout_s": 180.0, "log_file": str(log_file), **start}}


def drive(python, config, out, *extra, timeout=420):
    return subprocess.Popen([python, str(DRIVER), "--agent", str(AGENT_FILE), "--config", str(config),
                             "--out", str(out), *map(str, extra)], env=client_env(), cwd=str(out.parent),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, out, timeout=420):
    try:
        log, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        log, _ = process.communicate()
        raise AssertionError("driver timed out:\n" + log[-4000:])
    assert process.returncode == 0, log[-4000:]
    return json.loads(out.read_text()), log


def run_drive(python, config, out, *extra):
    return finish(drive(python, config, out, *extra), out)


def trajectories(info):
    return [t["trajectory"] for t in info["ticks"]]


def assert_same_plans(served, local, atol):
    assert len(served["ticks"]) == len(local["ticks"])
    for a, b in zip(served["ticks"], local["ticks"]):
        assert a["ok"] and b["ok"]
        np.testing.assert_allclose(np.array(a["trajectory"]), np.array(b["trajectory"]), rtol=0, atol=atol)
        np.testing.assert_allclose(a["control"], b["control"], rtol=0, atol=max(atol, 1e-6) * 100)


@pytest.fixture(scope="module")
def in_process_reference(tmp_path_factory):
    """The same route with the model in-process, in the project's Python."""
    tmp = tmp_path_factory.mktemp("inprocess")
    config = write_config(tmp, {"mode": "inprocess"})
    info, _ = run_drive(sys.executable, config, tmp / "inprocess.json", "--ticks", 40)
    assert info["heavy"] and "torch" in info["heavy"]
    return info


def test_vermin_every_client_module_runs_on_python_37():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    assert Path(vermin).exists(), "vermin missing: pip install -e '.[test]'"
    files = [str(REPO / (m.replace(".", "/") + ("/__init__.py" if m == "agent" else ".py"))) for m in CLIENT_MODULES]
    result = subprocess.run([vermin, "-t=3.7-", "--no-tips", "--violations", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "agent.ik_agent" in CLIENT_MODULES and "agent.plan_client" in CLIENT_MODULES


@pytest.mark.parametrize("version", ["3.7", "3.8"])
def test_every_client_module_imports_and_a_server_config_loads(version, tmp_path):
    python = client_python(version)
    config = write_config(tmp_path, {"mode": "server", "address": "ipc:///tmp/ik-drive-test.sock",
                                     "start": {"python": "../venv/bin/python"}})
    code = (
        "import importlib, json, sys\n"
        f"mods = {CLIENT_MODULES!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "from agent.agent_config import load_agent_config\n"
        f"c = load_agent_config({str(config)!r})\n"
        "print(json.dumps({'v': list(sys.version_info[:2]), 'mode': c.planner.mode, 'python': c.planner.start.python,"
        " 'steps': c.num_inference_steps, 'heavy': [m for m in ('torch', 'cv2') if m in sys.modules]}))\n"
    )
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, env=client_env(), cwd=str(tmp_path),
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["v"] == [int(p) for p in version.split(".")]
    assert info["mode"] == "server" and info["python"] == str((tmp_path / "../venv/bin/python").resolve())
    assert info["steps"] is None and info["heavy"] == []


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.7", "3.8"])
def test_drives_under_old_python_through_a_started_server_like_in_process(version, tmp_path, in_process_reference):
    python = client_python(version)
    address = f"ipc://{tmp_path}/model.sock"
    config = write_config(tmp_path, start_planner(address, tmp_path / "server.log"))
    info, log = run_drive(python, config, tmp_path / "served.json", "--ticks", 40)
    assert info["python"][:2] == [int(p) for p in version.split(".")]
    assert info["module"] == "ik_agent" and info["cls"] == "IKAgent" and info["ros"] == -1
    assert info["sensor_ids"] == ["left", "front", "right", "gnss", "imu", "speed"]
    assert info["heavy"] == [], info["heavy"]  # no torch, no model code in the evaluator
    assert set(info["agent_modules"]) <= set(CLIENT_MODULES), set(info["agent_modules"]) - set(CLIENT_MODULES)
    assert info["failures"] == 0 and info["plans_made"] == 20  # 10 Hz plans over 40 ticks of 20 Hz
    assert not info["server_running_after_destroy"]  # destroy stopped the server it started
    assert info["server_pid_started"] == info["pid_before"]
    assert_same_plans(info, in_process_reference, atol=1e-6)
    assert "started the model server" in log or (tmp_path / "server.log").exists()


@pytest.mark.slow
def test_server_crash_mid_route_brakes_restarts_and_drives_on(tmp_path):
    python = client_python("3.7")
    address = f"ipc://{tmp_path}/model.sock"
    config = write_config(tmp_path, start_planner(address, tmp_path / "server.log"))
    info, log = run_drive(python, config, tmp_path / "crash.json", "--kill-server-at", 10, "--recovered-ticks", 20)
    ticks = info["ticks"]
    assert info["killed_at"] == 10 and all(t["ok"] for t in ticks[:10])
    failed = [i for i, t in enumerate(ticks) if not t["ok"]]
    assert failed and failed[0] == 10, failed[:5]  # the first tick after the kill already brakes
    for i in failed:
        assert ticks[i]["control"] == [0.0, 0.0, 1.0]  # full brake while the server is away
    assert all(t["ok"] for t in ticks[failed[-1] + 1:]) and len(ticks) - failed[-1] - 1 >= 20
    assert info["restarts"] == 1 and info["outages"] == 1
    assert info["pid_after"] != info["pid_before"] and info["pid_after"] == info["server_pid_started"]
    assert "model server at" in log and "failed" in log and "answers again" in log
    assert not info["server_running_after_destroy"]


@pytest.mark.slow
def test_several_evaluator_processes_share_one_server(tmp_path):
    python = client_python("3.7")
    address = f"ipc://{tmp_path}/shared.sock"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = subprocess.Popen([sys.executable, "-m", "agent.serve", "--model", str(SHIPPED_CONFIG.parent), "--listen",
                               address, "--num-threads", "1", "--max-wait-ms", "20"], env=env, cwd=str(REPO),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        attach = {"mode": "server", "address": address, "request_timeout_s": 60.0}
        deadline = time.monotonic() + 180
        while not Path(address[len("ipc://"):]).exists():
            assert server.poll() is None and time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        runs = []
        for i in range(3):
            config = write_config(tmp_path, attach, name=f"agent{i}.yaml", seed=i)
            out = tmp_path / f"client{i}.json"
            runs.append((drive(python, config, out, "--ticks", 30, "--route-seed", i), out, config))
        results = [finish(process, out)[0] for process, out, _ in runs]
        for info in results:
            assert info["failures"] == 0 and info["plans_made"] == 15 and info["heavy"] == []
            assert info["server_pid_started"] is None and info["pid_before"] == server.pid
        assert server.poll() is None  # clients that attached leave the server running
        # each client's plans are its own: compare with the same route in-process
        for i, ((_, _, config), info) in enumerate(zip(runs, results)):
            local_config = write_config(tmp_path, {"mode": "inprocess"}, name=f"local{i}.yaml", seed=i)
            local, _ = run_drive(sys.executable, local_config, tmp_path / f"local{i}.json", "--ticks", 30,
                                 "--route-seed", i)
            assert_same_plans(info, local, atol=1e-4)
        assert len({json.dumps(trajectories(r)[0]) for r in results}) == 3  # different seeds, different plans
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, out[-3000:]

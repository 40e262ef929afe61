"""`carla-eval run --backend carla` with stand-in servers and evaluators: Ctrl-C, --route-timeout,
GPUs per worker, carla_garage-style retries, sensors, weather and recordings in the results."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carla_eval.supervisor import group_alive, recorded_pgids
from tests.carla_standins import make_standins

ROOT = Path(__file__).resolve().parent.parent
ROUTES = """<routes>
{routes}
</routes>
"""
ROUTE = """  <route id="{rid}" town="Town12">
    <waypoints><position x="0.0" y="0.0" z="0.0"/><position x="{length}" y="0.0" z="0.0"/></waypoints>
    <scenarios><scenario name="{stype}_1" type="{stype}"><trigger_point x="10" y="0" z="0" yaw="0"/></scenario></scenarios>
    <weathers>
      <weather route_percentage="0" cloudiness="100.0" precipitation="50.0" fog_density="10.0"/>
      <weather route_percentage="100" cloudiness="100.0" precipitation="50.0" fog_density="10.0"/>
    </weathers>
  </route>"""


def _routes(tmp_path, ids, stype="ParkedObstacle"):
    path = tmp_path / "routes.xml"
    path.write_text(ROUTES.format(routes="\n".join(ROUTE.format(rid=r, length=100 + 10 * k, stype=stype)
                                                   for k, r in enumerate(ids))))
    return path


def _cli(s, mode, routes, out, work, *extra):
    opts = [f"carla_root={s.carla_root}", f"work_dir={work}", "startup_timeout_s=20", "probe_timeout_s=2",
            "stop_grace_s=1", "timeout_s=3", f"rpc_base={24000 + 10 * (os.getpid() % 40)}",
            f"tm_base={44000 + 10 * (os.getpid() % 40)}"]
    if mode == "leaderboard":
        opts += [f"leaderboard_root={s.lb_root}", f"scenario_runner_root={s.sr_root}"]
    else:
        opts += ["mode=bench2drive", f"bench2drive_root={s.b2d_root}"]
    cmd = [sys.executable, "-m", "carla_eval.cli", "run", "--backend", "carla", "--routes", str(routes),
           "--agent", str(s.agent), "--out", str(out), "--no-progress", "--video", "none"]
    for o in opts:
        cmd += ["--backend-option", o]
    return cmd + list(extra)


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _all_recorded(work: Path) -> list[int]:
    return [g for f in sorted(work.glob("worker*/process_groups.jsonl")) for g in recorded_pgids(f)]


def _wait_gone(pgids, timeout=20.0):
    deadline = time.monotonic() + timeout
    left = [g for g in pgids if group_alive(g)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [g for g in left if group_alive(g)]
    return left


def _hang(s):
    s.server_cfg(startup_s=0.2, ignore_sigterm=True, spawn_child=True)
    hang = {"hang": True, "ignore_sigterm": True, "spawn_child": True}
    s.lb_behaviour(**{"7": hang})
    s.b2d_behaviour(**{"7": hang})


@pytest.mark.parametrize("mode", ["leaderboard", "bench2drive"])
def test_ctrl_c_leaves_no_process(tmp_path, mode):
    s = make_standins(tmp_path)
    _hang(s)
    work = tmp_path / "work"
    proc = subprocess.Popen(_cli(s, mode, _routes(tmp_path, ["7"]), tmp_path / "run", work), env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        calls = s.lb_calls if mode == "leaderboard" else s.b2d_calls
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (calls() and s.server_starts()):
            time.sleep(0.2)
        time.sleep(1.5)
        assert calls(), proc.stdout.read().decode() if proc.poll() is not None else "evaluator never started"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        started = [c["pgid"] for c in calls()] + [st["pgid"] for st in s.server_starts()]
        assert set(started) <= set(_all_recorded(work))
        assert _wait_gone(_all_recorded(work)) == []
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("mode", ["leaderboard", "bench2drive"])
def test_route_timeout_leaves_no_process_and_records_the_route(tmp_path, mode):
    s = make_standins(tmp_path)
    _hang(s)
    work = tmp_path / "work"
    out = tmp_path / "run"
    proc = subprocess.run(_cli(s, mode, _routes(tmp_path, ["7"]), out, work, "--route-timeout", "6", "--retries", "0"),
                          env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = json.loads((out / "results.json").read_text())["_checkpoint"]["records"][0]
    assert rec["status"] == "Failed - Simulation crashed"
    assert "exceeded" in rec["error"] or "time limit" in rec["error"]
    started = [c["pgid"] for c in (s.lb_calls() if mode == "leaderboard" else s.b2d_calls())]
    started += [st["pgid"] for st in s.server_starts()]
    assert started and set(started) <= set(_all_recorded(work))
    assert _wait_gone(_all_recorded(work)) == []


def test_gpus_retries_sensors_weather_and_recordings_reach_the_run(tmp_path):
    s = make_standins(tmp_path)
    # route 1 crashes the agent once per attempt (carla_garage retries it), route 2 is stuck
    # (Bench2Drive's TickRuntime: a result, never retried), route 3 passes
    s.lb_behaviour(**{"1": {"status": "Failed - Agent crashed", "score_route": 30.0},
                      "2": {"status": "Failed - TickRuntime", "score_route": 55.0}})
    work = tmp_path / "work"
    out = tmp_path / "run"
    routes = _routes(tmp_path, ["1", "2", "3"], stype="Accident")
    proc = subprocess.run(_cli(s, "leaderboard", routes, out, work, "--gpus", "4,6", "--workers-per-gpu", "1",
                               "--retries", "2", "--record", "--weather-table",
                               str(s.b2d_root / "leaderboard" / "data" / "weather.xml")),
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "results.json").read_text())
    recs = {r["route_id"]: r for r in data["_checkpoint"]["records"]}
    assert recs["RouteScenario_1_rep0"]["attempts"] == 3 and recs["RouteScenario_1_rep0"]["status"] == "Failed - Agent crashed"
    assert recs["RouteScenario_1_rep0"]["scores"]["score_route"] == 30.0  # the evaluator's record is kept
    assert recs["RouteScenario_2_rep0"]["attempts"] == 1 and recs["RouteScenario_2_rep0"]["status"] == "Failed - TickRuntime"
    assert recs["RouteScenario_3_rep0"]["attempts"] == 1
    assert all(r["weather_id"] == 15 for r in recs.values())
    assert data["sensors"] == ["carla_camera"] * 3 + ["carla_gnss", "carla_imu", "carla_speedometer"]
    assert {c["cuda"] for c in s.lb_calls()} == {"4", "6"}
    assert {a for st in s.server_starts() for a in st["args"] if a.startswith("-graphicsadapter")} == {
        "-graphicsadapter=4", "-graphicsadapter=6"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["abilities"]["Overtaking"]["n_routes"] == 3  # every Accident route in its ability
    rec3 = recs["RouteScenario_3_rep0"]
    assert rec3["recording"] and Path(rec3["recording"]).is_file()
    assert Path(rec3["recording"]).parent == (out / "recordings").resolve()
    assert _wait_gone(_all_recorded(work)) == []


def test_carla_replay_starts_a_server_replays_the_recording_and_writes_the_video(tmp_path):
    from carla_eval.video import probe_video

    s = make_standins(tmp_path)
    work = tmp_path / "work"
    out = tmp_path / "run"
    config = tmp_path / "agent.yaml"
    config.write_text("model: .\nrig: carla-3cam\n")
    run = subprocess.run(_cli(s, "leaderboard", _routes(tmp_path, ["7"]), out, work, "--record", "--agent-config", str(config)),
                         env=_env(), capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    rec = json.loads((out / "results.json").read_text())["_checkpoint"]["records"][0]
    starts_before = len(s.server_starts())
    video = tmp_path / "replay.mp4"
    rep = subprocess.run([sys.executable, "-m", "carla_eval.cli", "replay", str(out), "--route", "7", "--out", str(video),
                          "--fps", "10"], env=_env(), capture_output=True, text=True, timeout=180)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert "15 ticks replayed" in rep.stdout  # 1.5 s of recording at 10 fps
    starts = s.server_starts()
    assert len(starts) == starts_before + 1 and "-RenderOffScreen" in starts[-1]["args"]
    replays = s.jsonl(s.carla_root / "replays.jsonl")
    assert replays and replays[-1]["request"].startswith(f"replay {rec['recording']} 0.0 0.0 0")
    info = probe_video(video)
    assert info.frames == 15 and info.height >= 384
    frames = [json.loads(line) for line in (out / "replays" / "RouteScenario_7_rep0_carla" / "frames" / "frames.jsonl").read_text().splitlines()]
    assert set(frames[0]["images"]) == {"left", "front", "right"} and frames[0]["speed"] == pytest.approx(5.0)
    assert _wait_gone(recorded_pgids(out / "replays" / "RouteScenario_7_rep0_carla" / "process_groups.jsonl")) == []
    no_rec = subprocess.run([sys.executable, "-m", "carla_eval.cli", "replay", str(out), "--route", "7", "--rig", "nope"],
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert no_rec.returncode == 2 and "unknown sensor rig" in no_rec.stdout


def test_gpu_placement_and_ray_resources():
    from carla_eval.placement import clean_timeout_s, gpu_for_slot, parse_gpus, spec_for_gpu, spec_for_run
    from carla_eval.ray_pool import RayWorkerPool
    from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig

    gpus = parse_gpus("0,1,2,3")
    assert [gpu_for_slot(i, gpus, 2) for i in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="no GPU"):
        gpu_for_slot(8, gpus, 2)
    with pytest.raises(ValueError):
        parse_gpus("0,0")
    carla = BackendSpec("carla", {"carla_root": "/c"})
    assert spec_for_gpu(carla, 3).options["gpu"] == 3
    assert spec_for_gpu(BackendSpec("scripted"), 3).options == {}  # no gpu option there
    assert spec_for_run(carla, 100.0).options["route_wall_timeout_s"] == clean_timeout_s(100.0) == 80.0
    assert "route_wall_timeout_s" not in spec_for_run(carla, 0.0).options  # 0: no limit
    pool = RayWorkerPool(4, carla, AgentSpec("a.py"), "local", gpus_per_worker=0.5, num_gpus=2)
    assert pool.actor_options() == {"num_cpus": 1.0, "max_restarts": 0, "num_gpus": 0.5}
    assert "num_gpus" not in RayWorkerPool(1, carla, AgentSpec("a.py"), "local").actor_options()
    with pytest.raises(ValueError, match="GPU slots"):
        RunConfig(carla, Path("r.xml"), AgentSpec("a.py"), Path("o"), workers=3, gpus=(0,), workers_per_gpu=2)
    with pytest.raises(ValueError, match="never retried"):
        RunConfig(carla, Path("r.xml"), AgentSpec("a.py"), Path("o"), retry_statuses=("Failed - TickRuntime",))


GPU_AGENT = '''
import os
from carla_eval.vehicle_control import make_control

def get_entry_point():
    return "GpuAgent"

class GpuAgent:
    def __init__(self, host, port, debug):
        pass
    def set_global_plan(self, gps, world):
        pass
    def setup(self, path_to_conf_file):
        with open(os.path.join(path_to_conf_file, "gpu_%d.txt" % os.getpid()), "w") as f:
            f.write(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "speed"}]
    def run_step(self, input_data, timestamp):
        return make_control(0.6, 0.0, 0.0)
    def __call__(self, input_data, timestamp):
        return self.run_step(input_data, timestamp)
    def destroy(self):
        pass
'''


def test_in_process_agents_get_their_workers_gpu(tmp_path):
    import io

    from rich.console import Console

    from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig
    from carla_eval.runner import run
    from carla_eval.scripted_backend import scripted_routes_xml

    agent = tmp_path / "gpu_agent.py"
    agent.write_text(GPU_AGENT)
    seen = tmp_path / "seen"
    seen.mkdir()
    routes = tmp_path / "routes.xml"
    routes.write_text(scripted_routes_xml([{"id": str(i)} for i in range(4)]))
    config = RunConfig(BackendSpec("scripted", {"tick_sleep_s": 0.01}), routes, AgentSpec(str(agent), str(seen)),
                       tmp_path / "run", workers=2, gpus=(5, 7), video=VideoConfig(mode="none"), show_progress=False)
    summary = run(config, Console(file=io.StringIO()))
    assert summary.recorded == 4
    by_worker = {p.name: p.read_text() for p in seen.glob("gpu_*.txt")}  # one file per worker process
    assert by_worker and set(by_worker.values()) <= {"5", "7"}  # never unset, never GPU 0
    if len(by_worker) == 2:  # both workers ran routes: one per GPU
        assert set(by_worker.values()) == {"5", "7"}

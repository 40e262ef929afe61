"""The whole run SIGKILLed mid-way, then resumed: the final records equal an uninterrupted run's."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from carla_eval.results import read_results_file
from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig
from carla_eval.runner import run
from carla_eval.scripted_backend import scripted_routes_xml

ROUTES = [
    {"id": str(i), "type": t, "params": p}
    for i, (t, p) in enumerate([
        ("CutIn", {}),
        ("HardBrake", {"collision_tick": 25}),
        ("StopSign", {"min_speed_pct": 75}),
        ("YieldAtJunction", {"blocked_at_pct": 40}),
        ("SlowLeadOvertake", {"outside_lanes_pct": 10}),
        ("CutIn", {}),
    ])
]
COMPARED = ("index", "route_id", "status", "num_infractions", "infractions", "scores", "save_name", "seed",
            "scenario_name", "town_name")


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids.update(int(t) for t in text)
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(routes: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "carla_eval.cli", "run", "--backend", "scripted",
            "--backend-option", "tick_sleep_s=0.004", "--routes", str(routes), "--agent", "expert",
            "--out", str(out), "--workers", "2", "--video", "none", "--no-progress", *extra]


def _records(path: Path) -> list[dict]:
    return [{k: r[k] for k in COMPARED} for r in read_results_file(path)["_checkpoint"]["records"]]


def test_killed_run_resumes_to_the_same_records(tmp_path):
    routes = tmp_path / "routes.xml"
    routes.write_text(scripted_routes_xml(ROUTES))
    reference = run(
        RunConfig(BackendSpec("scripted"), routes, AgentSpec("expert"), tmp_path / "reference", workers=2,
                  video=VideoConfig(mode="none"), show_progress=False),
        Console(file=io.StringIO()),
    )
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(routes, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.json"
    done_at_kill = 0
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            workers |= _children(proc.pid)
            if results.exists():
                done_at_kill = json.loads(results.read_text())["_checkpoint"]["progress"][0]
                if done_at_kill >= 2:
                    break
            time.sleep(0.05)
        workers |= _children(proc.pid) if proc.poll() is None else set()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert 2 <= done_at_kill < len(ROUTES), "the kill must land in the middle of the run"
    assert len(workers) >= 2  # the two workers were seen
    partial = read_results_file(results)  # intact, thanks to atomic writes
    assert partial["entry_status"] == "Started"
    # orphaned workers notice the main process is gone and exit on their own
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)]
    resumed = subprocess.run(_cli(routes, out, "--resume"), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _records(results) == _records(reference.results_path)
    final = read_results_file(results)
    assert final["entry_status"] == "Finished" and final["_checkpoint"]["progress"] == [6, 6]
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert [s["kind"] for s in manifest["sessions"]] == ["start", "resume"]


def test_ctrl_c_stops_the_workers_and_keeps_the_results(tmp_path):
    routes = tmp_path / "routes.xml"
    routes.write_text(scripted_routes_xml(ROUTES))
    out = tmp_path / "interrupted"
    # A shell that starts a job in the background (CI runners, `cmd &`) hands it SIGINT ignored, and
    # an ignored signal stays ignored across exec; the CLI must see the default, as in a terminal.
    proc = subprocess.Popen(_cli(routes, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_default_sigint)
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        workers |= _children(proc.pid)
        results = out / "results.json"
        if results.exists() and json.loads(results.read_text())["_checkpoint"]["progress"][0] >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    assert "--resume" in output
    deadline = time.monotonic() + 10  # multiprocessing's helper processes leave with the main one
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert len(workers) >= 2 and not [p for p in workers if _alive(p)]
    done = read_results_file(out / "results.json")["_checkpoint"]["progress"][0]
    assert 1 <= done < len(ROUTES)

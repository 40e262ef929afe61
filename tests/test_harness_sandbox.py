"""Integration with the real embedded sandbox and its privileged expert."""

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from carla_eval.cli import main as cli_main
from carla_eval.replay import replay_route
from carla_eval.results import read_results_file
from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig
from carla_eval.runner import run
from carla_eval.traces import load_trace
from carla_eval.video import probe_video

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "routes" / "sandbox" / "smoke.xml"
SHORT_ROUTE = """<?xml version="1.0"?>
<routes>
  <route id="0" town="highway" seed="5">
    <waypoints><position x="50" y="4" z="0"/><position x="170" y="4" z="0"/></waypoints>
  </route>
</routes>
"""


def _run(routes, out, workers=1, video="all", **kw):
    cfg = RunConfig(BackendSpec("sandbox"), routes, AgentSpec("expert"), out, workers=workers,
                    video=VideoConfig(mode=video), show_progress=False, **kw)
    return run(cfg, Console(file=io.StringIO()))


def test_sandbox_expert_run_video_and_exact_replay(tmp_path):
    routes = tmp_path / "short.xml"
    routes.write_text(SHORT_ROUTE)
    summary = _run(routes, tmp_path / "run")
    (rec,) = read_results_file(summary.results_path)["_checkpoint"]["records"]
    assert rec["status"] == "Perfect" and rec["seed"] == 5  # the route file's own seed
    stored = load_trace(summary.run_dir / "traces" / f"{rec['save_name']}.npz")
    n = len(stored.trace.controls)
    assert n > 50 and stored.plans is not None and stored.plans.trajectory.shape[0] == n
    assert any(s["type"] == "sensor.camera.rgb" for s in stored.sensors)
    video = probe_video(summary.run_dir / "videos" / f"{rec['save_name']}.mp4")
    assert video.frames == (n + 1) // 2 + (n % 2 == 0) and video.codec == "h264"
    info = json.loads((summary.run_dir / "metric_info" / rec["save_name"] / "metric_info.json").read_text())
    assert len(info) == n
    result = replay_route(summary.run_dir, "0", out_video=tmp_path / "replay.mp4", fps=10)
    assert result.ticks_replayed == n and result.max_deviation_m <= 1e-6 and result.reproduced
    assert probe_video(tmp_path / "replay.mp4").frames == video.frames


@pytest.mark.slow
def test_smoke_suite_with_two_workers_writes_every_file(tmp_path):
    summary = _run(SMOKE, tmp_path / "smoke", workers=2, video="failures")
    data = read_results_file(summary.results_path)
    recs = data["_checkpoint"]["records"]
    n_routes = SMOKE.read_text().count("<route ")
    assert len(recs) == n_routes == len({r["route_id"] for r in recs})
    assert data["entry_status"] == "Finished" and data["_checkpoint"]["progress"] == [n_routes, n_routes]
    for r in recs:
        assert (summary.run_dir / "metric_info" / r["save_name"] / "metric_info.json").is_file()
        assert (summary.run_dir / "traces" / f"{r['save_name']}.npz").is_file()
        failed_or_penalised = r["status"] not in ("Perfect", "Completed") or r["scores"]["score_penalty"] < 1
        assert (summary.run_dir / "videos" / f"{r['save_name']}.mp4").is_file() == failed_or_penalised
    metrics = json.loads(summary.metrics_path.read_text())
    assert metrics["complete"] and metrics["n_expected"] == n_routes
    assert cli_main(["metrics", str(summary.run_dir), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["driving_score"] == pytest.approx(metrics["driving_score"])
    # every smoke route replays exactly, traffic and scenario actors included
    for r in recs:
        result = replay_route(summary.run_dir, r["route_id"])
        assert result.reproduced, (r["route_id"], result.max_deviation_m)

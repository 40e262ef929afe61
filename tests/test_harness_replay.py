"""Replays: the scripted backend re-runs a recorded route from its seed and controls exactly."""

import io

import numpy as np
import pytest
from rich.console import Console

from carla_eval.cli import main as cli_main
from carla_eval.replay import ReplayError, replay_route
from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig
from carla_eval.runner import run
from carla_eval.scripted_backend import scripted_routes_xml
from carla_eval.traces import load_trace
from carla_eval.video import probe_video


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    routes = tmp / "routes.xml"
    routes.write_text(scripted_routes_xml([
        {"id": "0", "waypoints": [(0, 0), (40, 0), (70, 15)], "params": {"collision_tick": 30}},
        {"id": "1", "type": "CutIn"},
    ]))
    summary = run(RunConfig(BackendSpec("scripted"), routes, AgentSpec("expert"), tmp / "run", workers=1, seed=7,
                            video=VideoConfig(mode="none"), show_progress=False), Console(file=io.StringIO()))
    return summary.run_dir


def test_replay_reproduces_the_trajectory_and_renders(recorded_run, tmp_path):
    result = replay_route(recorded_run, "0", out_video=tmp_path / "r.mp4", frames_dir=tmp_path / "frames", fps=10)
    assert result.reproduced and result.max_deviation_m == 0.0
    assert result.ticks_replayed == result.ticks_recorded > 50
    info = probe_video(tmp_path / "r.mp4")
    assert info.frames == (result.ticks_recorded + 1) // 2 + (result.ticks_recorded % 2 == 0)
    pngs = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(pngs) == result.frames_written == (result.ticks_recorded + 1) // 2


def test_trace_files_hold_seed_controls_and_plans(recorded_run):
    stored = load_trace(next((recorded_run / "traces").glob("RouteScenario_0_rep0*.npz")))
    n = len(stored.trace.controls)
    assert stored.record_id == "RouteScenario_0_rep0"
    assert stored.trace.ego.shape == (n, 4)
    assert stored.sensors and stored.sensors[0]["type"] == "sensor.camera.rgb"
    assert stored.plans is None  # videos were off, so the agent produced no debug frames


def test_cli_replay_fails_on_a_tampered_trace(recorded_run, tmp_path):
    assert cli_main(["replay", str(recorded_run), "--route", "RouteScenario_1_rep0", "--no-video"]) == 0
    trace_path = next((recorded_run / "traces").glob("RouteScenario_1_rep0*.npz"))
    original = trace_path.read_bytes()
    try:
        with np.load(trace_path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["controls"] = arrays["controls"].copy()
        arrays["controls"][10:, 1] += 0.05  # steer differently from tick 10 on
        np.savez_compressed(trace_path, **arrays)
        assert cli_main(["replay", str(recorded_run), "--route", "1", "--no-video"]) == 1
    finally:
        trace_path.write_bytes(original)


def test_replay_of_an_unknown_route_is_a_clear_error(recorded_run):
    with pytest.raises(ReplayError, match="no record for route '9'"):
        replay_route(recorded_run, "9")

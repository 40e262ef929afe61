"""Ray path: a private local cluster, an actor killed mid-route, every route recorded once."""

import io

import pytest
from rich.console import Console

from carla_eval.results import read_results_file
from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig
from carla_eval.runner import run
from carla_eval.scripted_backend import scripted_routes_xml


@pytest.mark.slow
def test_ray_local_cluster_run_with_a_killed_actor(tmp_path):
    routes = tmp_path / "routes.xml"
    routes.write_text(scripted_routes_xml([
        {"id": "0"},
        {"id": "1", "params": {"fault": "kill_once", "fault_tick": 4}},
        {"id": "2", "params": {"collision_tick": 10}},
        {"id": "3", "type": "CutIn"},
    ]))
    config = RunConfig(
        BackendSpec("scripted", {"marker_dir": str(tmp_path / "markers")}), routes, AgentSpec("expert"), tmp_path / "run",
        workers=2, ray_address="local", video=VideoConfig(mode="failures"), show_progress=False,
    )
    summary = run(config, Console(file=io.StringIO()))
    data = read_results_file(summary.results_path)
    recs = {r["route_id"]: r for r in data["_checkpoint"]["records"]}
    assert sorted(recs) == [f"RouteScenario_{i}_rep0" for i in range(4)]
    assert recs["RouteScenario_1_rep0"]["attempts"] == 2 and recs["RouteScenario_1_rep0"]["status"] == "Perfect"
    assert recs["RouteScenario_2_rep0"]["status"] == "Completed"
    assert (summary.run_dir / "videos" / f"{recs['RouteScenario_2_rep0']['save_name']}.mp4").is_file()
    assert "Ray actor died" in (summary.run_dir / "run.log").read_text()
    import ray

    assert not ray.is_initialized()  # the local cluster was shut down by the run


HUNG_AGENT = '''
import time

from carla_eval.vehicle_control import make_control

def get_entry_point():
    return "HungAgent"

class HungAgent:
    def __init__(self, host, port, debug):
        self.tick = 0
    def set_global_plan(self, gps, world):
        pass
    def setup(self, path_to_conf_file):
        pass
    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "speed"}]
    def run_step(self, input_data, timestamp):
        self.tick += 1
        if self.tick > 3:
            time.sleep(3600)
        return make_control(0.5, 0.0, 0.0)
    def destroy(self):
        pass
'''


@pytest.mark.slow
def test_ray_actor_with_a_hung_agent_is_replaced_and_the_route_recorded_once(tmp_path):
    from carla_eval import scoring
    from carla_eval.run_config import WatchdogConfig

    agent = tmp_path / "hung_agent.py"
    agent.write_text(HUNG_AGENT)
    routes = tmp_path / "routes.xml"
    routes.write_text(scripted_routes_xml([{"id": "0"}, {"id": "1"}, {"id": "2"}]))
    config = RunConfig(
        BackendSpec("scripted"), routes, AgentSpec(str(agent)), tmp_path / "run", workers=1, ray_address="local",
        video=VideoConfig(mode="none"), show_progress=False, watchdog=WatchdogConfig(agent_timeout_s=1.0),
    )
    summary = run(config, Console(file=io.StringIO()))
    recs = read_results_file(summary.results_path)["_checkpoint"]["records"]
    assert sorted(r["route_id"] for r in recs) == [f"RouteScenario_{i}_rep0" for i in range(3)]
    for rec in recs:  # one actor: each route needed a fresh one after the previous hang
        assert rec["status"] == scoring.STATUS_AGENT_CRASH and rec["attempts"] == 1
        assert rec["error"].startswith("Agent took longer than 1.0s to send its command")

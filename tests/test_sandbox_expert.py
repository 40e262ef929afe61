"""The privileged sandbox expert: its plan and debug output, and the smoke suite without infractions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.debug_frame import DebugFrame
from carla_eval import scoring
from carla_eval.routes import RouteConfig, parse_routes_file
from carla_eval.sandbox.backend import SandboxBackend
from carla_eval.sandbox.criteria import CriteriaConfig
from carla_eval.sandbox.config import SandboxConfig

ROUTES = Path(__file__).resolve().parents[1] / "routes" / "sandbox"


def test_expert_plan_debug_frame_and_ground_truth():
    backend = SandboxBackend(SandboxConfig(criteria=CriteriaConfig(max_ticks=60)))
    expert = backend.create_expert_agent()
    seen = []

    def on_tick(info):
        frame = expert.get_debug_frame()
        gt = expert.ground_truth()
        seen.append((expert.last_plan, frame, gt))

    route = RouteConfig(0, "e1", "highway", ((100.0, 4.0, 0.0), (400.0, 4.0, 0.0)))
    out = backend.run_route(route, expert, "", seed=3, on_tick=on_tick)
    assert out.status == scoring.STATUS_AGENT_TIMEOUT  # the tick cap, by design of this test
    plan, frame, gt = seen[-1]
    assert plan.trajectory.shape == (6, 2) and np.all(np.isfinite(plan.trajectory))
    assert np.all(np.diff(plan.trajectory[:, 0]) > 0)  # driving forward, ego frame x ahead
    assert np.abs(plan.trajectory[:, 1]).max() < 1.0  # straight lane: little lateral motion
    # The expert asks for the carla-3cam cameras: the debug image is the front camera, views all three.
    assert isinstance(frame, DebugFrame) and frame.image.shape == (160, 288, 3) and frame.image.dtype == np.uint8
    assert frame.camera["id"] == "front" and list(frame.views) == ["left", "front", "right"]
    assert frame.trajectory.shape == (6, 2) and frame.command == 4
    assert gt.ego.type_id == "vehicle.sandbox.ego" and gt.others and gt.ego.speed > 2.0
    assert expert.ground_truth() is None  # outside a route


def test_expert_needs_a_running_route():
    backend = SandboxBackend()
    expert = backend.create_expert_agent()
    with pytest.raises(RuntimeError, match="run_route"):
        expert.run_step({}, 0.0)


@pytest.mark.slow
def test_expert_completes_smoke_suite_without_infractions():
    backend = SandboxBackend()
    for route in parse_routes_file(ROUTES / "smoke.xml"):
        out = backend.run_route(route, backend.create_expert_agent(), "", seed=int(route.attributes["seed"]))
        assert out.status == scoring.STATUS_PERFECT, (route.route_id, out.status, out.infractions)
        assert scoring.is_success(out.status, out.infractions)
        assert out.scores["score_composed"] == 100.0


# ---------------------------------------------------------------------------- lane changes
# Lane 0 -> lane 1 at x = 200 m; no background traffic, one car placed by the test.
LANE_CHANGE_ROUTE = RouteConfig(0, "lc", "highway", ((50.0, 0.0, 0.0), (200.0, 0.0, 0.0), (300.0, 4.0, 0.0), (600.0, 4.0, 0.0)))


def _merging_car_run(when, ahead: float = 4.0):
    """Drive LANE_CHANGE_ROUTE with the expert; the first tick ``when(planner, ego)`` holds, a car
    appears in lane 2, ``ahead`` m ahead of the ego at its speed, moving into lane 1 (the expert's
    target). Background cars' collision guard is off: avoiding the car is the expert's job."""
    from carla_eval.sandbox.config import TrafficConfig

    traffic = TrafficConfig(enabled=False)
    try:
        from carla_eval.sandbox.config import GuardConfig

        traffic = TrafficConfig(enabled=False, guard=GuardConfig(enabled=False))
    except ImportError:  # a sandbox without the guard
        pass
    backend = SandboxBackend(SandboxConfig(traffic=traffic))
    expert = backend.create_expert_agent()
    state = {"car": None, "contacts": 0}

    def on_tick(info):
        session = backend.session
        world, planner = session.world, expert._planner
        ego = world.ego
        if state["car"] is None and planner is not None and when(planner, ego):
            path = session.paths.stream_paths["lane2"][0]
            car = world.spawn_traffic(path, float(ego.position[0]) + ahead, float(ego.speed), float(ego.speed), False)
            car.target_lane_index = (car.lane_index[0], car.lane_index[1], 1)
            state["car"] = car
            state["changing_at_spawn"] = planner.changing_to is not None
        state["contacts"] += sum(k == "collisions_vehicle" for k, _ in info.new_infractions)
        state["aborted"] = getattr(planner, "aborted", 0)

    out = backend.run_route(LANE_CHANGE_ROUTE, expert, "", seed=0, on_tick=on_tick)
    return out, state, expert


def test_expert_waits_for_a_car_merging_into_its_target_lane():
    # The car appears just before the expert would start its lane change (the expert used to
    # start anyway, sideswipe it and count 8 collisions).
    out, state, _ = _merging_car_run(lambda planner, ego: ego.position[0] > 164.0, ahead=2.0)
    assert state["car"] is not None and not state["changing_at_spawn"]
    assert state["car"].lane_index[2] == 1  # it merged
    assert out.infractions["collisions_vehicle"] == [] and state["contacts"] == 0
    assert out.status == scoring.STATUS_PERFECT


def test_expert_abandons_a_lane_change_when_a_car_merges_into_the_gap():
    out, state, expert = _merging_car_run(lambda planner, ego: planner.changing_to is not None, ahead=4.0)
    assert state["car"] is not None and state["changing_at_spawn"]
    assert out.infractions["collisions_vehicle"] == [] and state["contacts"] == 0
    assert state["aborted"] >= 1  # went back to its lane, changed later behind the car
    assert out.status == scoring.STATUS_PERFECT

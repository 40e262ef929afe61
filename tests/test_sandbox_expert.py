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

"""Sandbox criteria on scripted drives: each infraction, route completion, ending statuses, and the
agent-failure statuses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_eval import scoring
from carla_eval.routes import RouteConfig, ScenarioConfig
from carla_eval.sandbox.agents import ScriptedAgent
from carla_eval.sandbox.backend import SandboxBackend, agent_caller
from carla_eval.sandbox.config import SandboxConfig
from carla_eval.sandbox.criteria import CriteriaConfig
from carla_eval.sandbox.traffic import TrafficConfig

NO_TRAFFIC = TrafficConfig(enabled=False)
# Eastbound lane of the intersection's major road, through the junction.
STRAIGHT = RouteConfig(0, "c1", "intersection", ((-100.0, 2.0, 0.0), (60.0, 2.0, 0.0)))
# Same start, turning left (north) at the junction.
LEFT_TURN = RouteConfig(0, "c2", "intersection", ((-100.0, 2.0, 0.0), (-1.515, -1.515, 0.0), (2.0, -80.0, 0.0)))


def backend(**criteria) -> SandboxBackend:
    return SandboxBackend(SandboxConfig(traffic=NO_TRAFFIC, criteria=CriteriaConfig(**criteria)))


def cruise(target: float, steer: float = 0.0):
    def policy(t, data):
        v = data["speed"][1]["speed"]
        return (0.6 if v < target else 0.0, steer, 0.0)

    return policy


def test_completion_is_monotone_and_reaches_100():
    rcs = []
    be = backend()
    out = be.run_route(STRAIGHT, ScriptedAgent(policy=cruise(12.0)), "", seed=0, on_tick=lambda ti: rcs.append(ti.route_completion))
    assert out.status == scoring.STATUS_PERFECT
    assert out.scores == {"score_route": 100.0, "score_penalty": 1.0, "score_composed": 100.0}
    assert rcs[-1] == 100.0 and rcs[0] < 5.0
    assert all(b >= a for a, b in zip(rcs, rcs[1:]))
    assert len(out.infractions["min_speed_infractions"]) == 20  # one per 5 % checkpoint
    assert all("100.00%" in m for m in out.infractions["min_speed_infractions"])  # no traffic around
    assert out.route_length == pytest.approx(160.0, abs=1.0)
    assert len(out.metric_info) == len(out.trace.controls) == len(out.trace.ego)
    entry = out.metric_info["10"]
    assert set(entry) == {"acceleration", "angular_velocity", "forward_vector", "right_vector", "location", "rotation"}
    assert entry["forward_vector"][0] == pytest.approx(1.0, abs=1e-3) and entry["right_vector"][1] == pytest.approx(1.0, abs=1e-3)


def test_drive_into_a_car_is_one_collision():
    route = RouteConfig(0, "c3", "highway", ((10.0, 4.0, 0.0), (300.0, 4.0, 0.0)),
                        (ScenarioConfig("StoppedVehicle_0", "StoppedVehicle", (70.0, 4.0, 0.0, 0.0)),))
    events = []
    out = backend(blocked_time=5.0).run_route(route, ScriptedAgent(controls=[(1.0, 0.0, 0.0)] * 400), "", seed=0,
                                               on_tick=lambda ti: events.extend(ti.new_infractions))
    assert len(out.infractions["collisions_vehicle"]) == 1
    msg = out.infractions["collisions_vehicle"][0]
    assert "type=vehicle.sandbox.static" in msg and "(x=" in msg
    assert ("collisions_vehicle", msg) in events
    assert any(step for step, key, _ in out.infraction_steps if key == "collisions_vehicle")
    assert out.status == scoring.STATUS_BLOCKED  # pressed against the car, then blocked
    assert out.scores["score_penalty"] == pytest.approx(0.6)


def test_drive_off_road():
    def policy(t, data):
        return (0.5, 0.5, 0.0) if t < 60 else (0.0, 0.0, 1.0)

    out = backend(blocked_time=3.0).run_route(STRAIGHT, ScriptedAgent(policy=policy), "", seed=0)
    assert len(out.infractions["collisions_layout"]) == 1
    assert "static.sandbox.roadside" in out.infractions["collisions_layout"][0]
    assert len(out.infractions["outside_route_lanes"]) == 1
    pct = scoring.message_percentage(out.infractions["outside_route_lanes"][0])
    assert 0.0 < pct <= 100.0
    assert out.status == scoring.STATUS_BLOCKED


def test_stand_still_gets_blocked():
    out = backend(blocked_time=3.0).run_route(STRAIGHT, ScriptedAgent(controls=[(0.0, 0.0, 1.0)]), "", seed=0)
    assert out.status == scoring.STATUS_BLOCKED
    assert len(out.infractions["vehicle_blocked"]) == 1 and out.infractions["vehicle_blocked"][0].startswith("Agent got blocked at (x=")
    assert out.duration_game == pytest.approx(3.0, abs=0.06)
    assert out.scores["score_route"] < 1.0


def test_leaving_the_route_is_a_deviation():
    out = backend().run_route(LEFT_TURN, ScriptedAgent(policy=cruise(10.0)), "", seed=0)
    assert out.status == scoring.STATUS_DEVIATED
    assert len(out.infractions["route_dev"]) == 1
    assert 0.0 < out.scores["score_route"] < 100.0


def test_tick_cap_is_a_route_timeout():
    out = backend(max_ticks=50).run_route(STRAIGHT, ScriptedAgent(policy=cruise(3.0)), "", seed=0)
    assert out.status == scoring.STATUS_AGENT_TIMEOUT
    assert out.infractions["route_timeout"] == [scoring.msg_route_timeout()]
    assert len(out.trace.controls) == 50


def test_game_time_budget_is_a_route_timeout():
    out = backend(timeout_base=2.0, timeout_speed=1000.0).run_route(STRAIGHT, ScriptedAgent(policy=cruise(3.0)), "", seed=0)
    assert out.status == scoring.STATUS_AGENT_TIMEOUT
    assert out.duration_game == pytest.approx(2.0 + 160.0 / 1000.0, abs=0.06)


class CrashingAgent(ScriptedAgent):
    def __init__(self, where: str):
        super().__init__(controls=[(0.5, 0.0, 0.0)])
        self.where = where

    def setup(self, path):
        if self.where == "setup":
            raise RuntimeError("boom in setup")

    def sensors(self):
        if self.where == "sensors":
            raise RuntimeError("boom in sensors")
        return super().sensors()

    def run_step(self, data, ts):
        if self.where == "run_step" and self.tick >= 10:
            raise RuntimeError("boom in run_step")
        return super().run_step(data, ts)


@pytest.mark.parametrize("where, status", [("setup", scoring.STATUS_AGENT_SETUP), ("sensors", scoring.STATUS_AGENT_SETUP),
                                           ("run_step", scoring.STATUS_AGENT_CRASH)])
def test_agent_failures_become_statuses(where, status):
    agent = CrashingAgent(where)
    out = backend().run_route(STRAIGHT, agent, "cfg", seed=0)
    assert out.status == status
    assert f"boom in {where}" in out.error
    assert agent.destroyed
    if where == "run_step":
        assert len(out.trace.controls) == 10 and out.scores["score_route"] < 10.0
    else:
        assert out.trace is None and out.scores["score_composed"] == 0.0


def test_non_finite_controls_brake_and_are_counted():
    be = backend(max_ticks=40)
    out = be.run_route(STRAIGHT, ScriptedAgent(controls=[(1.0, 0.0, 0.0)] * 20 + [(math.nan, 0.0, 0.0)] * 20), "", seed=0)
    assert be.last_stats.fixed_controls == 20
    assert np.all(out.trace.controls[20:] == [0.0, 0.0, 1.0])
    assert out.trace.ego[-1, 3] < out.trace.ego[19, 3]


class CallAgent(ScriptedAgent):
    """An agent whose __call__(input_data, timestamp) wraps run_step, like our AutonomousAgent."""

    def __init__(self):
        super().__init__(controls=[(0.0, 0.0, 1.0)])
        self.calls = 0

    def __call__(self, input_data, timestamp):
        self.calls += 1
        control = self.run_step(input_data, timestamp)
        control.manual_gear_shift = False
        return control


def test_agent_call_dispatch():
    a = CallAgent()
    caller = agent_caller(a)
    caller({}, 0.0)
    assert a.calls == 1
    b = ScriptedAgent(controls=[(0.2, 0.0, 0.0)])
    ctl = agent_caller(b)({}, 0.0)  # no __call__: run_step directly
    assert ctl.throttle == pytest.approx(0.2) and ctl.manual_gear_shift is False
    out = backend(max_ticks=5).run_route(STRAIGHT, a, "", seed=0)
    assert a.calls == 1 + 5 and out.status == scoring.STATUS_AGENT_TIMEOUT


def test_outcome_names():
    route = RouteConfig(3, "17", "highway", ((10.0, 4.0, 0.0), (120.0, 4.0, 0.0)),
                        (ScenarioConfig("HardBrake_0", "HardBrake", (60.0, 4.0, 0.0, 0.0)),))
    out = backend(max_ticks=3).run_route(route, ScriptedAgent(controls=[(0.0, 0.0, 1.0)]), "", repetition=2, seed=0)
    assert out.save_name == "RouteScenario_17_rep2_highway_HardBrake"
    assert out.scenario_name == "HardBrake" and out.ability == "Emergency_Brake" and out.town_name == "highway"
    assert out.repetition == 2 and set(out.infractions) == set(scoring.INFRACTION_KEYS)


# ---------------------------------------------------------------------------- collision counting
class _Ego:
    def __init__(self, x: float, y: float, speed: float) -> None:
        self.position = np.array([x, y])
        self.speed = speed


def _highway_criteria():
    from carla_eval.sandbox.criteria import RouteCriteria
    from carla_eval.sandbox.map_index import get_map_index
    from carla_eval.sandbox.route_plan import RoutePlanner
    from carla_eval.sandbox.towns import get_town

    index = get_map_index(get_town("highway"))
    plan = RoutePlanner(index).plan([(10.0, 4.0), (600.0, 4.0)])
    return RouteCriteria(plan, index, 0.05, CriteriaConfig())


def _push(crit, ticks: int, speed: float, actor: int = 7, x0: float = 20.0, t0: float = 0.0, y: float = 4.0) -> int:
    """Drive along x at ``speed`` touching ``actor`` every tick; return the collisions counted."""
    from carla_eval.sandbox.world import Contact

    n = 0
    for k in range(ticks):
        x = x0 + speed * 0.05 * k
        res = crit.update(k, t0 + 0.05 * (k + 1), _Ego(x, y, speed), [Contact(actor, "vehicle.sandbox.idm", x, y, speed)], [])
        n += sum(key == "collisions_vehicle" for key, _ in res.new_events)
    return n


def test_continuous_contact_counts_once_within_the_id_time():
    # 4 s of contact while sliding 40 m along: one event (the old rule counted one every 3 m).
    assert _push(_highway_criteria(), ticks=80, speed=10.0) == 1


def test_continuous_contact_counts_again_only_after_the_id_time():
    # 12 s of contact at 10 m/s: counted at 0 s, again after 5 s and after 10 s (scenario_runner's
    # MAX_ID_TIME), each time more than 5 m from the last event place.
    assert _push(_highway_criteria(), ticks=240, speed=10.0) == 3


def test_contact_near_the_last_event_place_is_not_counted_again():
    crit = _highway_criteria()
    assert _push(crit, ticks=10, speed=1.0, actor=7) == 1
    # Another actor touched 1 m further on, 2 s later: within 5 m of the event place.
    assert _push(crit, ticks=5, speed=1.0, actor=8, x0=21.0, t0=2.0) == 0
    # Far from it (and still within the id time of actor 7): a new event.
    assert _push(crit, ticks=5, speed=1.0, actor=8, x0=40.0, t0=3.0) == 1


def test_contact_while_standing_still_is_not_the_egos_fault():
    assert _push(_highway_criteria(), ticks=40, speed=0.0) == 0

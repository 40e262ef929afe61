"""Traffic lights, stop signs and pedestrians in the sandbox: light cycles, the leaderboard's
RunningRedLight / RunningStop / pedestrian-collision criteria on scripted drives, the expert
obeying them, background traffic at the lights, and the new scenario types."""

from __future__ import annotations

import numpy as np
import pytest

from carla_eval.backend import RouteInvalidError

from carla_eval import metrics, scoring
from carla_eval.routes import RouteConfig, ScenarioConfig
from carla_eval.sandbox.agents import ScriptedAgent
from carla_eval.sandbox.backend import SandboxBackend
from carla_eval.sandbox.config import CriteriaConfig, SandboxConfig
from carla_eval.sandbox.expert import ExpertConfig
from carla_eval.sandbox.scenarios import SCENARIO_ABILITIES
from carla_eval.sandbox.signals import GREEN, RED, YELLOW, SignalTiming, TrafficLights
from carla_eval.sandbox.towns import get_town
from carla_eval.sandbox.traffic import TrafficConfig

SPEEDO = ({"type": "sensor.speedometer", "id": "speed"},)
# Eastbound through the signalised junction A; the ego arrives at a red light.
RED_ROUTE = RouteConfig(0, "r1", "signals", ((-70.0, 2.0, 0.0), (30.0, 2.0, 0.0)),
                        (ScenarioConfig("red", "VanillaSignalizedTurnEncounterRedLight", (-20.0, 2.0, 0.0, 0.0),
                                        {"red_wait": {"value": "6.0"}}),))
# Southbound through the stop sign of junction B (the sign's stop line is at y = -15.5).
STOP_ROUTE = RouteConfig(0, "s1", "signals", ((248.0, -70.0, 0.0), (248.0, 30.0, 0.0)),
                         (ScenarioConfig("stop", "VanillaNonSignalizedTurnEncounterStopsign", (248.0, -20.0, 0.0, 90.0)),))
# Eastbound between the junctions, a walker steps out from behind a parked car.
WALKER_ROUTE = RouteConfig(0, "w1", "signals", ((30.0, 2.0, 0.0), (150.0, 2.0, 0.0)),
                           (ScenarioConfig("dyn", "DynamicObjectCrossing", (70.0, 2.0, 0.0, 0.0)),))


def backend(traffic: bool = False, walkers: int = 0, **criteria) -> SandboxBackend:
    return SandboxBackend(SandboxConfig(traffic=TrafficConfig(enabled=traffic), ambient_walkers=walkers,
                                        criteria=CriteriaConfig(**criteria)))


def cruise(target: float, brake_until=None):
    """Drive at ``target`` m/s; ``brake_until(data, tick)`` True -> brake (for scripted stops)."""

    def policy(t, data):
        v = data["speed"][1]["speed"]
        if brake_until is not None and brake_until(t, v):
            return (0.0, 0.0, 1.0)
        return (0.6 if v < target else 0.0, 0.0, 0.0)

    return policy


def run(be, route, agent, seed=0):
    events = []
    out = be.run_route(route, agent, "", seed=seed, on_tick=lambda ti: events.extend(ti.new_infractions))
    return out, [e for e in events if e[0] != "min_speed_infractions"]


def expert(be):
    return be.create_expert_agent(ExpertConfig(sensors=SPEEDO))


# ---------------------------------------------------------------------------- lights
def test_one_approach_of_a_junction_is_open_at_a_time():
    town = get_town("signals")
    timing = SignalTiming()
    lights = TrafficLights(town.signals, timing)
    greens = {s.signal_id: 0 for s in town.signals}
    for t in np.arange(0.0, 4 * timing.slot, 0.05):
        states = lights.states(float(t))
        assert sum(st != RED for st in states.values()) <= 1
        for sid, st in states.items():
            greens[sid] += st == GREEN
    assert all(n == pytest.approx(timing.green / 0.05, abs=1) for n in greens.values())
    lights.set_green_at(101, 30.0, -5.0)
    assert lights.state(101, 30.0) == RED and lights.state(101, 35.1) == GREEN
    assert lights.state(101, 35.0 + timing.green + 0.1) == YELLOW


# ---------------------------------------------------------------------------- criteria
def test_running_the_red_light_costs_0_7_with_the_leaderboard_message():
    out, events = run(backend(), RED_ROUTE, ScriptedAgent(policy=cruise(10.0)))
    assert out.infractions["red_light"] == ["Agent ran a red light 100 at (x=-14.500, y=5.600, z=0.000)"]
    assert events == [("red_light", out.infractions["red_light"][0])]
    assert out.scores["score_penalty"] == pytest.approx(0.7)
    assert out.status == scoring.STATUS_COMPLETED


def test_stopping_at_the_red_light_and_going_on_green_is_clean():
    be = backend()
    out, events = run(be, RED_ROUTE, expert(be))
    assert out.status == scoring.STATUS_PERFECT and events == []
    # It waited: the route took longer than driving through at 10 m/s would.
    assert out.duration_game > 100.0 / 10.0 + 5.0


def test_running_the_stop_sign_costs_0_8_with_the_leaderboard_message():
    out, events = run(backend(), STOP_ROUTE, ScriptedAgent(policy=cruise(8.0)))
    assert out.infractions["stop_infraction"] == ["Agent ran a stop with id=201 at (x=244.800, y=-15.500, z=0.000)"]
    assert out.scores["score_penalty"] == pytest.approx(0.8)


def test_a_full_stop_inside_the_stop_area_is_clean_and_one_before_it_is_not():
    def stop_at(y_front_max):
        state = {"stopped": False}

        def brake(t, v):
            ego = be.session.world.ego
            front = ego.position[1] + ego.LENGTH / 2
            if not state["stopped"] and front > y_front_max:
                if v < 0.01:
                    state["stopped"] = True
                return not state["stopped"]
            return False

        return brake

    be = backend()
    out, _ = run(be, STOP_ROUTE, ScriptedAgent(policy=cruise(8.0, stop_at(-19.0))))  # front 3.5 m before the line
    assert out.infractions["stop_infraction"] == [] and out.status == scoring.STATUS_PERFECT
    be = backend()
    out, _ = run(be, STOP_ROUTE, ScriptedAgent(policy=cruise(8.0, stop_at(-40.0))))  # 24 m before: not in the area
    assert len(out.infractions["stop_infraction"]) == 1


def test_the_expert_stops_at_the_stop_sign():
    be = backend()
    out, events = run(be, STOP_ROUTE, expert(be))
    assert out.status == scoring.STATUS_PERFECT and events == []


def test_hitting_a_walker_costs_0_5_with_the_leaderboard_message():
    be = backend()
    out, events = run(be, WALKER_ROUTE, ScriptedAgent(policy=cruise(10.0)))
    hits = out.infractions["collisions_pedestrian"]
    assert len(hits) == 1
    assert hits[0].startswith("Agent collided against object with type=walker.pedestrian.") and " and id=" in hits[0]
    assert out.scores["score_penalty"] == pytest.approx(0.5)
    assert out.infractions["collisions_vehicle"] == []  # the parked car stands clear of the lane


def test_the_expert_waits_for_the_walker():
    be = backend()
    out, events = run(be, WALKER_ROUTE, expert(be))
    assert out.status == scoring.STATUS_PERFECT and events == []
    assert be.last_session.scenarios[0].released  # the walker did step out


def test_a_standing_ego_touched_by_a_walker_is_not_at_fault():
    be = backend(max_ticks=400)
    session = be.prepare(WALKER_ROUTE, 0)
    ego = session.world.ego
    w = session.world.spawn_walker(np.array([ego.position + [0.0, 3.0], ego.position - [0.0, 3.0]]), speed=1.5)
    contacts = []
    for _ in range(60):
        session.world.tick(__import__("carla_eval.sandbox.vehicle_model", fromlist=["AppliedControl"]).AppliedControl(0.0, 0.0, 1.0))
        contacts += session.world.walker_contacts
        session.rule_criteria.update(session.world.time, ego, session.world.walker_contacts)
    assert contacts and w.crashed
    assert session.criteria.infractions["collisions_pedestrian"] == []


# ---------------------------------------------------------------------------- traffic, scenarios, abilities
def test_background_cars_stop_at_red_lights():
    be = backend(traffic=True, max_ticks=900)
    session = be.prepare(RED_ROUTE, 3)
    world = session.world
    from carla_eval.sandbox.vehicle_model import AppliedControl

    ran = []
    prev = {}
    for _ in range(900):
        world.tick(AppliedControl(0.0, 0.0, 1.0))
        session.traffic.update()
        states = world.light_states()
        for v in world.traffic:
            u = v.path_coord()
            for u_line, line in world.rules.lines_on(v.path):
                if line.kind != "light" or u is None or v.actor_id not in prev:
                    continue
                before, after = prev[v.actor_id] + v.LENGTH / 2, u + v.LENGTH / 2
                if before < u_line <= after and states[line.control_id] == RED:
                    ran.append((v.actor_id, line.control_id))
        prev = {v.actor_id: v.path_coord() for v in world.traffic if v.path_coord() is not None}
        assert not any(v.crashed for v in world.traffic)
    assert ran == []


def test_rule_scenarios_need_their_feature_on_the_route():
    be = backend()
    bad = RouteConfig(0, "b", "signals", ((30.0, 2.0, 0.0), (200.0, 2.0, 0.0)),
                      (ScenarioConfig("red", "VanillaSignalizedTurnEncounterRedLight", (60.0, 2.0, 0.0, 0.0)),))
    # A route that can never run is an invalid route (never retried), naming the scenario's reason.
    with pytest.raises(RouteInvalidError, match="scenario 'red': the route passes no traffic light"):
        be.prepare(bad, 0)


def test_new_types_count_for_bench2drive_abilities():
    assert metrics.abilities_of("VanillaSignalizedTurnEncounterRedLight", SCENARIO_ABILITIES["VanillaSignalizedTurnEncounterRedLight"]) == {"Traffic_Signs"}
    assert metrics.abilities_of("PedestrianCrossing", SCENARIO_ABILITIES["PedestrianCrossing"]) == {"Emergency_Brake", "Traffic_Signs"}
    assert metrics.abilities_of("DynamicObjectCrossing", SCENARIO_ABILITIES["DynamicObjectCrossing"]) == {"Emergency_Brake"}


# ---------------------------------------------------------------------------- cameras, top-down, ground truth
def _front_view(lights, walkers):
    from agent.rigs import get_rig
    from carla_eval.sandbox.camera.appearance import PRESETS
    from carla_eval.sandbox.camera.renderer import PerspectiveRenderer
    from carla_eval.sandbox.map_index import get_map_index

    index = get_map_index(get_town("signals"))
    front = next(c.to_sensor() for c in get_rig("carla-3cam").cameras if abs(c.yaw) < 1e-6)
    r = PerspectiveRenderer([front], index, PRESETS["clear_noon"], ground_truth=True)
    outs = [r.render(-30.0, 2.0, 0.0, [], skip_first=False, walkers=walkers, lights=l) for l in lights]
    r.close()
    return [(o["rgb"]["front"][..., 2::-1].astype(int), o["semantic"]["front"][..., 2]) for o in outs]


def test_cameras_show_lit_lamps_stop_lines_and_walkers():
    from carla_eval.sandbox.camera.scene import SEMANTIC_CLASSES
    from carla_eval.sandbox.walkers import Walker

    walker = Walker(900, np.array([[-12.5, 5.0], [-12.5, -5.0]]), 1.5, start=3.0)
    views = _front_view([{100: RED}, {100: YELLOW}, {100: GREEN}], [walker])
    sem = views[0][1]
    assert (sem == SEMANTIC_CLASSES["traffic_light"]).sum() > 20
    assert (sem == SEMANTIC_CLASSES["pedestrian"]).sum() > 20
    lamp = sem == SEMANTIC_CLASSES["traffic_light"]
    # The brightest lamp pixel's colour follows the state.
    colours = []
    for rgb, _ in views:
        px = rgb[lamp]
        colours.append(px[np.argmax(px.sum(1))])
    (r0, g0, b0), (r1, g1, b1), (r2, g2, b2) = colours
    assert r0 > 150 and g0 < 90  # red
    assert r1 > 150 and g1 > 110 and b1 < 90  # yellow
    assert g2 > 150 and r2 < 90  # green


def test_top_down_view_draws_lights_and_walkers():
    from carla_eval.sandbox.map_index import get_map_index
    from carla_eval.sandbox.render import RenderStyle, TopDownCamera, TopDownCameraSpec
    from carla_eval.sandbox.walkers import Walker

    index = get_map_index(get_town("signals"))
    cam = TopDownCamera(TopDownCameraSpec(width=128, height=128, fov_deg=90.0, z=20.0, x=8.0), index)
    walker = Walker(900, np.array([[-12.5, 6.0], [-12.5, -6.0]]), 1.5)
    style = RenderStyle()
    for state, rgb in style.lights:
        img = cam.render(-20.0, 2.0, 0.0, [], [walker], {100: state})
        assert np.all(img[..., :3] == rgb[::-1], axis=-1).sum() > 5, state
        assert np.all(img[..., :3] == style.walker[::-1], axis=-1).sum() > 2


def test_expert_ground_truth_has_walkers_and_lights():
    be = backend(max_ticks=3)
    seen = []
    agent = expert(be)

    def on_tick(ti):
        seen.append(agent.ground_truth())

    be.run_route(WALKER_ROUTE, agent, "", seed=0, on_tick=on_tick)
    assert seen[0].lights and set(seen[0].lights.values()) <= {RED, YELLOW, GREEN}
    assert [w.type_id.startswith("walker.pedestrian.") for w in seen[0].walkers] == [True]


def test_background_cars_stop_at_stop_signs_before_going_on():
    from carla_eval.sandbox.vehicle_model import AppliedControl

    be = backend(traffic=True)
    session = be.prepare(STOP_ROUTE, 5)
    world = session.world
    stopped: dict[int, bool] = {}
    prev: dict[int, float] = {}
    passed = []
    for _ in range(600):
        world.tick(AppliedControl(0.0, 0.0, 1.0))
        session.traffic.update()
        for v in world.traffic:
            u = v.path_coord()
            if u is None:
                continue
            for u_line, line in world.rules.lines_on(v.path):
                if line.kind != "stop":
                    continue
                front = u + v.LENGTH / 2
                if 0.0 <= u_line - front < 4.0 and v.speed < 0.1:
                    stopped[v.actor_id] = True
                if v.actor_id in prev and prev[v.actor_id] < u_line <= front:
                    passed.append((v.actor_id, stopped.get(v.actor_id, False)))
            prev[v.actor_id] = u + v.LENGTH / 2
    assert passed, "no car crossed a stop line"
    assert all(ok for _, ok in passed), passed

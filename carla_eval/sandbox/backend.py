"""The sandbox backend: plays the leaderboard evaluator's side of the agent contract on highway-env.

Per route: build the town's world with the route's seed, plan the route, give the agent its global
plan, ``setup``, validate ``sensors()``, then every 0.05 s tick: read the sensors, call the agent,
apply its control through the vehicle model, step the world, run the scenarios and the criteria;
finally ``destroy`` the agent and score the route with the leaderboard formula. Agent failures
become statuses (never exceptions); an exception out of ``run_route`` is a simulator or route-file
problem.

Determinism: everything random comes from the route seed, so the same route, seed and control
sequence give the same trajectory bit for bit (replays run the recorded controls through
``agents.replay_agent``).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from carla_eval import scoring
from carla_eval.backend import RouteInvalidError, RouteOutcome, RouteTrace, TickInfo
from carla_eval.routes import RouteConfig
from carla_eval.sandbox.config import SandboxConfig
from carla_eval.sandbox.criteria import RouteCriteria
from carla_eval.sandbox.map_index import MapIndex, get_map_index
from carla_eval.sandbox.route_plan import GlobalPlan, RoutePlan, RoutePlanError, RoutePlanner, build_global_plan
from carla_eval.sandbox.scenarios import SCENARIO_ABILITIES, Scenario, ScenarioContext, ScenarioError, build_scenarios
from carla_eval.sandbox.camera.appearance import route_appearance
from carla_eval.sandbox.sensors import EgoReading, SensorConfigError, SensorSuite
from carla_eval.sandbox.signal_criteria import SignalCriteria
from carla_eval.sandbox.towns import Town, get_town
from carla_eval.sandbox.traffic import TownPaths, TrafficManager, get_town_paths
from carla_eval.sandbox.vehicle_model import VehicleModel, sanitize_control
from carla_eval.sandbox.vehicles import StaticVehicle
from carla_eval.sandbox.walkers import spawn_ambient
from carla_eval.sandbox.world import World

log = logging.getLogger(__name__)


@dataclass
class RouteSession:
    """Everything about the route being run; the privileged expert and data collection read it."""

    route: RouteConfig
    seed: int
    town: Town
    index: MapIndex
    paths: TownPaths
    plan: RoutePlan
    global_plan: GlobalPlan
    world: World
    traffic: TrafficManager
    scenarios: list[Scenario]
    criteria: RouteCriteria
    sensors: SensorSuite | None = None  # the agent's sensors; ``sensors.ground_truth`` holds depth / semantic
    rule_criteria: SignalCriteria | None = None  # red lights, stop signs, pedestrian collisions

    @property
    def ego_progress_s(self) -> float:
        """Completed route length (m) as the route-completion criterion counts it."""
        return float(self.plan.s[min(self.criteria.progress, len(self.plan.s) - 1)])


@dataclass
class RouteStats:
    """Timing and bookkeeping of the last route (for benchmarks and logs)."""

    ticks: int = 0
    sim_time: float = 0.0
    wall_time: float = 0.0
    agent_time: float = 0.0
    sensor_time: float = 0.0
    world_time: float = 0.0
    fixed_controls: int = 0  # ticks whose control was non-finite or out of range
    max_vehicles: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def agent_caller(agent: Any) -> Callable[[dict, float], Any]:
    """How the evaluator calls this agent each tick (mirrors the leaderboard's AgentWrapper):
    ``agent(input_data, timestamp)`` when its ``__call__`` takes those two arguments (our
    AutonomousAgent base), else ``run_step`` directly with ``manual_gear_shift`` cleared, as the
    leaderboard base's no-argument ``__call__`` would."""
    call = getattr(agent, "__call__", None) if callable(agent) else None
    if call is not None:
        try:
            params = [p for p in inspect.signature(call).parameters.values() if p.kind != p.VAR_KEYWORD]
        except (TypeError, ValueError):
            params = []
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params):
            return lambda data, ts: agent(data, ts)

    def direct(data: dict, ts: float):
        control = agent.run_step(data, ts)
        try:
            control.manual_gear_shift = False
        except AttributeError:
            pass
        return control

    return direct


def metric_entry(x: float, y: float, yaw: float, velocity: np.ndarray, accel: np.ndarray, yaw_rate: float) -> dict[str, list[float]]:
    """Bench2Drive's per-tick vehicle state in CARLA conventions (world frame; rotation in degrees
    [roll, pitch, yaw]; angular velocity in deg/s as ``Actor.get_angular_velocity``)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return {
        "acceleration": [float(accel[0]), float(accel[1]), 0.0],
        "angular_velocity": [0.0, 0.0, math.degrees(yaw_rate)],
        "forward_vector": [c, s, 0.0],
        "right_vector": [-s, c, 0.0],
        "location": [x, y, 0.0],
        "rotation": [0.0, 0.0, math.degrees(yaw)],
    }


class SandboxBackend:
    """The embedded simulator backend (implements carla_eval.backend.Backend)."""

    name = "sandbox"

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.model = VehicleModel(self.config.vehicle)
        self.session: RouteSession | None = None
        self.last_session: RouteSession | None = None
        self.last_stats = RouteStats()
        self._closed = False
        self._context_cameras: dict[str, Any] = {}

    # ----------------------------------------------------------------- set-up
    @classmethod
    def route_error(cls, route: RouteConfig, options: dict[str, Any]) -> str | None:
        """Why ``route`` can never run here (malformed, unknown town, waypoints that cannot be
        joined along the lanes), or None; ``options`` are the backend options of the run."""
        from carla_eval.backend_factory import dataclass_from_options

        config = dataclass_from_options(SandboxConfig, options) if options else SandboxConfig()
        try:
            cls._plan(route, config)
        except RouteInvalidError as exc:
            return str(exc)
        return None

    @staticmethod
    def _plan(route: RouteConfig, config: SandboxConfig) -> tuple[Town, MapIndex, RoutePlan]:
        if route.error:
            raise RouteInvalidError(f"route {route.route_id!r} is malformed: {route.error}")
        try:
            town = get_town(route.town)
            index = get_map_index(town)
            plan = RoutePlanner(index, config.route_plan).plan([w[:2] for w in route.waypoints])
        except (RoutePlanError, ValueError) as exc:
            raise RouteInvalidError(f"route {route.route_id!r}: {exc}") from exc
        return town, index, plan

    def prepare(self, route: RouteConfig, seed: int) -> RouteSession:
        """Build the world, plan and scenarios of ``route`` (no agent involved).

        Raises RouteInvalidError (a ValueError) for a malformed route, an unknown town, waypoints
        off the lanes or an invalid scenario.
        """
        town, index, plan = self._plan(route, self.config)
        paths = get_town_paths(town, index)
        gplan = build_global_plan(plan, town.geo, self.config.plan_sample_distance)
        world = World(index, paths, seed, self.config.dt, self.model, self.config.traffic.guard)
        world.spawn_ego(plan.xy[0], float(plan.yaw[0]))
        traffic = TrafficManager(world, paths, self.config.traffic)
        ctx = ScenarioContext(world, plan, index, traffic)
        try:
            scenarios = build_scenarios(route.scenarios, ctx)
        except ScenarioError as exc:
            raise RouteInvalidError(f"route {route.route_id!r}: {exc}") from exc
        for sc in scenarios:
            sc.start()
        traffic.populate()
        if town.walker_paths and self.config.ambient_walkers > 0:
            spawn_ambient(world, self.config.ambient_walkers, np.random.default_rng(seed + 17),
                          plan.xy[len(plan.xy) // 2], radius=0.5 * plan.length + 60.0)
        criteria = RouteCriteria(plan, index, self.config.dt, self.config.criteria)
        rule_criteria = SignalCriteria(index, world.lights, criteria.infractions)
        return RouteSession(route, seed, town, index, paths, plan, gplan, world, traffic, scenarios, criteria,
                            rule_criteria=rule_criteria)

    # ----------------------------------------------------------------- the route
    def run_route(
        self,
        route: RouteConfig,
        agent: Any,
        agent_config: str,
        *,
        repetition: int = 0,
        seed: int = 0,
        on_tick: Callable[[TickInfo], None] | None = None,
    ) -> RouteOutcome:
        """Run ``route`` with ``agent`` to the end (see the module docstring)."""
        if self._closed:
            raise RuntimeError("SandboxBackend is closed")
        wall0 = time.perf_counter()
        session = self.prepare(route, seed)
        self.session = session
        stats = RouteStats()
        self.last_stats = stats
        failure: str | None = None
        error: str | None = None
        trace: RouteTrace | None = None
        infraction_steps: list[tuple[int, str, str]] = []
        metric_info: dict[str, dict[str, list[float]]] = {}
        suite = None
        try:
            try:
                agent.set_global_plan(session.global_plan.gps, session.global_plan.world)
                agent.setup(agent_config)
            except Exception:
                failure, error = scoring.STATUS_AGENT_SETUP, traceback.format_exc(limit=8)
            if failure is None:
                try:
                    specs = agent.sensors()
                except Exception:
                    failure, error = scoring.STATUS_AGENT_SETUP, traceback.format_exc(limit=8)
                else:
                    try:
                        appearance = route_appearance(route.weathers, seed, route.route_id, self.config.appearance_jitter)
                        suite = SensorSuite(_validated(specs, self.config.max_mount_distance), session.index, session.town.geo,
                                            appearance, self.config.camera_ground_truth)
                        session.sensors = suite
                    except SensorConfigError as exc:
                        failure, error = scoring.STATUS_SENSORS_INVALID, str(exc)
            if failure is None and suite is not None:
                failure, error, trace, metric_info = self._loop(session, agent, suite, stats, infraction_steps, on_tick)
        finally:
            try:
                agent.destroy()
            except Exception:
                log.warning("agent.destroy() raised:\n%s", traceback.format_exc(limit=4))
            if suite is not None:
                suite.close()
            self.last_session = session
            self.session = None
        infractions = session.criteria.finalize()
        rc = session.criteria.route_completion if trace is not None else 0.0
        scores = scoring.route_scores(rc, infractions, self.config.penalty_formula, self.config.apply_min_speed_penalty)
        status = scoring.final_status(rc, infractions, failure)
        stats.wall_time = time.perf_counter() - wall0
        stats.sim_time = session.world.time
        scenario_type = route.scenario_type
        return RouteOutcome(
            route=route,
            repetition=repetition,
            status=status,
            infractions=infractions,
            scores=scores,
            route_length=session.plan.length,
            duration_game=session.world.time,
            duration_system=stats.wall_time,
            scenario_name=scenario_type,
            town_name=route.town,
            ability=SCENARIO_ABILITIES.get(scenario_type, ""),
            save_name=f"{route.record_id(repetition)}_{route.town}_{scenario_type}",
            metric_info=metric_info,
            trace=trace,
            infraction_steps=infraction_steps,
            error=error,
        )

    def _loop(self, session: RouteSession, agent: Any, suite: SensorSuite, stats: RouteStats,
              infraction_steps: list, on_tick) -> tuple[str | None, str | None, RouteTrace, dict]:
        world, criteria = session.world, session.criteria
        ego = world.ego
        call = agent_caller(agent)
        controls: list[tuple[float, float, float]] = []
        states: list[tuple[float, float, float, float]] = []
        metric_info: dict[str, dict[str, list[float]]] = {}
        failure: str | None = None
        error: str | None = None
        prev_vel = np.array([ego.speed * math.cos(ego.heading), ego.speed * math.sin(ego.heading)])
        tick = 0
        while True:
            t0 = time.perf_counter()
            st = ego.state
            reading = EgoReading(st.x, st.y, st.yaw, st.speed, st.accel, st.yaw_rate)
            input_data = suite.read(world.frame, reading, world.road.vehicles, world.walkers, world.light_states())
            t1 = time.perf_counter()
            try:
                control = call(input_data, world.time)
            except Exception:
                failure, error = scoring.STATUS_AGENT_CRASH, traceback.format_exc(limit=8)
                break
            t2 = time.perf_counter()
            applied = sanitize_control(control)
            stats.fixed_controls += int(applied.fixed)
            ego_s = session.ego_progress_s
            for sc in session.scenarios:
                sc.update(ego_s)
            contacts = world.tick(applied)
            session.traffic.update()
            self._remove_far_actors(session)
            others = [v for v in world.road.vehicles if v is not ego and not isinstance(v, StaticVehicle)]
            result = criteria.update(tick, world.time, ego, contacts, others)
            result.new_events.extend(session.rule_criteria.update(world.time, ego, world.walker_contacts))
            t3 = time.perf_counter()
            stats.sensor_time += t1 - t0
            stats.agent_time += t2 - t1
            stats.world_time += t3 - t2
            stats.max_vehicles = max(stats.max_vehicles, len(world.road.vehicles))
            st = ego.state
            controls.append((applied.throttle, applied.steer, applied.brake))
            states.append((st.x, st.y, st.yaw, st.speed))
            vel = np.array([st.speed * math.cos(st.yaw), st.speed * math.sin(st.yaw)])
            if self.config.record_metric_info:
                metric_info[str(tick)] = metric_entry(st.x, st.y, st.yaw, vel, (vel - prev_vel) / world.dt, st.yaw_rate)
            prev_vel = vel
            for key, msg in result.new_events:
                infraction_steps.append((tick, key, msg))
            if on_tick is not None:
                on_tick(TickInfo(tick, world.time, (st.x, st.y), st.yaw, st.speed, applied.throttle, applied.steer,
                                 applied.brake, result.route_completion, list(result.new_events)))
            tick += 1
            if result.done:
                failure = result.failure
                break
        stats.ticks = tick
        trace = RouteTrace(seed=session.seed, controls=np.asarray(controls, dtype=np.float64).reshape(-1, 3),
                           ego=np.asarray(states, dtype=np.float64).reshape(-1, 4))
        return failure, error, trace, metric_info

    def _remove_far_actors(self, session: RouteSession) -> None:
        world = session.world
        radius = self.config.traffic.active_radius + 50.0
        for v in list(world.actors):
            if np.hypot(*(v.position - world.ego.position)) > radius:
                world.remove(v)

    def context_view(self) -> np.ndarray | None:
        """Top-down RGB [192, 192, 3] uint8 of the running route around the ego (40 m x 40 m, 12 m
        behind to 28 m ahead), for videos; None between routes. Never an agent input."""
        session = self.session
        if session is None:
            return None
        cam = self._context_cameras.get(session.town.name)
        if cam is None:
            from carla_eval.sandbox.render import TopDownCamera, TopDownCameraSpec

            cam = TopDownCamera(TopDownCameraSpec(width=192, height=192, fov_deg=90.0, z=20.0, x=8.0), session.index)
            self._context_cameras[session.town.name] = cam
        st = session.world.ego.state
        world = session.world
        image = cam.render(st.x, st.y, st.yaw, world.road.vehicles, world.walkers, world.light_states())
        return np.ascontiguousarray(image[..., 2::-1])

    # ----------------------------------------------------------------- expert, close
    def create_expert_agent(self, config=None):
        """The privileged expert bound to this backend (reads the running route's ground truth)."""
        from carla_eval.sandbox.expert import ExpertAgent

        return ExpertAgent(self, config)

    def close(self) -> None:
        self._closed = True
        self.session = None


def _validated(specs, max_mount_distance):
    from carla_eval.sandbox.sensors import validate_sensors

    return validate_sensors(specs, max_mount_distance)

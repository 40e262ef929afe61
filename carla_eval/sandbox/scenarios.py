"""Bench2Drive-like scenario events of the sandbox, each tied to one Bench2Drive ability.

A route's ``<scenario type=...>`` elements become :class:`Scenario` objects; the trigger point is
projected on the route and each scenario acts when the ego's route progress reaches it (minus an
activation distance, so that actors appear out of the camera's view). Parameters come from
``<name value="..."/>`` children (defaults below). Types:

Emergency_Brake
  HardBrake        a lead car in the ego's lane, slower than the ego, brakes at ``brake_decel``
                   (7 m/s^2) to a stop once the ego closes to ``brake_gap`` (15 m), waits
                   ``hold_time`` (3 s), drives off. Also ``lead_distance`` (70 m), ``lead_speed``.
  CutIn            a car in the ``side`` lane (left/right) passes the ego at +``speed_delta``
                   (4 m/s), cuts in ``cut_gap`` (8 m) ahead of the ego's front and brakes at
                   ``brake_decel`` (4 m/s^2) to ``final_ratio`` (0.6) of the ego's speed.
Overtaking
  StoppedVehicle   a broken-down car stands in the ego's lane at the trigger point
                   (``lateral_offset`` m, default 0); the ego must pass it in another lane.
  SlowVehicle      a car drives at ``slow_speed`` (5 m/s) in the ego's lane ahead of the trigger.
Merging
  HighwayMerge     the main road's lanes carry dense traffic (gaps ``gap_min``-``gap_max`` m,
                   default 15-40) while the ego joins from the on-ramp.
  LaneChangeDense  the lane the route changes into at the trigger carries dense traffic (same
                   parameters), filled out of view around the ego when it approaches.
Give_Way
  JunctionLeftTurn, JunctionRightTurn, JunctionCrossing, RoundaboutEntry
                   the roads with right of way carry traffic with gaps ``gap_min``-``gap_max`` m
                   (default 35-110) at ``speed_min``-``speed_max``; the ego must wait for a gap.
Traffic_Signs and pedestrians
  VanillaSignalizedTurnEncounterRedLight / GreenLight, VanillaNonSignalizedTurnEncounterStopsign,
  PedestrianCrossing, DynamicObjectCrossing: see :mod:`carla_eval.sandbox.scenarios_rules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from carla_eval.routes import ScenarioConfig
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.paths import LanePath
from carla_eval.sandbox.route_plan import RoutePlan
from carla_eval.sandbox.traffic import StreamOverride, TrafficManager
from carla_eval.sandbox.towns import LaneIndex
from carla_eval.sandbox.world import World

SCENARIO_ABILITIES: dict[str, str] = {
    "HardBrake": "Emergency_Brake",
    "CutIn": "Emergency_Brake",
    "StoppedVehicle": "Overtaking",
    "SlowVehicle": "Overtaking",
    "HighwayMerge": "Merging",
    "LaneChangeDense": "Merging",
    "JunctionLeftTurn": "Give_Way",
    "JunctionRightTurn": "Give_Way",
    "JunctionCrossing": "Give_Way",
    "RoundaboutEntry": "Give_Way",
    # Traffic rules and pedestrians (classes in scenarios_rules); Bench2Drive also counts
    # PedestrianCrossing for Traffic_Signs (carla_eval.metrics adds its groups).
    "VanillaSignalizedTurnEncounterRedLight": "Traffic_Signs",
    "VanillaSignalizedTurnEncounterGreenLight": "Traffic_Signs",
    "VanillaNonSignalizedTurnEncounterStopsign": "Traffic_Signs",
    "PedestrianCrossing": "Emergency_Brake",
    "DynamicObjectCrossing": "Emergency_Brake",
}


class ScenarioError(ValueError):
    """A route's scenario cannot be built (unknown type, bad parameter, no lane for its actor)."""


@dataclass
class ScenarioContext:
    world: World
    plan: RoutePlan
    index: MapIndex
    traffic: TrafficManager


def follow_lanes(index: MapIndex, start: LaneIndex, plan: RoutePlan, max_length: float = 1500.0) -> tuple[LaneIndex, ...]:
    """Lanes from ``start`` onward, choosing at each junction the successor on the route's next road
    (else the one keeping the lane id), stopping before a lane would repeat."""
    roads = plan.roads()
    lanes = [start]
    total = index.lanes[start].length
    road_pos = {r: i for i, r in reversed(list(enumerate(roads)))}
    k = road_pos.get((start[0], start[1]), -1)
    while total < max_length:
        succ = [s for s in index.successors[lanes[-1]] if s not in lanes]
        if not succ:
            break
        want = roads[k + 1] if 0 <= k < len(roads) - 1 else None
        pick = next((s for s in succ if (s[0], s[1]) == want), None)
        if pick is None:
            pick = next((s for s in succ if s[2] == lanes[-1][2]), succ[0])
        else:
            k += 1
        lanes.append(pick)
        total += index.lanes[pick].length
    return tuple(lanes)


def _fparam(cfg: ScenarioConfig, key: str, default: float) -> float:
    raw = cfg.param(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ScenarioError(f"scenario {cfg.name!r}: parameter {key}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ScenarioError(f"scenario {cfg.name!r}: parameter {key} is not finite")
    return value


class Scenario:
    """Base: trigger point -> route coordinate ``s_trigger``; ``update(ego_s)`` every tick."""

    activation_distance = 0.0

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        d = np.hypot(ctx.plan.xy[:, 0] - cfg.trigger[0], ctx.plan.xy[:, 1] - cfg.trigger[1])
        k = int(np.argmin(d))
        if d[k] > 10.0:
            raise ScenarioError(f"scenario {cfg.name!r}: trigger point is {d[k]:.1f} m away from the route")
        self.k_trigger = k
        self.s_trigger = float(ctx.plan.s[k])
        self.active = False
        self.actors: list = []

    @property
    def ability(self) -> str:
        return SCENARIO_ABILITIES[self.cfg.type]

    def start(self) -> None:
        """Called once at route start (before the first tick)."""

    def update(self, ego_s: float) -> None:
        if not self.active and ego_s >= self.s_trigger - self.activation_distance:
            self.active = True
            self.activate(ego_s)
        elif self.active:
            self.step(ego_s)

    def activate(self, ego_s: float) -> None:
        """Spawn / configure at activation."""

    def step(self, ego_s: float) -> None:
        """Per tick after activation."""

    # helpers
    def route_lane_at(self, s: float) -> tuple[LaneIndex, float]:
        i = self.ctx.plan.index_at(s)
        return self.ctx.plan.lane[i], float(self.ctx.plan.lane_s[i])

    def spawn_on_route(self, s: float, speed: float, target: float):
        lane, lane_s = self.route_lane_at(s)
        path = LanePath(self.ctx.index, follow_lanes(self.ctx.index, lane, self.ctx.plan))
        pos = path.position(lane_s)
        self.ctx.world.clear_around(pos, 25.0)
        v = self.ctx.world.spawn_traffic(path, lane_s, speed, target, lane_change=False, scenario=True)
        self.actors.append(v)
        return v


class HardBrake(Scenario):
    activation_distance = 70.0

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        self.activation_distance = _fparam(cfg, "lead_distance", 70.0)
        self.brake_gap = _fparam(cfg, "brake_gap", 15.0)
        self.brake_decel = _fparam(cfg, "brake_decel", 7.0)
        self.hold_time = _fparam(cfg, "hold_time", 3.0)
        self.lead_speed = _fparam(cfg, "lead_speed", -1.0)
        self.phase = "idle"
        self.lead = None
        self._hold = 0.0

    def activate(self, ego_s: float) -> None:
        lane, _ = self.route_lane_at(self.s_trigger)
        limit = float(self.ctx.index.lanes[lane].speed_limit)
        speed = self.lead_speed if self.lead_speed > 0 else 0.7 * limit
        self.lead = self.spawn_on_route(ego_s + self.activation_distance, speed, speed)
        self.phase = "follow"

    def step(self, ego_s: float) -> None:
        lead, ego = self.lead, self.ctx.world.ego
        if lead is None or lead not in self.ctx.world.road.vehicles:
            return
        gap = float(np.hypot(*(lead.position - ego.position))) - (lead.LENGTH + ego.LENGTH) / 2
        if self.phase == "follow" and gap <= self.brake_gap:
            lead.forced_decel, lead.forced_min_speed = self.brake_decel, 0.0
            self.phase = "brake"
        elif self.phase == "brake" and lead.speed < 0.05:
            self._hold += self.ctx.world.dt
            if self._hold >= self.hold_time:
                lead.forced_decel = None
                self.phase = "done"


class CutIn(Scenario):
    activation_distance = 0.0

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        side = (cfg.param("side", "left") or "left").lower()
        if side not in ("left", "right"):
            raise ScenarioError(f"scenario {cfg.name!r}: side must be 'left' or 'right', got {side!r}")
        self.side = side
        self.cut_gap = _fparam(cfg, "cut_gap", 8.0)
        self.speed_delta = _fparam(cfg, "speed_delta", 4.0)
        self.brake_decel = _fparam(cfg, "brake_decel", 4.0)
        self.final_ratio = _fparam(cfg, "final_ratio", 0.6)
        self.phase = "idle"
        self.car = None
        self._t = 0.0

    def activate(self, ego_s: float) -> None:
        ego = self.ctx.world.ego
        left, right = self.ctx.index.side_lanes(ego.lane_index)
        lane = (left if self.side == "left" else right) or (right if self.side == "left" else left)
        if lane is None:
            self.phase = "skipped"
            return
        idx = self.ctx.index
        path = LanePath(idx, follow_lanes(idx, lane, self.ctx.plan))
        s_ego, _ = idx.lanes[lane].local_coordinates(ego.position)
        u = max(0.0, float(s_ego) - 30.0)
        pos = path.position(u)
        self.ctx.world.clear_around(pos, 30.0)
        v0 = max(float(ego.speed), 3.0) + self.speed_delta
        self.car = self.ctx.world.spawn_traffic(path, u, v0 + 2.0, v0, lane_change=False, scenario=True)
        self.actors.append(self.car)
        self.phase = "approach"

    def step(self, ego_s: float) -> None:
        car, ego = self.car, self.ctx.world.ego
        if car is None or car not in self.ctx.world.road.vehicles:
            return
        self._t += self.ctx.world.dt
        ahead = float(np.dot(car.position - ego.position, ego.direction)) - (car.LENGTH + ego.LENGTH) / 2
        if self.phase == "approach":
            car.target_speed = max(float(ego.speed), 3.0) + self.speed_delta
            if ahead >= self.cut_gap:
                a, b, _ = car.lane_index
                ego_lane = ego.lane_index
                if (ego_lane[0], ego_lane[1]) == (a, b):
                    car.target_lane_index = ego_lane
                    car.route = None
                    self.phase = "cut"
            elif self._t > 25.0:
                self.phase = "done"
        elif self.phase == "cut":
            if car.lane_index == car.target_lane_index:
                car.forced_min_speed = self.final_ratio * float(ego.speed)
                car.forced_decel = self.brake_decel
                car.speed_cap = car.forced_min_speed
                self.phase = "brake"
        elif self.phase == "brake" and car.speed <= car.forced_min_speed + 0.1:
            car.forced_decel = None
            self._t = 0.0
            self.phase = "cruise"
        elif self.phase == "cruise":
            if self._t > 4.0:
                car.speed_cap = None
                self.phase = "done"


class StoppedVehicle(Scenario):
    activation_distance = 120.0

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        self.lateral = _fparam(cfg, "lateral_offset", 0.0)

    def activate(self, ego_s: float) -> None:
        lane, lane_s = self.route_lane_at(self.s_trigger)
        geo = self.ctx.index.geometry[lane]
        pos = geo.position(lane_s, self.lateral)
        self.ctx.world.clear_around(pos, 30.0)
        self.actors.append(self.ctx.world.spawn_static(pos, float(geo.heading_at(lane_s))))


class SlowVehicle(Scenario):
    activation_distance = 70.0

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        self.activation_distance = _fparam(cfg, "lead_distance", 70.0)
        self.slow_speed = _fparam(cfg, "slow_speed", 5.0)

    def activate(self, ego_s: float) -> None:
        self.spawn_on_route(ego_s + self.activation_distance, self.slow_speed, self.slow_speed)


class DenseTraffic(Scenario):
    """Base of the merging / give-way types: denser traffic on some streams."""

    default_gaps = (15.0, 40.0)

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        g0, g1 = self.default_gaps
        self.gaps = (_fparam(cfg, "gap_min", g0), _fparam(cfg, "gap_max", g1))
        if not 0.0 < self.gaps[0] <= self.gaps[1]:
            raise ScenarioError(f"scenario {cfg.name!r}: need 0 < gap_min <= gap_max, got {self.gaps}")
        smin, smax = _fparam(cfg, "speed_min", -1.0), _fparam(cfg, "speed_max", -1.0)
        self.speeds = (smin, smax) if smin > 0 and smax >= smin else None

    def streams(self) -> list[str]:
        return []

    def start(self) -> None:
        for name in self.streams():
            self.ctx.traffic.override(name, StreamOverride(gap_range=self.gaps, speed_range=self.speeds))


class HighwayMerge(DenseTraffic):
    def streams(self) -> list[str]:
        return [s.name for s in self.ctx.world.town.streams]


class LaneChangeDense(DenseTraffic):
    activation_distance = 220.0

    def start(self) -> None:
        return  # applied on activation

    def _target_stream(self) -> str | None:
        lane, _ = self.route_lane_at(self.s_trigger + 45.0)
        for s in self.ctx.world.town.streams:
            if any(lane in path for path in self.ctx.traffic.paths.stream_paths[s.name]):
                return s.name
        return None

    def activate(self, ego_s: float) -> None:
        name = self._target_stream()
        if name is None:
            return
        self.ctx.traffic.override(name, StreamOverride(gap_range=self.gaps, speed_range=self.speeds))
        self.ctx.traffic.fill_stream(name, around=self.ctx.world.ego.position, behind=150.0, ahead=170.0)
        self.stream = name

    def step(self, ego_s: float) -> None:
        name = getattr(self, "stream", None)
        if name is not None and ego_s > self.s_trigger + 250.0:
            town_stream = next(s for s in self.ctx.world.town.streams if s.name == name)
            self.ctx.traffic.override(name, StreamOverride(gap_range=town_stream.gap_range, speed_range=town_stream.speed_range))
            self.stream = None


class GiveWayTraffic(DenseTraffic):
    default_gaps = (35.0, 110.0)

    def streams(self) -> list[str]:
        town = self.ctx.world.town
        if town.name == "roundabout":
            return [s.name for s in town.streams]
        return [s.name for s in town.streams if s.priority]


SCENARIO_CLASSES: dict[str, type[Scenario]] = {
    "HardBrake": HardBrake,
    "CutIn": CutIn,
    "StoppedVehicle": StoppedVehicle,
    "SlowVehicle": SlowVehicle,
    "HighwayMerge": HighwayMerge,
    "LaneChangeDense": LaneChangeDense,
    "JunctionLeftTurn": GiveWayTraffic,
    "JunctionRightTurn": GiveWayTraffic,
    "JunctionCrossing": GiveWayTraffic,
    "RoundaboutEntry": GiveWayTraffic,
}


def scenario_classes() -> dict[str, type[Scenario]]:
    """Every scenario type's class (this module's and :mod:`scenarios_rules`')."""
    from carla_eval.sandbox.scenarios_rules import RULE_SCENARIO_CLASSES

    out = {**SCENARIO_CLASSES, **RULE_SCENARIO_CLASSES}
    assert set(out) == set(SCENARIO_ABILITIES)
    return out


def build_scenarios(configs: tuple[ScenarioConfig, ...], ctx: ScenarioContext) -> list[Scenario]:
    """Scenario objects of a route, in file order (ScenarioError on an unknown type)."""
    out = []
    classes = scenario_classes()
    for cfg in configs:
        cls = classes.get(cfg.type)
        if cls is None:
            raise ScenarioError(f"unknown scenario type {cfg.type!r} (known: {', '.join(sorted(classes))})")
        out.append(cls(cfg, ctx))
    return out

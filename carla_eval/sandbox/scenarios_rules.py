"""Scenario events about traffic rules and pedestrians (Bench2Drive's Traffic_Signs scenarios, and
its pedestrian ones), in the style of the :mod:`scenarios` module. Types:

VanillaSignalizedTurnEncounterRedLight, VanillaSignalizedTurnEncounterGreenLight
    the route crosses a signalised junction; the cycle is set at route start so that the ego,
    driving at ``arrival_speed`` (10 m/s) from its start, reaches the first light of its route
    ``red_wait`` s (8) before it turns green (red) or ``into_green`` s (1) after it turned green
    (green). The lights then run their normal cycle.
VanillaNonSignalizedTurnEncounterStopsign
    the route crosses a stop sign; the priority roads carry traffic with gaps ``gap_min``-``gap_max``
    m (default 40-110): the ego stops at the line, then waits for a gap.
PedestrianCrossing
    three walkers wait on the right sidewalk at the first zebra crossing past the trigger point;
    when the ego is ``reaction_time`` s (3.5, at its speed) or ``min_trigger_dist`` m (12) from the
    crossing they cross the whole road after an idle of 0-1.5 s, each at 1.3-2.0 m/s (drawn from
    the route's generator), as Bench2Drive's PedestrianCrossing does.
DynamicObjectCrossing
    a car is parked beside the ego's lane ``distance`` m (12) past the trigger point with a walker
    hidden behind it; when the ego is ``reaction_time`` s (2.1) or ``min_trigger_dist`` m (6) from
    where the walker would enter its lane, the walker steps out at ``walker_speed`` (2 m/s) and
    crosses the road, as in Bench2Drive's DynamicObjectCrossing.
"""

from __future__ import annotations

import math

import numpy as np

from carla_eval.routes import ScenarioConfig
from carla_eval.sandbox.scenarios import DenseTraffic, Scenario, ScenarioContext, ScenarioError, _fparam
from carla_eval.sandbox.towns.base import LANE_WIDTH

ROAD_HALF = LANE_WIDTH  # two-lane roads: the axis is LANE_WIDTH from either edge
SIDEWALK_OFFSET = 1.8  # m beyond the road edge where walkers wait


def _route_s_of_lane_point(ctx: ScenarioContext, lane, s_lane: float) -> float | None:
    plan = ctx.plan
    ks = [k for k, l in enumerate(plan.lane) if l == lane]
    if not ks:
        return None
    k = min(ks, key=lambda i: abs(float(plan.lane_s[i]) - s_lane))
    return float(plan.s[k]) + s_lane - float(plan.lane_s[k])


class SignalizedTurn(Scenario):
    """Sets the first light's cycle for a red or a green arrival (see the module docstring)."""

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        self.arrival_speed = _fparam(cfg, "arrival_speed", 10.0)
        self.red_wait = _fparam(cfg, "red_wait", 8.0)
        self.into_green = _fparam(cfg, "into_green", 1.0)
        if self.arrival_speed <= 0.0:
            raise ScenarioError(f"scenario {cfg.name!r}: arrival_speed must be > 0")
        self.light = None
        for spec in ctx.world.town.signals:
            s = _route_s_of_lane_point(ctx, spec.lane, spec.s_stop)
            if s is not None and (self.light is None or s < self.light[0]):
                self.light = (s, spec)
        if self.light is None:
            raise ScenarioError(f"scenario {cfg.name!r}: the route passes no traffic light")

    def start(self) -> None:
        s_line, spec = self.light
        accel = 2.0
        t_acc = self.arrival_speed / accel
        d_acc = 0.5 * accel * t_acc**2
        t_arrive = t_acc + max(0.0, s_line - d_acc) / self.arrival_speed if s_line > d_acc else math.sqrt(2 * s_line / accel)
        into = -self.red_wait if self.cfg.type.endswith("RedLight") else self.into_green
        self.ctx.world.lights.set_green_at(spec.signal_id, t_arrive, into)


class StopSignTurn(DenseTraffic):
    default_gaps = (40.0, 110.0)

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        if not any(_route_s_of_lane_point(ctx, sp.lane, sp.s_stop) is not None for sp in ctx.world.town.stop_signs):
            raise ScenarioError(f"scenario {cfg.name!r}: the route passes no stop sign")

    def streams(self) -> list[str]:
        return [s.name for s in self.ctx.world.town.streams if s.priority]


class _WalkerScenario(Scenario):
    """Walkers held until the ego is close (time to arrival or distance to ``s_collision``)."""

    reaction_time = 3.5
    min_trigger_dist = 12.0

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        self.reaction_time = _fparam(cfg, "reaction_time", self.reaction_time)
        self.min_trigger_dist = _fparam(cfg, "min_trigger_dist", self.min_trigger_dist)
        self.walkers: list = []
        self.s_collision = self.s_trigger
        self.released = False

    def update(self, ego_s: float) -> None:
        if self.released or not self.walkers:
            return
        d = self.s_collision - ego_s
        v = max(float(self.ctx.world.ego.speed), 0.1)
        if d <= self.min_trigger_dist or d / v <= self.reaction_time:
            self.released = True
            for w in self.walkers:
                w.hold = False

    def _crossing_walker(self, start: np.ndarray, end: np.ndarray, speed: float, idle: float):
        w = self.ctx.world.spawn_walker(np.array([start, end]), speed=speed, idle=idle,
                                        type_id=f"walker.pedestrian.{int(self.ctx.world.rng.integers(1, 49)):04d}")
        w.hold = True
        self.walkers.append(w)
        self.actors.append(w)
        return w


class PedestrianCrossing(_WalkerScenario):
    reaction_time = 3.5
    min_trigger_dist = 12.0
    # Bench2Drive's three walkers: (along the crossing, distance beyond the road edge) m.
    GROUP = ((0.4, 1.5), (1.0, 2.5), (1.6, 0.5))

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        plan = ctx.plan
        best = None
        for cw in ctx.world.town.crosswalks:
            d = np.hypot(plan.xy[:, 0] - cw.centre[0], plan.xy[:, 1] - cw.centre[1])
            k = int(np.argmin(d))
            s = float(plan.s[k])
            if d[k] < 3.0 and s > self.s_trigger - 1.0 and (best is None or s < best[0]):
                best = (s, cw, k)
        if best is None:
            raise ScenarioError(f"scenario {cfg.name!r}: no zebra crossing on the route after the trigger point")
        self.s_collision, self.crosswalk, self.k_cross = best

    def start(self) -> None:
        cw, k = self.crosswalk, self.k_cross
        yaw = float(self.ctx.plan.yaw[k])
        f = np.array([math.cos(yaw), math.sin(yaw)])
        r = np.array([-math.sin(yaw), math.cos(yaw)])
        centre = np.asarray(cw.centre)
        rng = self.ctx.world.rng
        for along, beyond in self.GROUP:
            a = along - cw.length / 2 + 0.5
            start = centre + f * a + r * (ROAD_HALF + beyond)
            end = centre + f * a - r * (ROAD_HALF + 2.3 * beyond + 1.5)
            self._crossing_walker(start, end, float(rng.uniform(1.3, 2.0)), float(rng.uniform(0.0, 1.5)))


class DynamicObjectCrossing(_WalkerScenario):
    reaction_time = 2.1
    min_trigger_dist = 6.0

    def __init__(self, cfg: ScenarioConfig, ctx: ScenarioContext) -> None:
        super().__init__(cfg, ctx)
        self.distance = _fparam(cfg, "distance", 12.0)
        self.walker_speed = _fparam(cfg, "walker_speed", 2.0)
        if self.walker_speed <= 0.0:
            raise ScenarioError(f"scenario {cfg.name!r}: walker_speed must be > 0")
        self.s_block = self.s_trigger + self.distance
        if self.s_block + 10.0 > ctx.plan.length:
            raise ScenarioError(f"scenario {cfg.name!r}: the route ends before the parked car")

    def start(self) -> None:
        plan, world = self.ctx.plan, self.ctx.world
        k = plan.index_at(self.s_block)
        lane = plan.lane[k]
        geo = self.ctx.index.geometry[lane]
        s_lane = float(plan.lane_s[k])
        half = self.ctx.index.lanes[lane].width_at(s_lane) / 2
        lateral = half + 1.6 + 1.0  # a parked car's centre, clear of the lane
        car = world.spawn_static(geo.position(s_lane, lateral), float(geo.heading_at(s_lane)))
        self.actors.append(car)
        s_walk = s_lane + car.LENGTH / 2 + 0.8
        start = geo.position(s_walk, lateral - 0.2)
        end = geo.position(s_walk, -(half + ROAD_HALF + SIDEWALK_OFFSET + 1.0))
        self.s_collision = float(plan.s[k]) + car.LENGTH / 2 + 0.8
        self._crossing_walker(start, end, self.walker_speed, 0.0)


RULE_SCENARIO_CLASSES: dict[str, type[Scenario]] = {
    "VanillaSignalizedTurnEncounterRedLight": SignalizedTurn,
    "VanillaSignalizedTurnEncounterGreenLight": SignalizedTurn,
    "VanillaNonSignalizedTurnEncounterStopsign": StopSignTurn,
    "PedestrianCrossing": PedestrianCrossing,
    "DynamicObjectCrossing": DynamicObjectCrossing,
}

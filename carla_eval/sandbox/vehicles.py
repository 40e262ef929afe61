"""highway-env vehicle classes of the sandbox: the ego (driven by controls) and background traffic.

Both keep highway-env's interface (``position``, ``heading``, ``speed``, ``lane_index``, ``LENGTH``...)
so highway-env's IDM / MOBIL logic sees the ego like any other car, but look their lane up through
:class:`~carla_eval.sandbox.map_index.MapIndex` instead of scanning the whole network.
"""

from __future__ import annotations

import math

import numpy as np
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.kinematics import Vehicle

from carla_eval.sandbox.giveway import GiveWay
from carla_eval.sandbox.guard import GuardLeader
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.paths import LanePath
from carla_eval.sandbox.vehicle_model import AppliedControl, VehicleModel, VehicleState


def idm_accel(speed: float, v0: float, gap: float, closing: float, a_max: float = 3.0, b: float = 4.0,
              s0: float = 2.0, time_gap: float = 1.5, delta: float = 4.0) -> float:
    """Intelligent Driver Model acceleration (m/s^2) towards a leader ``gap`` m ahead (bumper to
    bumper) approached at ``closing`` m/s; ``gap = inf`` for a free road."""
    free = 1.0 - (max(speed, 0.0) / max(v0, 0.1)) ** delta
    if not math.isfinite(gap):
        return a_max * free
    s_star = s0 + max(0.0, speed * time_gap + speed * closing / (2.0 * math.sqrt(a_max * b)))
    return a_max * (free - (s_star / max(gap, 0.1)) ** 2)


class EgoVehicle(Vehicle):
    """The vehicle the agent drives. ``apply(control)`` sets the control for the next ``step``."""

    def __init__(self, road, position, heading: float, model: VehicleModel, index: MapIndex, actor_id: int = 0) -> None:
        self.LENGTH = model.config.length
        self.WIDTH = model.config.width
        self._index = index
        super().__init__(road, position, heading, 0.0)
        self.model = model
        self.state = VehicleState(float(position[0]), float(position[1]), float(heading))
        self.control = AppliedControl(0.0, 0.0, 1.0)
        self.actor_id = actor_id
        self.type_id = "vehicle.sandbox.ego"
        self.diagonal = math.hypot(self.LENGTH, self.WIDTH)

    @property
    def target_speed(self) -> float:
        """What highway-env's MOBIL assumes the ego wants: its lane's speed limit."""
        return float(self.lane.speed_limit) if self.lane is not None else 20.0

    def act(self, action=None) -> None:  # the agent acts through apply()
        return

    def apply(self, control: AppliedControl) -> None:
        self.control = control

    def step(self, dt: float) -> None:
        self.state = self.model.step(self.state, self.control, dt)
        self.sync_from_state()

    def sync_from_state(self) -> None:
        self.position = np.array([self.state.x, self.state.y])
        self.heading = self.state.yaw
        self.speed = self.state.speed
        self.on_state_update()

    def on_state_update(self) -> None:
        if self.road:
            self.lane_index = self._index.closest_lane(self.position, self.heading)
            self.lane = self._index.lanes[self.lane_index]

    def push(self, offset: np.ndarray, speed: float) -> None:
        """Collision response: move by ``offset`` (m) and set the speed (m/s)."""
        self.state.x += float(offset[0])
        self.state.y += float(offset[1])
        self.state.speed = speed
        self.sync_from_state()


class StaticVehicle(Vehicle):
    """A car that stands still (broken down / parked): never moves, but collides and is seen by IDM."""

    def __init__(self, road, position, heading: float, actor_id: int, type_id: str = "vehicle.sandbox.static") -> None:
        super().__init__(road, position, heading, 0.0)
        self.actor_id = actor_id
        self.type_id = type_id
        self.finished = False

    def act(self, action=None) -> None:
        return

    def step(self, dt: float) -> None:
        self.speed = 0.0
        self.impact = None


class TrafficVehicle(IDMVehicle):
    """Background car: highway-env IDM (+ MOBIL lane changes when enabled) along a lane path, plus
    give-way at junctions and hooks for scenarios.

    Zipper courtesy: a car on a lane that ends (an acceleration lane) beside this car and ahead of it
    is treated as a leader, so a merging car gets a gap.

    Collision guard (set by the world every tick, :mod:`guard`): ``guard`` lists the cars ahead
    that are in or entering this car's path; it stays behind them (IDM with ``guard_gap`` m and
    ``guard_time_gap`` s). ``hold_until`` (game time, s): after touching another car, the car that
    yields brakes to a stop until then. ``yielding`` tells whether the give-way rule stopped it on
    its last decision.

    Scenario hooks (read every tick): ``speed_cap`` (m/s, caps the IDM target speed),
    ``forced_decel`` (m/s^2, brake at least this hard down to ``forced_min_speed``).
    """

    DISTANCE_WANTED = 5.0 + IDMVehicle.LENGTH

    def __init__(self, road, position, heading: float, speed: float, index: MapIndex, path: LanePath | None,
                 target_speed: float, lane_change: bool, actor_id: int, giveway: GiveWay | None = None,
                 type_id: str = "vehicle.sandbox.idm", start_lane: int = 0) -> None:
        self._index = index
        route = None
        if path is not None and not path.cyclic:
            route = [(a, b, None) for a, b, _ in path.lanes[start_lane:]]
        super().__init__(road, position, heading, speed, target_speed=target_speed, route=route, enable_lane_change=lane_change)
        self.path = path
        self.actor_id = actor_id
        self.type_id = type_id
        self.giveway = giveway
        self.speed_cap: float | None = None
        self.forced_decel: float | None = None
        self.forced_min_speed = 0.0
        self.stop_at: float | None = None  # path coordinate of a stop point set by a scenario
        self.signal_stop: float | None = None  # path coordinate of a stop line / walker (signals.TrafficRules)
        self.finished = False
        self.guard: list[GuardLeader] = []
        self.guard_gap = 1.0
        self.guard_time_gap = 0.6
        self.hold_until: float | None = None
        self.clock = 0.0  # game time of the current decision, s (set by the world)
        self.yielding = False

    def on_state_update(self) -> None:
        if self.road:
            self.lane_index = self._index.closest_lane(self.position, self.heading)
            self.lane = self._index.lanes[self.lane_index]

    def path_coord(self) -> float | None:
        return None if self.path is None else self.path.coord_of_vehicle(self)

    def lane_distance_to(self, other, lane=None) -> float:
        """Distance to ``other`` along this car's path when both are on it (so cars on the next
        lanes of a junction or a ring are measured correctly); highway-env's projection on the
        current lane otherwise."""
        if other is None:
            return np.nan
        if lane is None and self.path is not None:
            u_me, u_other = self.path_coord(), self.path.coord_of_vehicle(other)
            if u_me is not None and u_other is not None:
                d = u_other - u_me
                if self.path.cyclic:
                    half = self.path.length / 2
                    d = (d + half) % self.path.length - half
                return float(d)
        return super().lane_distance_to(other, lane)

    def act(self, action=None) -> None:
        if self.crashed:
            return
        base_target = self.target_speed
        if self.speed_cap is not None:
            self.target_speed = min(self.target_speed, self.speed_cap)
        super().act()
        self.target_speed = base_target
        acc = float(self.action["acceleration"])
        u = self.path_coord()
        self.yielding = False
        if self.giveway is not None and u is not None:
            d = self.giveway.stop_distance(u, self.speed, self.LENGTH, self.road.vehicles, me=self)
            if d is not None:
                self.yielding = True
                acc = min(acc, idm_accel(self.speed, self.target_speed, max(d, 0.0), self.speed, s0=0.5))
        for g in self.guard:
            acc = min(acc, idm_accel(self.speed, self.target_speed, max(g.gap, 0.0), self.speed - g.speed,
                                     s0=self.guard_gap, time_gap=self.guard_time_gap))
        if self.hold_until is not None:
            if self.clock < self.hold_until:
                acc = min(acc, -min(4.0, self.speed / 0.1))
            else:
                self.hold_until = None
        if self.stop_at is not None and u is not None:
            d = self.stop_at - u - self.LENGTH / 2
            acc = min(acc, idm_accel(self.speed, self.target_speed, max(d, 0.0), self.speed, s0=0.5))
        if self.signal_stop is not None and u is not None:
            d = self.signal_stop - u - self.LENGTH / 2
            acc = min(acc, idm_accel(self.speed, self.target_speed, max(d, 0.0), self.speed, s0=0.5))
        acc = min(acc, self._zipper_accel())
        if self.forced_decel is not None and self.speed > self.forced_min_speed:
            acc = min(acc, -self.forced_decel)
        self.action["acceleration"] = float(np.clip(acc, -8.0, self.ACC_MAX))
        if u is not None and self.path is not None and not self.path.cyclic and u > self.path.length - 2.0:
            self.finished = True

    def _zipper_accel(self) -> float:
        """Let a car on an ending lane next to mine merge in front of me when it is ahead of me
        (an IDM leader at its position); +inf when there is none."""
        acc = math.inf
        d, r = self.direction, np.array([-self.direction[1], self.direction[0]])
        for m in getattr(self.road, "merging_vehicles", ()):
            if m is self:
                continue
            rel = m.position - self.position
            ahead, lat = float(np.dot(rel, d)), float(np.dot(rel, r))
            if 2.0 < abs(lat) < 6.0 and 2.0 < ahead < 45.0:
                acc = min(acc, idm_accel(self.speed, self.target_speed, ahead - self.LENGTH, self.speed - m.speed, 3.0, 4.0, 8.0, 1.0))
        return acc

    def step(self, dt: float) -> None:
        super().step(dt)
        if self.speed < 0.0:
            self.speed = 0.0

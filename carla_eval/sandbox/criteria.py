"""Route criteria of the sandbox, with the leaderboard's meaning and messages.

- Route completion: the dense-route point (1 m apart) nearest to the ego among the
  ``completion_window`` points from the current one on, if within ``completion_radius``; progress
  only moves forward (monotone, and no jumps along a route that passes near itself); 100 % at
  the last point.
- Vehicle collisions: scenario_runner's CollisionTest rule. A counted event remembers the actor's
  id and time and the ego's place. A contact counts as a new event unless it is with the
  remembered actor less than ``collision_id_time`` (5 s) after that actor's event, or the ego is
  within ``collision_ignore_radius`` (5 m) of a remembered place (places are forgotten once the ego
  is farther than ``collision_forget_radius``, 5 m), or the ego was slower than
  ``collision_min_speed`` (0.1 m/s: not its fault). So one continuous contact counts once, and
  again only after 5 s and 5 m.
- Leaving the road (``collisions_layout``): one event each time the ego's centre leaves the
  drivable area (every lane surface and junction box).
- Outside route lanes: metres driven with the centre outside the lanes of the roads the route uses
  (all lanes of those roads; junction boxes on the route count as route lanes), reported at the end
  as metres and % of the completed route length, if any.
- Route deviation: the ego is more than ``deviation_distance`` (30 m) from the route near its
  progress: the route ends, status "Failed - Agent deviated from the route".
- Blocked: speed below ``blocked_speed`` (0.1 m/s) for ``blocked_time`` (60 s) of game time: the
  route ends, "Failed - Agent got blocked".
- Route timeout: game time above ``timeout_base + length / timeout_speed`` (or the tick cap): the
  route ends, "Failed - Agent timed out".
- Min speed (Bench2Drive efficiency): the route is cut into ``min_speed_checkpoints`` equal stretches
  of completion; when the ego completes one, a message gives its mean speed over the ticks spent
  on it as % of the mean speed of background cars within ``min_speed_radius`` over the same ticks
  (100 % when none was around). These messages carry no penalty unless the harness asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from carla_eval import scoring
from carla_eval.sandbox.config import CriteriaConfig
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.route_plan import RoutePlan
from carla_eval.sandbox.towns.base import lane_outline
from carla_eval.sandbox.world import Contact


@dataclass
class CriteriaResult:
    """Where the criteria stand after a tick."""

    route_completion: float  # %
    new_events: list[tuple[str, str]] = field(default_factory=list)  # (infraction key, message)
    failure: str | None = None  # a status that ends the route
    done: bool = False  # the route is over (completed or failed)


class RouteCriteria:
    """Evaluates one route tick by tick (see the module docstring)."""

    def __init__(self, plan: RoutePlan, index: MapIndex, dt: float, config: CriteriaConfig) -> None:
        self.plan = plan
        self.index = index
        self.dt = dt
        self.config = config
        self.infractions = scoring.empty_infractions()
        self.progress = 0
        self._collision_id: int | None = None  # actor of the last counted collision
        self._collision_time = 0.0  # game time of that event
        self._collision_places: list[np.ndarray] = []  # ego positions of remembered events
        self._offroad = False
        self._outside_m = 0.0
        self._still_time = 0.0
        self.timeout_s = config.timeout_base + plan.length / config.timeout_speed
        roads = {(l[0], l[1]) for l in plan.lane}
        polys = [lane_outline(lane) for key, lane in index.lanes.items() if (key[0], key[1]) in roads]
        for poly in index.town.extra_drivable:
            if np.any(np.all((plan.xy >= poly.min(axis=0)) & (plan.xy <= poly.max(axis=0)), axis=1)):
                polys.append(poly)
        self.route_mask = index.polygon_mask(polys)
        n_cp = max(1, config.min_speed_checkpoints)
        self._checkpoints = [plan.length * (k + 1) / n_cp for k in range(n_cp)]
        self._next_cp = 0
        self._ego_speeds: list[float] = []
        self._bg_speeds: list[float] = []
        self._last_xy: np.ndarray | None = None
        self.failure: str | None = None

    @property
    def route_completion(self) -> float:
        if self.progress >= len(self.plan.s) - 1:
            return 100.0
        return 100.0 * float(self.plan.s[self.progress]) / self.plan.length

    def _add(self, key: str, msg: str, events: list) -> None:
        self.infractions[key].append(msg)
        events.append((key, msg))

    def update(self, tick: int, game_time: float, ego, contacts: list[Contact], others: list) -> CriteriaResult:
        """One tick after the world stepped. ``ego``: the EgoVehicle; ``others``: background cars."""
        c = self.config
        events: list[tuple[str, str]] = []
        xy = np.asarray(ego.position, dtype=np.float64)
        x, y = float(xy[0]), float(xy[1])
        plan = self.plan
        # Route completion (windowed, monotone).
        hi = min(len(plan.s), self.progress + c.completion_window + 1)
        d = np.hypot(plan.xy[self.progress:hi, 0] - x, plan.xy[self.progress:hi, 1] - y)
        k = int(np.argmin(d))
        if d[k] < c.completion_radius:
            self.progress += k
        # Collisions (scenario_runner's CollisionTest rule).
        self._forget_collisions(xy, game_time)
        for ct in contacts:
            if self._counts_as_collision(ct):
                self._add("collisions_vehicle", scoring.msg_collision(ct.type_id, ct.actor_id, ct.x, ct.y, 0.0), events)
                self._collision_id = ct.actor_id
                self._collision_time = game_time
                self._collision_places.append(np.array([ct.x, ct.y]))
        # Leaving the road.
        on_road = self.index.on_road(x, y)
        if not on_road and not self._offroad:
            self._add("collisions_layout", scoring.msg_collision(c.offroad_type_id, 0, x, y, 0.0), events)
        self._offroad = not on_road
        # Outside route lanes (distance accumulates).
        if self._last_xy is not None and not self.index.mask_contains(self.route_mask, x, y):
            self._outside_m += float(np.hypot(*(xy - self._last_xy)))
        self._last_xy = xy
        # Min speed bookkeeping.
        self._ego_speeds.append(abs(float(ego.speed)))
        for v in others:
            if np.hypot(*(v.position - xy)) < c.min_speed_radius:
                self._bg_speeds.append(abs(float(v.speed)))
        rc = self.route_completion
        s_done = float(plan.s[min(self.progress, len(plan.s) - 1)])
        while self._next_cp < len(self._checkpoints) and (s_done >= self._checkpoints[self._next_cp] - 1e-6 or rc >= 100.0):
            self._emit_min_speed(events)
        # Ending conditions.
        failure = None
        if rc >= 100.0:
            return self._result(rc, events, None, True)
        lo = max(0, self.progress - 20)
        hi = min(len(plan.s), self.progress + 150)
        dist_route = float(np.min(np.hypot(plan.xy[lo:hi, 0] - x, plan.xy[lo:hi, 1] - y)))
        if dist_route > c.deviation_distance:
            self._add("route_dev", scoring.msg_route_deviation(x, y, 0.0), events)
            failure = scoring.STATUS_DEVIATED
        self._still_time = self._still_time + self.dt if abs(float(ego.speed)) < c.blocked_speed else 0.0
        if failure is None and self._still_time >= c.blocked_time:
            self._add("vehicle_blocked", scoring.msg_blocked(x, y, 0.0), events)
            failure = scoring.STATUS_BLOCKED
        out_of_ticks = c.max_ticks is not None and tick + 1 >= c.max_ticks
        if failure is None and (game_time >= self.timeout_s or out_of_ticks):
            self._add("route_timeout", scoring.msg_route_timeout(), events)
            failure = scoring.STATUS_AGENT_TIMEOUT
        return self._result(rc, events, failure, failure is not None)

    def _forget_collisions(self, xy: np.ndarray, game_time: float) -> None:
        c = self.config
        self._collision_places = [p for p in self._collision_places if float(np.hypot(*(xy - p))) <= c.collision_forget_radius]
        if self._collision_id is not None and game_time - self._collision_time > c.collision_id_time:
            self._collision_id = None

    def _counts_as_collision(self, ct: Contact) -> bool:
        c = self.config
        if self._collision_id is not None and ct.actor_id == self._collision_id:
            return False
        if any(float(np.hypot(ct.x - p[0], ct.y - p[1])) <= c.collision_ignore_radius for p in self._collision_places):
            return False
        return ct.ego_speed >= c.collision_min_speed

    def _emit_min_speed(self, events: list) -> None:
        ego_mean = float(np.mean(self._ego_speeds)) if self._ego_speeds else 0.0
        bg_mean = float(np.mean(self._bg_speeds)) if self._bg_speeds else 0.0
        pct = 100.0 if bg_mean < 0.1 else 100.0 * ego_mean / bg_mean
        self._add("min_speed_infractions", scoring.msg_min_speed(pct), events)
        self._ego_speeds, self._bg_speeds = [], []
        self._next_cp += 1

    def _result(self, rc: float, events: list, failure: str | None, done: bool) -> CriteriaResult:
        if failure is not None:
            self.failure = failure
        return CriteriaResult(rc, events, failure, done)

    def finalize(self) -> dict[str, list[str]]:
        """Close the route: add the outside-route-lanes message (if any); return the infractions."""
        if self._outside_m > 0.0 and not self.infractions["outside_route_lanes"]:
            done_m = max(float(self.plan.s[min(self.progress, len(self.plan.s) - 1)]), 1e-6)
            pct = min(100.0, 100.0 * self._outside_m / done_m)
            self.infractions["outside_route_lanes"].append(scoring.msg_outside_lanes(self._outside_m, pct))
        return self.infractions

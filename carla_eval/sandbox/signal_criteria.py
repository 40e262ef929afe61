"""The leaderboard's traffic-rule criteria in the sandbox: RunningRedLight, RunningStop and the
pedestrian part of CollisionTest, with scenario_runner's trigger rules and messages.

- Red light (``red_light``, x0.7): for every light within ``DISTANCE_LIGHT`` (15 m) of its trigger
  area's centre (on its lane, 2 m before the stop line) that is red and is not the last light the
  ego was fined for: when the ego's tail segment (from 0.8 x half length to half length + 1 m
  behind its centre) lies on that light's lane, the ego heads along it, and the segment crosses
  the stop line (the lane's width x 1.2, centred on the lane) -> "Agent ran a red light {id} at
  (x=.., y=.., z=..)" with the light's location.
- Stop sign (``stop_infraction``, x0.8): the ego's check points are its centre projected on its
  lane and points every ``WAYPOINT_STEP`` (0.5 m) ahead along the lane up to
  ``PROXIMITY_THRESHOLD`` (4 m). A stop affects the ego when its trigger box centre is within 4 m
  of the first point and one point lies in the box (extent x 1.2). Going backwards or against the
  lane ignores stops. Once a stop affects the ego, a speed below ``SPEED_THRESHOLD`` (0.1 m/s)
  completes it; when the stop no longer affects the ego and it was not completed (and it is not
  the last stop fined) -> "Agent ran a stop with id={id} at (x=.., y=.., z=..)" with the sign's
  location.
- Pedestrian collisions (``collisions_pedestrian``, x0.5): a contact with a walker counts unless
  the ego is slower than ``EPSILON`` (0.1 m/s: not its fault), the walker is the last one hit
  within ``MAX_ID_TIME`` (5 s), or the ego is within ``COLLISION_RADIUS`` (5 m) of the last
  collision -> "Agent collided against object with type=walker... and id=.. at (ego location)".

The boxes are aligned with their lanes (CARLA tests world-axis boxes; on the sandbox's
axis-aligned approaches that is the same area).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from carla_eval import scoring
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.signals import RED, TrafficLights
from carla_eval.sandbox.towns.base import SignalSpec, StopSignSpec
from carla_eval.sandbox.walkers import WalkerContact

DISTANCE_LIGHT = 15.0  # m
LIGHT_TRIGGER_BACK = 2.0  # m before the stop line: the light's trigger-area centre
PROXIMITY_THRESHOLD = 4.0  # m
SPEED_THRESHOLD = 0.1  # m/s
WAYPOINT_STEP = 0.5  # m
STOP_BOX_BACK = 2.5  # m before the stop line: the stop's trigger-box centre
STOP_BOX_EXTENT = (2.5, 1.5)  # m: half extent along / across the lane
COLLISION_RADIUS = 5.0  # m
MAX_ID_TIME = 5.0  # s
EPSILON = 0.1  # m/s


def msg_red_light(light_id: int, x: float, y: float, z: float = 0.0) -> str:
    return f"Agent ran a red light {light_id} at (x={x:.3f}, y={y:.3f}, z={z:.3f})"


def msg_stop(sign_id: int, x: float, y: float, z: float = 0.0) -> str:
    return f"Agent ran a stop with id={sign_id} at (x={x:.3f}, y={y:.3f}, z={z:.3f})"


def _segments_cross(p1, p2, q1, q2) -> bool:
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return (d1 * d2 <= 0.0) and (d3 * d4 <= 0.0)


@dataclass
class _Light:
    spec: SignalSpec
    centre: np.ndarray  # trigger-area centre
    line: tuple[np.ndarray, np.ndarray]  # stop-line segment
    direction: np.ndarray


@dataclass
class _Stop:
    spec: StopSignSpec
    centre: np.ndarray
    heading: float


class SignalCriteria:
    """Evaluates the three criteria tick by tick, writing into the route's ``infractions`` dict."""

    def __init__(self, index: MapIndex, lights: TrafficLights, infractions: dict[str, list[str]]) -> None:
        self.index = index
        self.lights = lights
        self.infractions = infractions
        town = index.town
        self._lights = []
        for spec in town.signals:
            geo = index.geometry[spec.lane]
            width = index.lanes[spec.lane].width_at(spec.s_stop)
            h = float(geo.heading_at(spec.s_stop))
            self._lights.append(_Light(spec, geo.position(spec.s_stop - LIGHT_TRIGGER_BACK),
                                       (geo.position(spec.s_stop, -0.6 * width), geo.position(spec.s_stop, 0.6 * width)),
                                       np.array([math.cos(h), math.sin(h)])))
        self._stops = []
        for spec in town.stop_signs:
            geo = index.geometry[spec.lane]
            self._stops.append(_Stop(spec, geo.position(spec.s_stop - STOP_BOX_BACK), float(geo.heading_at(spec.s_stop - STOP_BOX_BACK))))
        self._last_red: int | None = None
        self._target_stop: _Stop | None = None
        self._stop_completed = False
        self._last_failed_stop: int | None = None
        self._hit_id: int | None = None
        self._hit_time = -math.inf
        self._hit_xy: np.ndarray | None = None

    def _add(self, key: str, msg: str, events: list) -> None:
        self.infractions[key].append(msg)
        events.append((key, msg))

    def update(self, game_time: float, ego, walker_contacts: list[WalkerContact]) -> list[tuple[str, str]]:
        """One tick after the world stepped; returns the new (key, message) events."""
        events: list[tuple[str, str]] = []
        xy = np.asarray(ego.position, dtype=np.float64)
        if self._lights:
            self._red_light(game_time, ego, xy, events)
        if self._stops:
            self._stop_sign(ego, xy, events)
        self._walkers(game_time, ego, xy, walker_contacts, events)
        return events

    # ------------------------------------------------------------------ red light
    def _red_light(self, game_time: float, ego, xy: np.ndarray, events: list) -> None:
        fwd = np.array([math.cos(ego.heading), math.sin(ego.heading)])
        ext = ego.LENGTH / 2
        tail_close, tail_far = xy - 0.8 * ext * fwd, xy - (ext + 1.0) * fwd
        tail_lane = None
        for light in self._lights:
            sid = light.spec.signal_id
            if self._last_red == sid:
                continue
            if float(np.hypot(*(light.centre - xy))) > DISTANCE_LIGHT:
                continue
            if self.lights.state(sid, game_time) != RED:
                continue
            if tail_lane is None:
                tail_lane = self.index.closest_lane(tail_far, float(ego.heading))
            if tail_lane != light.spec.lane or float(fwd @ light.direction) <= 0.0:
                continue
            if _segments_cross(tail_close, tail_far, *light.line):
                px, py = light.spec.pole
                self._add("red_light", msg_red_light(sid, px, py, 0.0), events)
                self._last_red = sid

    # ------------------------------------------------------------------ stop sign
    def _check_points(self, ego, xy: np.ndarray) -> tuple[list[np.ndarray], float]:
        """The ego's check points (world [2] each) and its lane's heading at the first one (rad)."""
        lane = self.index.closest_lane(xy, float(ego.heading))
        s, _ = self.index.lanes[lane].local_coordinates(xy)
        s = float(s)
        lane_heading = float(self.index.geometry[lane].heading_at(s))
        pts = []
        for _ in range(int(PROXIMITY_THRESHOLD / WAYPOINT_STEP) + 1):
            geo = self.index.geometry[lane]
            if s > geo.s[-1]:
                succ = self.index.successors[lane]
                if not succ:
                    break
                s -= float(geo.s[-1])
                lane = succ[0]
                geo = self.index.geometry[lane]
            pts.append(geo.position(s))
            s += WAYPOINT_STEP
        return pts, lane_heading

    def _affected(self, pts: list[np.ndarray], stop: _Stop) -> bool:
        if not pts or float(np.hypot(*(stop.centre - pts[0]))) > PROXIMITY_THRESHOLD:
            return False
        c, s = math.cos(stop.heading), math.sin(stop.heading)
        ex, ey = STOP_BOX_EXTENT[0] * 1.2, STOP_BOX_EXTENT[1] * 1.2
        for p in pts:
            d = p - stop.centre
            if abs(c * d[0] + s * d[1]) < ex and abs(-s * d[0] + c * d[1]) < ey:
                return True
        return False

    def _stop_sign(self, ego, xy: np.ndarray, events: list) -> None:
        pts, lane_h = self._check_points(ego, xy)
        if self._target_stop is None:
            # Going backwards, or against the lane: no stop applies (scenario_runner's -0.17, ~100 deg).
            fwd = np.array([math.cos(ego.heading), math.sin(ego.heading)])
            if float(ego.speed) < -0.17 or float(fwd @ np.array([math.cos(lane_h), math.sin(lane_h)])) < -0.17:
                return
            self._target_stop = next((st for st in self._stops if self._affected(pts, st)), None)
            return
        if not self._stop_completed and abs(float(ego.speed)) < SPEED_THRESHOLD:
            self._stop_completed = True
        if not self._affected(pts, self._target_stop):
            sid = self._target_stop.spec.sign_id
            if not self._stop_completed and self._last_failed_stop != sid:
                px, py = self._target_stop.spec.pole
                self._add("stop_infraction", msg_stop(sid, px, py, 0.0), events)
                self._last_failed_stop = sid
            self._target_stop = None
            self._stop_completed = False

    # ------------------------------------------------------------------ pedestrians
    def _walkers(self, game_time: float, ego, xy: np.ndarray, contacts: list[WalkerContact], events: list) -> None:
        if self._hit_xy is not None and float(np.hypot(*(xy - self._hit_xy))) > COLLISION_RADIUS:
            self._hit_xy = None
        if self._hit_id is not None and game_time - self._hit_time > MAX_ID_TIME:
            self._hit_id = None
        for ct in contacts:
            if ct.actor_id == self._hit_id:
                continue
            if self._hit_xy is not None and float(np.hypot(*(xy - self._hit_xy))) <= COLLISION_RADIUS:
                continue
            if abs(float(ego.speed)) < EPSILON:
                continue
            self._add("collisions_pedestrian", scoring.msg_collision(ct.type_id, ct.actor_id, ct.x, ct.y, 0.0), events)
            self._hit_id, self._hit_time, self._hit_xy = ct.actor_id, game_time, xy.copy()

"""Route XML waypoints -> a dense route along the town's lanes, and the leaderboard global plan.

Like CARLA's GlobalRoutePlanner, the sparse ``<position>`` waypoints of a route file are joined along
the lane graph: each waypoint is snapped to its nearest lane (heading taken from its neighbours),
consecutive waypoints are connected by the shortest lane path (Dijkstra; moving to a side lane of
the same road costs ``lane_change_penalty`` extra metres), and a lane change is driven right after
the waypoint where it starts, blending laterally over ``lane_change_length`` metres. The result is
resampled every ``spacing`` (1 m) with a RoadOption per point:

- CHANGELANELEFT / CHANGELANERIGHT on the points of a lane change;
- LEFT / RIGHT / STRAIGHT on junction roads, from the heading change over the whole manoeuvre
  (consecutive junction roads form one; |change| < 45 deg is STRAIGHT, > 0 RIGHT, < 0 LEFT);
- LANEFOLLOW elsewhere.

The global plan handed to the agent is that dense route down-sampled like the leaderboard's
``downsample_route``: a point is kept where the command changes, on every lane-change point, when
``sample_distance`` metres have passed since the last kept point, and at the end.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from carla_eval.sandbox.config import RoutePlanConfig
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.road_option import LANE_CHANGE_OPTIONS, RoadOption
from carla_eval.sandbox.towns import LaneIndex, RoadKey


class RoutePlanError(ValueError):
    """The route's waypoints cannot be joined along the town's lanes (the message says where)."""


@dataclass
class RoutePlan:
    """The dense route (one row per ~``spacing`` m).

    Attributes:
        xy: [N, 2] world m; yaw: [N] rad; s: [N] arc length m; option: [N] RoadOption values.
        lane: [N] lane each point belongs to (the target lane during a lane change);
        lane_s: [N] s on that lane; lateral: [N] offset from that lane's centre (m, + right).
        length: total length, m.
    """

    xy: np.ndarray
    yaw: np.ndarray
    s: np.ndarray
    option: np.ndarray
    lane: list[LaneIndex]
    lane_s: np.ndarray
    lateral: np.ndarray

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def roads(self) -> list[RoadKey]:
        """Roads in driving order (a road driven twice appears twice)."""
        out: list[RoadKey] = []
        for lane in self.lane:
            r = (lane[0], lane[1])
            if not out or out[-1] != r:
                out.append(r)
        return out

    def index_at(self, s: float) -> int:
        return int(min(max(np.searchsorted(self.s, s), 0), len(self.s) - 1))


@dataclass
class _Piece:
    lane: LaneIndex
    s0: float
    s1: float
    lat0: float  # lateral offset (on this lane) at s0, blended to 0 over the lane-change length


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class RoutePlanner:
    """Builds :class:`RoutePlan` objects on one town (see the module docstring)."""

    def __init__(self, index: MapIndex, config: RoutePlanConfig = RoutePlanConfig()) -> None:
        self.index = index
        self.config = config

    # ----------------------------------------------------------------- snapping
    def snap(self, waypoints: np.ndarray) -> list[tuple[LaneIndex, float]]:
        out = []
        n = len(waypoints)
        for i, p in enumerate(waypoints):
            a = waypoints[max(i - 1, 0)]
            b = waypoints[min(i + 1, n - 1)]
            d = b - a
            heading = math.atan2(d[1], d[0]) if np.hypot(*d) > 1e-6 else None
            lane = self.index.closest_lane(p, heading)
            s, lat = self.index.lanes[lane].local_coordinates(p)
            if abs(lat) > self.index.lanes[lane].width_at(s) / 2 + 1.5:
                raise RoutePlanError(f"waypoint {i} at (x={p[0]:.1f}, y={p[1]:.1f}) is {abs(lat):.1f} m off its nearest lane {lane}")
            out.append((lane, float(min(max(s, 0.0), self.index.lanes[lane].length))))
        return out

    # ----------------------------------------------------------------- search
    def _search(self, start: tuple[LaneIndex, float], goal: tuple[LaneIndex, float], k: int) -> list[tuple[LaneIndex, float, str]]:
        """Lane moves from start to goal: [(lane, entry s, how)], how in {start, follow, side}."""
        idx = self.index
        (l0, s0), (lg, sg) = start, goal
        goal_key = ("GOAL", 0.0)
        heap: list = [(0.0, 0, (l0, round(s0, 3)), "start", None)]
        done: dict[tuple, tuple[str, tuple | None]] = {}
        counter = 1
        while heap:
            cost, _, state, how, par = heapq.heappop(heap)
            if state in done:
                continue
            done[state] = (how, par)
            if state == goal_key:
                moves = []
                key = par
                while key is not None:
                    h, p = done[key]
                    moves.append((key[0], key[1], h))
                    key = p
                return moves[::-1]
            lane, s_in = state
            if lane == lg and s_in <= sg + 1e-6:
                heapq.heappush(heap, (cost + (sg - s_in), counter, goal_key, "goal", state))
                counter += 1
            length = idx.lanes[lane].length
            for nxt in idx.successors[lane]:
                heapq.heappush(heap, (cost + (length - s_in), counter, (nxt, 0.0), "follow", state))
                counter += 1
            for side in idx.side_lanes(lane):
                if side is None or (idx.lanes[side].forbidden and side != lg):
                    continue
                p = idx.geometry[lane].position(s_in)
                s_side, _ = idx.lanes[side].local_coordinates(p)
                s_side = round(float(min(max(s_side, 0.0), idx.lanes[side].length)), 3)
                heapq.heappush(heap, (cost + self.config.lane_change_penalty, counter, (side, s_side), "side", state))
                counter += 1
        raise RoutePlanError(f"no lane path from waypoint {k} (lane {l0}, s={s0:.1f}) to waypoint {k + 1} (lane {lg}, s={sg:.1f})")

    def _pieces(self, moves: list[tuple[LaneIndex, float, str]], s_goal: float) -> list[_Piece]:
        idx = self.index
        pieces: list[_Piece] = []
        pending_from: np.ndarray | None = None
        for i, (lane, s_in, how) in enumerate(moves):
            nxt_how = moves[i + 1][2] if i + 1 < len(moves) else None
            if how == "side" and pending_from is None:
                prev_lane, prev_s, _ = moves[i - 1]
                pending_from = idx.geometry[prev_lane].position(prev_s, 0.0)
            if nxt_how == "side":
                continue  # this lane is left at once: no piece on it
            s1 = s_goal if i == len(moves) - 1 else idx.lanes[lane].length
            lat0 = 0.0
            if pending_from is not None:
                _, lat0 = idx.lanes[lane].local_coordinates(pending_from)
                pending_from = None
            pieces.append(_Piece(lane, s_in, s1, float(lat0)))
        return pieces

    # ----------------------------------------------------------------- dense route
    def plan(self, waypoints: Sequence[Sequence[float]]) -> RoutePlan:
        """The dense route through ``waypoints`` ([N, >= 2] world m). Raises RoutePlanError."""
        wps = np.asarray([(float(w[0]), float(w[1])) for w in waypoints], dtype=np.float64)
        if len(wps) < 2:
            raise RoutePlanError(f"a route needs at least 2 waypoints, got {len(wps)}")
        snapped = self.snap(wps)
        pieces: list[_Piece] = []
        for k in range(len(snapped) - 1):
            moves = self._search(snapped[k], snapped[k + 1], k)
            new = self._pieces(moves, snapped[k + 1][1])
            if pieces and new and pieces[-1].lane == new[0].lane and abs(pieces[-1].s1 - new[0].s0) < 1e-6 and new[0].lat0 == 0.0:
                pieces[-1].s1 = new[0].s1
                new = new[1:]
            pieces.extend(new)
        return self._sample(pieces)

    def _sample(self, pieces: list[_Piece]) -> RoutePlan:
        idx = self.index
        c = self.config
        xs, lanes, lane_s, lats, change = [], [], [], [], []
        for i, p in enumerate(pieces):
            length = p.s1 - p.s0
            if length <= 1e-6:
                continue
            n = max(2, int(math.ceil(length / 0.25)) + 1)
            s = np.linspace(p.s0, p.s1, n)
            lc_len = min(c.lane_change_length, max(8.0, 0.8 * length))
            lat = p.lat0 * (1.0 - _smoothstep((s - p.s0) / lc_len)) if p.lat0 != 0.0 else np.zeros_like(s)
            pts = idx.geometry[p.lane].position(s, lat)
            if xs:
                pts, s, lat = pts[1:], s[1:], lat[1:]
            xs.append(pts)
            lanes.extend([p.lane] * len(s))
            lane_s.append(s)
            lats.append(lat)
            direction = 0 if p.lat0 == 0.0 else (RoadOption.CHANGELANELEFT if p.lat0 > 0 else RoadOption.CHANGELANERIGHT)
            change.append(np.where(np.abs(lat) > 0.05, direction, 0))
        if not xs:
            raise RoutePlanError("the route has zero length")
        fine = np.concatenate(xs)
        fine_lane_s = np.concatenate(lane_s)
        fine_lat = np.concatenate(lats)
        fine_change = np.concatenate(change)
        seg = np.hypot(*np.diff(fine, axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        n = max(2, int(round(cum[-1] / c.spacing)) + 1)
        s_out = np.linspace(0.0, cum[-1], n)
        k = np.clip(np.searchsorted(cum, s_out, side="right") - 1, 0, len(cum) - 1)
        xy = np.stack([np.interp(s_out, cum, fine[:, 0]), np.interp(s_out, cum, fine[:, 1])], axis=1)
        d = np.gradient(xy, axis=0)
        yaw = np.arctan2(d[:, 1], d[:, 0])
        lane = [lanes[j] for j in k]
        option = np.full(n, int(RoadOption.LANEFOLLOW))
        option[fine_change[k] != 0] = fine_change[k][fine_change[k] != 0]
        self._junction_options(option, lane, yaw)
        return RoutePlan(xy, yaw, s_out, option, lane, np.interp(s_out, cum, fine_lane_s), np.interp(s_out, cum, fine_lat))

    def _junction_options(self, option: np.ndarray, lane: list[LaneIndex], yaw: np.ndarray) -> None:
        junction = np.array([(l[0], l[1]) in self.index.town.junction_roads for l in lane])
        if not junction.any():
            return
        idx = np.nonzero(junction)[0]
        runs = np.split(idx, np.nonzero(np.diff(idx) > 1)[0] + 1)
        for run in runs:
            a = max(int(run[0]) - 1, 0)
            b = min(int(run[-1]) + 1, len(yaw) - 1)
            turn = float(np.sum(np.angle(np.exp(1j * np.diff(yaw[a : b + 1])))))
            if abs(math.degrees(turn)) < self.config.straight_threshold_deg:
                opt = RoadOption.STRAIGHT
            else:
                opt = RoadOption.RIGHT if turn > 0 else RoadOption.LEFT
            option[run] = int(opt)


def downsample_indices(plan_xy: np.ndarray, options: Sequence[int], sample_distance: float) -> list[int]:
    """Indices kept by the leaderboard-style down-sampling (see the module docstring); the first and
    the last point are always kept."""
    keep: list[int] = []
    prev = None
    dist = 0.0
    n = len(options)
    for i in range(n):
        opt = int(options[i])
        if opt in LANE_CHANGE_OPTIONS:
            keep.append(i)
            dist = 0.0
        elif opt != prev and prev not in LANE_CHANGE_OPTIONS:
            keep.append(i)
            dist = 0.0
        elif dist > sample_distance:
            keep.append(i)
            dist = 0.0
        elif i == n - 1:
            keep.append(i)
            dist = 0.0
        else:
            dist += float(np.hypot(*(plan_xy[i] - plan_xy[i - 1])))
        prev = opt
    if keep[-1] != n - 1:
        keep.append(n - 1)
    return keep


@dataclass
class GlobalPlan:
    """What ``set_global_plan`` receives: GPS entries ``({'lat','lon','z'}, RoadOption)`` and world
    entries ``(carla.Transform, RoadOption)``, same length and order."""

    gps: list[tuple[dict[str, float], RoadOption]]
    world: list[tuple[object, RoadOption]]
    indices: list[int]


def build_global_plan(plan: RoutePlan, geo, sample_distance: float | None) -> GlobalPlan:
    """Down-sample ``plan`` (every point when ``sample_distance`` is None) into leaderboard entries."""
    import carla

    if sample_distance is None:
        keep = list(range(len(plan.s)))
    else:
        keep = downsample_indices(plan.xy, plan.option, sample_distance)
    gps, world = [], []
    for i in keep:
        x, y = float(plan.xy[i, 0]), float(plan.xy[i, 1])
        opt = RoadOption(int(plan.option[i]))
        lat, lon, alt = geo.world_to_gnss(x, y, 0.0)
        gps.append(({"lat": lat, "lon": lon, "z": alt}, opt))
        world.append((carla.Transform(carla.Location(x=x, y=y, z=0.0), carla.Rotation(yaw=math.degrees(float(plan.yaw[i])))), opt))
    return GlobalPlan(gps, world, keep)

"""Lane-following paths for the sandbox expert, and projecting vehicles onto them.

A path runs along one lane from the ego onward (and optionally some metres behind), continuing at
each lane end into the successor on the route's next road, keeping the lane id where it can. It
can start with a lateral offset that blends to zero (a lane change or a return to the lane centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.route_plan import RoutePlan
from carla_eval.sandbox.towns import LaneIndex, RoadKey


@dataclass
class PathSample:
    """Points of a path: ``xy`` [M, 2] world m, ``station`` [M] m from the ego (negative behind),
    ``heading`` [M] rad, ``lane`` [M] lane of each point."""

    xy: np.ndarray
    station: np.ndarray
    heading: np.ndarray
    lane: list[LaneIndex]

    def point_at(self, station: np.ndarray | float) -> np.ndarray:
        st = np.asarray(station, dtype=np.float64)
        return np.stack([np.interp(st, self.station, self.xy[:, 0]), np.interp(st, self.station, self.xy[:, 1])], axis=-1)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class RouteRoads:
    """The route's road sequence, for choosing successors / predecessors along it."""

    def __init__(self, plan: RoutePlan) -> None:
        self.plan = plan
        self.roads: list[RoadKey] = []
        self.point_road = np.zeros(len(plan.lane), dtype=np.int64)
        self.entry_lane: list[LaneIndex] = []
        for i, lane in enumerate(plan.lane):
            road = (lane[0], lane[1])
            if not self.roads or self.roads[-1] != road:
                self.roads.append(road)
                self.entry_lane.append(lane)
            self.point_road[i] = len(self.roads) - 1

    def cursor_at(self, point_index: int) -> int:
        return int(self.point_road[min(max(point_index, 0), len(self.point_road) - 1)])


def _pick(cands: list[LaneIndex], want_road: RoadKey | None, lane_id: int, route_lane: LaneIndex | None) -> LaneIndex | None:
    if not cands:
        return None
    if want_road is not None:
        on_road = [c for c in cands if (c[0], c[1]) == want_road]
        if on_road:
            same = [c for c in on_road if c[2] == lane_id]
            if same:
                return same[0]
            if route_lane is not None and route_lane in on_road:
                return route_lane
            return min(on_road, key=lambda c: abs(c[2] - lane_id))
    same = [c for c in cands if c[2] == lane_id]
    return same[0] if same else cands[0]


def build_path(index: MapIndex, roads: RouteRoads, cursor: int, lane: LaneIndex, s0: float, ahead: float,
               behind: float = 0.0, lat0: float = 0.0, blend: float = 1.0, step: float = 1.0) -> PathSample:
    """Path along ``lane`` from lane coordinate ``s0`` (the ego), ``ahead`` m forward and ``behind``
    m backward; lateral offset ``lat0`` at the ego fading to 0 over ``blend`` m ahead."""
    pieces: list[tuple[LaneIndex, float, float, float]] = []  # lane, s_from, s_to, station at s_from
    # Forward.
    cur, s, st, k = lane, s0, 0.0, cursor
    while st < ahead:
        length = index.lanes[cur].length
        take = min(length - s, ahead - st)
        if take > 1e-6:
            pieces.append((cur, s, s + take, st))
            st += take
        if st >= ahead - 1e-6:
            break
        want = roads.roads[k + 1] if k + 1 < len(roads.roads) else None
        route_lane = roads.entry_lane[k + 1] if k + 1 < len(roads.roads) else None
        nxt = _pick(index.successors[cur], want, cur[2], route_lane)
        if nxt is None:
            break
        if want is not None and (nxt[0], nxt[1]) == want:
            k += 1
        cur, s = nxt, 0.0
    if not pieces:  # at a dead end: a stub so the path still has two points
        length = index.lanes[lane].length
        s_end = min(max(s0, 0.0), length)
        pieces.append((lane, max(s_end - 0.5, 0.0), s_end, -(s_end - max(s_end - 0.5, 0.0))))
    # Backward.
    back: list[tuple[LaneIndex, float, float, float]] = []
    cur, s, st, k = lane, s0, 0.0, cursor
    while st < behind:
        take = min(s, behind - st)
        if take > 1e-6:
            back.append((cur, s - take, s, -(st + take)))
            st += take
        if st >= behind - 1e-6:
            break
        want = roads.roads[k - 1] if k - 1 >= 0 else None
        prv = _pick(index.predecessors[cur], want, cur[2], None)
        if prv is None:
            break
        if want is not None and (prv[0], prv[1]) == want:
            k -= 1
        cur, s = prv, index.lanes[prv].length
    xs, sts, hs, lanes = [], [], [], []
    for ln, a, b, st0 in list(reversed(back)) + pieces:
        n = max(2, int(math.ceil((b - a) / step)) + 1)
        ss = np.linspace(a, b, n)
        station = st0 + (ss - a)
        lat = lat0 * (1.0 - _smoothstep(station / max(blend, 1e-6))) if lat0 != 0.0 else np.zeros_like(ss)
        lat = np.where(station < 0.0, lat0, lat) if lat0 != 0.0 else lat
        geo = index.geometry[ln]
        if xs:
            ss, station, lat = ss[1:], station[1:], lat[1:]
        xs.append(geo.position(ss, lat))
        sts.append(station)
        hs.append(geo.heading_at(ss))
        lanes.extend([ln] * len(ss))
    xy = np.concatenate(xs)
    station = np.concatenate(sts)
    heading = np.concatenate(hs)
    # Re-measure stations along the (possibly offset) polyline so speeds match the drawn path.
    seg = np.hypot(*np.diff(xy, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    zero = int(np.argmin(np.abs(station)))
    station = cum - cum[zero]
    keep = np.concatenate([[True], seg > 1e-6])
    return PathSample(xy[keep], station[keep], heading[keep], [l for l, k_ in zip(lanes, keep) if k_])


@dataclass
class Projection:
    """Vehicles projected on a path: ``station`` [K] (m along the path), ``lateral`` [K] (m, + right),
    ``dheading`` [K] (vehicle heading minus path heading, rad), ``valid`` [K] (near the path's extent)."""

    station: np.ndarray
    lateral: np.ndarray
    dheading: np.ndarray
    valid: np.ndarray


def project(path: PathSample, xy: np.ndarray, heading: np.ndarray) -> Projection:
    """Project points [K, 2] (with headings [K]) onto the path polyline."""
    if len(xy) == 0:
        e = np.zeros(0)
        return Projection(e, e, e, e.astype(bool))
    d = np.hypot(xy[:, None, 0] - path.xy[None, :, 0], xy[:, None, 1] - path.xy[None, :, 1])
    j = np.argmin(d, axis=1)
    h = path.heading[j]
    dx = xy[:, 0] - path.xy[j, 0]
    dy = xy[:, 1] - path.xy[j, 1]
    along = np.cos(h) * dx + np.sin(h) * dy
    lateral = -np.sin(h) * dx + np.cos(h) * dy
    station = path.station[j] + along
    valid = (j > 0) & (j < len(path.station) - 1) | (np.abs(along) < 2.0)
    dheading = np.angle(np.exp(1j * (heading - h)))
    return Projection(station, lateral, dheading, valid)

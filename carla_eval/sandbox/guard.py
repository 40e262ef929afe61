"""Collision guard of background cars: brake for a car that is ahead and in or entering my path.

highway-env's IDM only sees the leader on a car's own lane (and the lanes just before and after),
so two cars merging into one lane from different lanes, a car entering a ring beside a ring car, or
a car whose lane change meets another's are blind to each other until they touch. Every tick, for
each background car ``i`` and every vehicle ``j`` near it heading roughly the same way
(``max_heading_diff``, 100 deg: a ring entry meets the ring at up to about 85 deg):

- ``j`` counts only when it is *ahead* of ``i``: the vector from ``i`` to ``j`` points forward
  along the mean of their headings. The test is antisymmetric, so of two cars side by side exactly
  one yields (equal positions: the higher actor id yields) and they cannot wait for each other;
- ``i``'s path is the centreline of the lane it is driving to (highway-env's target lane, then the
  lanes of its route or lane path), starting at its lateral offset, which fades with the time
  constant ``lateral_tau``;
- ``j`` is predicted at ``horizon`` times: background cars at constant speed along their own path,
  the ego at constant speed and yaw rate, parked cars where they stand;
- if any prediction of ``j`` comes within ``lateral_margin`` of ``i``'s path (box half-widths added)
  at or ahead of ``i``'s centre, ``j`` is a leader of ``i`` at its current distance along the path.

Cars ahead in ``i``'s own lane that keep it are skipped (they are ``i``'s IDM leaders), and so are
cars beside ``i``'s lane too far out to reach it within the horizon at their heading (a vectorised
pre-test), which keeps the guard cheap on multi-lane roads.

The car then takes the lower of its own acceleration and the IDM acceleration towards its guard
leaders (``min_gap``, ``time_gap``). Crossing traffic (larger heading differences) is left to the
give-way rule (:mod:`giveway`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from highway_env.road.lane import CircularLane, StraightLane

from carla_eval.sandbox.config import GuardConfig
from carla_eval.sandbox.map_index import MapIndex


@dataclass(frozen=True)
class GuardLeader:
    """A vehicle ``actor_id`` a car must stay behind: bumper gap (m) along the car's path and the
    leader's speed along it (m/s)."""

    actor_id: int
    gap: float
    speed: float


def _next_lane(index: MapIndex, vehicle, lane):
    """The lane a background car drives into after ``lane``: its route, else its lane path, else
    the successor keeping the lane id."""
    succ = index.successors.get(lane, ())
    if not succ:
        return None
    route = getattr(vehicle, "route", None) or ()
    for k, r in enumerate(route):
        if (r[0], r[1]) == (lane[0], lane[1]) and k + 1 < len(route):
            want = (route[k + 1][0], route[k + 1][1])
            pick = [s for s in succ if (s[0], s[1]) == want]
            if pick:
                return next((s for s in pick if s[2] == lane[2]), pick[0])
    path = getattr(vehicle, "path", None)
    if path is not None and lane in path:
        k = path.lanes.index(lane)
        if k + 1 < len(path.lanes):
            return path.lanes[k + 1]
        if path.cyclic:
            return path.lanes[0]
    return next((s for s in succ if s[2] == lane[2]), succ[0])


def lane_path_points(index: MapIndex, vehicle, stations: np.ndarray, lateral_tau: float) -> np.ndarray:
    """Points [K, 2] of a background car's future path at ``stations`` [K] (m ahead of its centre,
    increasing, >= 0): along its target lane and the lanes after it, its lateral offset fading."""
    lane = getattr(vehicle, "target_lane_index", None) or vehicle.lane_index
    s0, lat0 = index.lanes[lane].local_coordinates(vehicle.position)
    fade = max(float(vehicle.speed), 1.0) * lateral_tau
    lat = float(lat0) * np.exp(-stations / fade)
    out = np.empty((len(stations), 2))
    s_lane = float(s0) + stations
    done = np.zeros(len(stations), dtype=bool)
    for _ in range(4):
        length = float(index.lanes[lane].length)
        here = ~done & (s_lane <= length)
        nxt = _next_lane(index, vehicle, lane)
        if nxt is None:
            here = ~done
        if here.any():
            out[here] = index.geometry[lane].position(np.clip(s_lane[here], None, length), lat[here])
            done |= here
        if done.all() or nxt is None:
            break
        s_lane = s_lane - length
        lane = nxt
    if not done.all():
        out[~done] = out[done][-1] if done.any() else vehicle.position
    return out


def lane_frame(lane, xy: np.ndarray, heading: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(s, lateral, heading relative to the lane) of points [K, 2] with headings [K] on a straight
    or circular highway-env lane, vectorised; None for other lane types."""
    if isinstance(lane, StraightLane):
        d = xy - lane.start
        s = d @ lane.direction
        lat = d @ lane.direction_lateral
        return s, lat, np.angle(np.exp(1j * (heading - lane.heading)))
    if isinstance(lane, CircularLane):
        d = xy - lane.center
        phi = np.arctan2(d[:, 1], d[:, 0])
        phi = lane.start_phase + np.angle(np.exp(1j * (phi - lane.start_phase)))
        s = lane.direction * (phi - lane.start_phase) * lane.radius
        lat = lane.direction * (lane.radius - np.hypot(d[:, 0], d[:, 1]))
        lane_heading = phi + math.pi / 2 * lane.direction
        return s, lat, np.angle(np.exp(1j * (heading - lane_heading)))
    return None


def _far_beside(index: MapIndex, vi, width_i: float, pos: np.ndarray, head: np.ndarray, speed: np.ndarray,
                half_diag: np.ndarray, t_max: float, margin: float) -> np.ndarray:
    """[K] True for the vehicles that stay clear of the lane ``vi`` drives to over the horizon:
    beside it on the lane's extent, farther out than the two half-widths plus the lateral distance
    they can close at their current heading (a cheap test before the path check)."""
    lane_index = getattr(vi, "target_lane_index", None) or vi.lane_index
    lane = index.lanes[lane_index]
    frame = lane_frame(lane, pos, head)
    if frame is None:
        return np.zeros(len(pos), dtype=bool)
    s, lat, dh = frame
    s_i, lat_i = lane.local_coordinates(vi.position)
    on_extent = (s > -half_diag) & (s < float(lane.length))
    closing = np.abs(speed * np.sin(dh)) * t_max
    return on_extent & (np.abs(lat) - closing > width_i / 2 + half_diag + margin + abs(float(lat_i)))


def _keeps_lane(vehicle, lane) -> bool:
    """The vehicle is on ``lane`` and not changing lanes."""
    return vehicle.lane_index == lane and getattr(vehicle, "target_lane_index", lane) == lane


def predict(index: MapIndex, vehicle, times: np.ndarray, lateral_tau: float) -> np.ndarray:
    """Predicted centres [T, 2] of any vehicle at ``times`` [T] s (see the module docstring)."""
    speed = max(float(vehicle.speed), 0.0)
    if speed < 1e-3:
        return np.repeat(np.asarray(vehicle.position, dtype=np.float64)[None], len(times), axis=0)
    if hasattr(vehicle, "target_lane_index") and vehicle.lane_index is not None:
        return lane_path_points(index, vehicle, speed * times, lateral_tau)
    state = getattr(vehicle, "state", None)
    yaw_rate = float(getattr(state, "yaw_rate", 0.0)) if state is not None else 0.0
    yaw = float(vehicle.heading) + yaw_rate * times
    if abs(yaw_rate) < 1e-4:
        d = speed * times
        return np.stack([vehicle.position[0] + d * math.cos(vehicle.heading), vehicle.position[1] + d * math.sin(vehicle.heading)], axis=1)
    r = speed / yaw_rate
    x = vehicle.position[0] + r * (np.sin(yaw) - math.sin(vehicle.heading))
    y = vehicle.position[1] - r * (np.cos(yaw) - math.cos(vehicle.heading))
    return np.stack([x, y], axis=1)


def guard_leaders(index: MapIndex, vehicles: list, movers: list, config: GuardConfig = GuardConfig()) -> dict[int, list[GuardLeader]]:
    """Guard leaders of each car in ``movers`` (background cars, by position in ``vehicles``), from
    every vehicle in ``vehicles`` (ego, background and scenario cars)."""
    out: dict[int, list[GuardLeader]] = {}
    n = len(vehicles)
    if n < 2 or not movers:
        return out
    pos = np.array([v.position for v in vehicles], dtype=np.float64)
    head = np.array([v.heading for v in vehicles], dtype=np.float64)
    speed = np.maximum(np.array([v.speed for v in vehicles], dtype=np.float64), 0.0)
    length = np.array([v.LENGTH for v in vehicles], dtype=np.float64)
    width = np.array([v.WIDTH for v in vehicles], dtype=np.float64)
    ids = np.array([v.actor_id for v in vehicles])
    times = np.asarray(config.horizon, dtype=np.float64)
    t_max = float(times.max())
    cos_max = math.cos(math.radians(config.max_heading_diff))
    dirs = np.stack([np.cos(head), np.sin(head)], axis=1)
    rel = pos[None, :, :] - pos[:, None, :]  # [i, j] = pos_j - pos_i
    dist = np.hypot(rel[..., 0], rel[..., 1])
    mean_dir = dirs[:, None, :] + dirs[None, :, :]
    along = np.einsum("ijk,ijk->ij", rel, mean_dir)
    ahead = (along > 1e-6) | ((np.abs(along) <= 1e-6) & (ids[None, :] < ids[:, None]))
    same_way = (dirs @ dirs.T) > cos_max
    reach = config.radius + (speed[:, None] + speed[None, :]) * t_max
    cand = ahead & same_way & (dist < reach)
    np.fill_diagonal(cand, False)
    predictions: dict[int, np.ndarray] = {}
    half_diag = np.hypot(length, width) / 2
    for i in movers:
        js = np.nonzero(cand[i])[0]
        if js.size == 0:
            continue
        vi = vehicles[i]
        lane_i = vi.lane_index
        if getattr(vi, "target_lane_index", lane_i) == lane_i:  # cars ahead in its own lane are its IDM leaders
            js = np.array([j for j in js if not _keeps_lane(vehicles[j], lane_i)], dtype=np.int64)
            if js.size == 0:
                continue
        far = _far_beside(index, vi, float(width[i]), pos[js], head[js], speed[js], half_diag[js], t_max, config.lateral_margin)
        js = js[~far]
        if js.size == 0:
            continue
        d_path = float(speed[i]) * t_max + float(length[i]) + 2.0 * config.radius
        stations = np.arange(0.0, d_path + config.path_step, config.path_step)
        path = lane_path_points(index, vi, stations, config.lateral_tau)
        seg = np.diff(path, axis=0)
        seg_h = np.arctan2(seg[:, 1], seg[:, 0]) if len(seg) else np.array([float(vi.heading)])
        seg_h = np.concatenate([seg_h, seg_h[-1:]])
        leaders = []
        for j in js:
            pj = predictions.get(int(j))
            if pj is None:
                pj = predict(index, vehicles[j], times, config.lateral_tau)
                predictions[int(j)] = pj
            pts = np.concatenate([pos[j][None], pj], axis=0)
            dd = np.hypot(pts[:, None, 0] - path[None, :, 0], pts[:, None, 1] - path[None, :, 1])
            k = np.argmin(dd, axis=1)
            h = seg_h[k]
            dx, dy = pts[:, 0] - path[k, 0], pts[:, 1] - path[k, 1]
            lon = stations[k] + np.cos(h) * dx + np.sin(h) * dy
            lat = -np.sin(h) * dx + np.cos(h) * dy
            dh = head[j] - h
            w_eff = width[j] / 2 * np.abs(np.cos(dh)) + length[j] / 2 * np.abs(np.sin(dh))
            l_eff = length[j] / 2 * np.abs(np.cos(dh[0])) + width[j] / 2 * np.abs(np.sin(dh[0]))
            inside = (np.abs(lat) < width[i] / 2 + w_eff + config.lateral_margin) & (lon > -(length[i] / 2 + l_eff)) & (lon < stations[-1])
            if not inside.any():
                continue
            gap = float(lon[0] - length[i] / 2 - l_eff)
            leaders.append(GuardLeader(int(ids[j]), gap, float(speed[j] * math.cos(dh[0]))))
        if leaders:
            out[i] = leaders
    return out

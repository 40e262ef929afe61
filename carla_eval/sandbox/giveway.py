"""Give way at junctions: where a path crosses or merges into a road with right of way, and whether
the gap in that road's traffic is big enough to go.

Shared by the privileged expert (for its route) and by background vehicles on minor roads (for their
stream paths), so both follow the same rule:

- a *conflict zone* is a stretch ``[s_in, s_out]`` of the minor path, on a junction road, whose
  centreline comes within ``conflict_distance`` of a priority path's centreline (``[u_in, u_out]``
  on that path), where the priority path's lane has a higher priority than the minor path's lane;
- a vehicle approaching a zone stops with its front ``stop_margin`` before ``s_in`` unless, for that
  zone and the zones following it within 20 m (one manoeuvre), no vehicle on the priority path
  would be in the zone (widened by ``time_margin`` s) while this vehicle is: entering when its front
  reaches ``s_in`` and leaving when its rear passes ``s_out``, driving from its current speed at
  ``go_accel`` up to ``zone_speed``; priority vehicles are taken at constant speed;
- once past its stop point a vehicle is committed to that zone and no longer yields for it;
- a vehicle never stops where it would stand in a zone it has entered (a later zone of a junction
  manoeuvre whose stop point lies within ``clear_margin`` of an earlier zone's end): it stops before
  that earlier zone while it can still do so braking at most ``max_stop_decel``, else it goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.spatial import cKDTree

from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.paths import LanePath


@dataclass(frozen=True)
class GiveWayConfig:
    """Gap acceptance settings (m, s, m/s^2)."""

    conflict_distance: float = 3.0
    max_zone_length: float = 14.0
    stop_margin: float = 1.5
    lookahead: float = 60.0
    time_margin: float = 1.5
    go_accel: float = 2.0
    zone_speed: float = 8.0
    min_eta_speed: float = 1.0
    clear_margin: float = 1.0
    max_stop_decel: float = 6.0


@dataclass(frozen=True)
class ConflictZone:
    """Where a minor path meets priority path ``path_id`` (coordinates in metres along each)."""

    path_id: int
    s_in: float
    s_out: float
    u_in: float
    u_out: float


def find_conflicts(
    index: MapIndex,
    minor_xy: np.ndarray,
    minor_s: np.ndarray,
    minor_on_junction: np.ndarray,
    minor_priority: np.ndarray,
    priority_paths: Sequence[LanePath],
    config: GiveWayConfig = GiveWayConfig(),
) -> list[ConflictZone]:
    """Conflict zones of a minor polyline (samples ``minor_xy`` [N, 2] at ``minor_s`` [N]) with each
    priority path, sorted by ``s_in``. ``minor_on_junction`` [N] marks samples on junction roads and
    ``minor_priority`` [N] gives the lane priority of each sample."""
    zones: list[ConflictZone] = []
    if not np.any(minor_on_junction):
        return zones
    for pid, path in enumerate(priority_paths):
        tree = cKDTree(path.xy)
        dist, nearest = tree.query(minor_xy, k=1)
        hit = (dist < config.conflict_distance) & minor_on_junction
        if not np.any(hit):
            continue
        idx = np.nonzero(hit)[0]
        runs = np.split(idx, np.nonzero(np.diff(idx) > 1)[0] + 1)
        for run in runs:
            first = int(run[0])
            u_in = float(path.u[nearest[first]])
            lane, _ = path.locate(u_in)
            if index.lanes[lane].priority <= int(minor_priority[first]):
                continue
            s_in = float(minor_s[first])
            last = int(run[-1])
            s_out = min(float(minor_s[last]), s_in + config.max_zone_length)
            k_out = int(np.searchsorted(minor_s, s_out))
            k_out = min(max(k_out, first), len(minor_s) - 1)
            u_out = float(path.u[nearest[k_out]])
            if path.cyclic and u_out < u_in:
                u_out += path.length
            zones.append(ConflictZone(pid, s_in, s_out, u_in, max(u_out, u_in)))
    zones.sort(key=lambda z: z.s_in)
    return zones


def time_to_cover(distance: float, speed: float, accel: float, v_max: float) -> float:
    """Seconds to drive ``distance`` m from ``speed`` accelerating at ``accel`` up to ``v_max``."""
    if distance <= 0.0:
        return 0.0
    speed = max(0.0, speed)
    if speed >= v_max:
        return distance / max(speed, 1e-3)
    t_acc = (v_max - speed) / accel
    d_acc = speed * t_acc + 0.5 * accel * t_acc**2
    if d_acc >= distance:
        return (-speed + math.sqrt(speed**2 + 2 * accel * distance)) / accel
    return t_acc + (distance - d_acc) / v_max


class GiveWay:
    """Gap acceptance along one minor path (see the module docstring)."""

    def __init__(self, zones: list[ConflictZone], paths: Sequence[LanePath], config: GiveWayConfig = GiveWayConfig()) -> None:
        self.zones = zones
        self.paths = paths
        self.config = config
        self._accepted: list[ConflictZone] = []  # hysteresis: the zones of a manoeuvre already judged free

    def active_zone(self, s_self: float, length: float) -> ConflictZone | None:
        """The next zone this vehicle has not committed to (within the lookahead), or None."""
        c = self.config
        for z in self.zones:
            stop_s = z.s_in - c.stop_margin - length / 2
            if s_self > stop_s + 0.5:
                continue
            if z.s_in - s_self > c.lookahead:
                return None
            return z
        return None

    def zone_free(self, zone: ConflictZone, s_self: float, speed: float, length: float, vehicles: Iterable,
                  me=None, margin: float | None = None) -> bool:
        """True when no vehicle on the zone's priority path occupies the zone (+/- ``margin`` s)
        while this vehicle would be in it (entering at its front, leaving at its rear + 1 m)."""
        c = self.config
        margin = c.time_margin if margin is None else margin
        path = self.paths[zone.path_id]
        t_enter = time_to_cover(zone.s_in - s_self - length / 2, speed, c.go_accel, c.zone_speed)
        t_exit = time_to_cover(zone.s_out - s_self + length / 2 + 1.0, speed, c.go_accel, c.zone_speed)
        zone_len = zone.u_out - zone.u_in
        for v in vehicles:
            if v is me:
                continue
            u = path.coord_of_vehicle(v)
            if u is None:
                continue
            d = path.ahead(u, zone.u_in)
            if path.cyclic and d > path.length - zone_len - v.LENGTH:
                d -= path.length  # just inside / past the zone on a loop
            front_to_in = d - v.LENGTH / 2
            rear_to_out = d + zone_len + v.LENGTH / 2
            if rear_to_out < 0.0:
                continue  # passed
            vv = max(float(v.speed), c.min_eta_speed)
            t_in = max(front_to_in, 0.0) / vv
            t_out = rear_to_out / vv
            if t_in - margin < t_exit and t_out + 0.5 * margin > t_enter:
                return False
        return True

    def group(self, zone: ConflictZone, chain_gap: float = 20.0) -> list[ConflictZone]:
        """``zone`` and the zones that follow it within ``chain_gap`` m (one junction manoeuvre)."""
        out = [zone]
        for z in self.zones:
            if z.s_in > out[-1].s_in and z.s_in <= max(q.s_out for q in out) + chain_gap:
                out.append(z)
        return out

    def stop_distance(self, s_self: float, speed: float, length: float, vehicles: Iterable, me=None) -> float | None:
        """Distance (m, centre to stop point) at which this vehicle must stop, or None to go."""
        zone = self.active_zone(s_self, length)
        if zone is None:
            return None
        margin = self.config.time_margin * (0.3 if zone in self._accepted else 1.0)
        vehicles = list(vehicles)
        group = self.group(zone)
        if all(self.zone_free(z, s_self, speed, length, vehicles, me, margin) for z in group):
            self._accepted = group
            return None
        self._accepted = []
        return self._stop_before(zone, s_self, speed, length)

    def _stop_before(self, zone: ConflictZone, s_self: float, speed: float, length: float) -> float | None:
        """Centre-to-stop distance for a zone that is not free, or None when the vehicle cannot
        stop anywhere clear of the zones it has entered (then it drives on)."""
        c = self.config
        stop_front = zone.s_in - c.stop_margin
        for z in self.zones:  # the earliest zone the vehicle's body would stand in at that stop
            if z.s_in < zone.s_in and stop_front > z.s_in and stop_front - length < z.s_out + c.clear_margin:
                front = s_self + length / 2
                room = z.s_in - min(c.stop_margin, 0.5) - front
                if room >= 0.0 and speed**2 <= 2.0 * c.max_stop_decel * max(room, 1e-3) + 0.25:
                    return z.s_in - min(c.stop_margin, 0.5) - length / 2 - s_self
                return None
        return stop_front - length / 2 - s_self

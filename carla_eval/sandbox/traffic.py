"""Background traffic: which lane paths cars follow, and keeping traffic alive around the ego.

Cars live in a window around the ego (as CARLA's Traffic Manager keeps traffic near the hero):
streams spawn cars at their path start and at the window's front and back edges along their path,
never closer than ``min_spawn_distance`` to the ego (so never inside the camera view), each new car
at least a drawn gap away from the previous one on that lane; cars beyond ``active_radius`` or at
the end of their path are removed. A car that must give way is never spawned past the point where it
can still stop for its first conflict zone (``approach_clear`` m before it) or inside a zone, so every
car entering a road with right of way has judged the gap itself. Every random choice comes from the
world's seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carla_eval.sandbox.config import TrafficConfig
from carla_eval.sandbox.giveway import ConflictZone, GiveWay, GiveWayConfig, find_conflicts
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.paths import LanePath
from carla_eval.sandbox.towns import Town, TrafficStream


class TownPaths:
    """Lane paths of a town's streams and priority roads, with the give-way zones of minor streams."""

    def __init__(self, town: Town, index: MapIndex, giveway: GiveWayConfig = GiveWayConfig()) -> None:
        self.town = town
        self.index = index
        self.priority_paths = [LanePath(index, lanes, cyclic) for lanes, cyclic in town.all_priority_paths()]
        self.stream_paths: dict[str, list[LanePath]] = {}
        self.stream_zones: dict[tuple[str, int], list[ConflictZone]] = {}
        for stream in town.streams:
            paths = [LanePath(index, lanes, stream.cyclic) for lanes in stream.paths]
            self.stream_paths[stream.name] = paths
            for k, p in enumerate(paths):
                if stream.priority:
                    self.stream_zones[(stream.name, k)] = []
                    continue
                on_j = np.array([(l[0], l[1]) in town.junction_roads for l in p.sample_lane])
                prio = np.array([index.lanes[l].priority for l in p.sample_lane])
                self.stream_zones[(stream.name, k)] = find_conflicts(index, p.xy, p.u, on_j, prio, self.priority_paths, giveway)


_PATHS_CACHE: dict[str, TownPaths] = {}


def get_town_paths(town: Town, index: MapIndex) -> TownPaths:
    tp = _PATHS_CACHE.get(town.name)
    if tp is None or tp.town is not town:
        tp = TownPaths(town, index)
        _PATHS_CACHE[town.name] = tp
    return tp


@dataclass
class _StreamState:
    stream: TrafficStream
    paths: list[LanePath]
    gap_range: tuple[float, float]
    speed_range: tuple[float, float]
    next_gap: float = 0.0
    enabled: bool = True


@dataclass
class StreamOverride:
    """A scenario's change to a stream: new gap / speed ranges (None keeps the town's)."""

    gap_range: tuple[float, float] | None = None
    speed_range: tuple[float, float] | None = None
    enabled: bool | None = None


class TrafficManager:
    """Spawns and removes background cars of a :class:`~carla_eval.sandbox.world.World`."""

    def __init__(self, world, paths: TownPaths, config: TrafficConfig) -> None:
        self.world = world
        self.paths = paths
        self.config = config
        self.rng = world.rng
        self._giveway_cfg = GiveWayConfig()
        self.streams: dict[str, _StreamState] = {}
        for s in paths.town.streams:
            st = _StreamState(s, paths.stream_paths[s.name], s.gap_range, s.speed_range)
            st.next_gap = self._draw_gap(st)
            self.streams[s.name] = st

    # ----------------------------------------------------------------- configuration
    def override(self, name: str, change: StreamOverride) -> None:
        """Apply a scenario's change to stream ``name`` (KeyError names the known streams)."""
        if name not in self.streams:
            raise KeyError(f"unknown traffic stream {name!r}; known: {sorted(self.streams)}")
        st = self.streams[name]
        if change.gap_range is not None:
            st.gap_range = change.gap_range
            st.next_gap = self._draw_gap(st)
        if change.speed_range is not None:
            st.speed_range = change.speed_range
        if change.enabled is not None:
            st.enabled = change.enabled

    def _draw_gap(self, st: _StreamState) -> float:
        lo, hi = st.gap_range
        return float(self.rng.uniform(lo, hi)) * self.config.density_scale

    # ----------------------------------------------------------------- spawning
    def _lane_free(self, path: LanePath, u: float, gap: float, pos: np.ndarray) -> bool:
        for v in self.world.road.vehicles:
            if np.hypot(*(v.position - pos)) < 8.0:
                return False
            uv = path.coord_of_vehicle(v)
            if uv is not None:
                d = abs(path.ahead(u, uv)) if not path.cyclic else min(path.ahead(u, uv), path.ahead(uv, u))
                if d < gap + v.LENGTH:
                    return False
        return True

    def _before_zones(self, st: _StreamState, path_k: int, u: float) -> bool:
        """False when coordinate ``u`` of the stream's path ``path_k`` lies within
        ``approach_clear`` m before a give-way zone or inside one (up to a car length past it)."""
        for z in self.paths.stream_zones.get((st.stream.name, path_k), []):
            if z.s_in - self.config.approach_clear <= u <= z.s_out + 5.0:
                return False
        return True

    def _spawnable_paths(self, st: _StreamState, u: float) -> list[int]:
        return [k for k in self._compatible_paths(st, u) if self._before_zones(st, k, u)]

    def _spawn(self, st: _StreamState, path_k: int, u: float, speed: float | None = None):
        path = st.paths[path_k]
        rules = self.world.rules
        if rules is not None and not rules.spawn_ok(path, u):
            return None  # never inside a controlled junction or at its stop line
        lane, s = path.locate(u)
        lane_obj = self.paths.index.lanes[lane]
        v = float(self.rng.uniform(*st.speed_range)) if speed is None else speed
        target = min(v, float(lane_obj.speed_limit))
        zones = self.paths.stream_zones.get((st.stream.name, path_k), [])
        gw = GiveWay(zones, self.paths.priority_paths, self._giveway_cfg) if zones else None
        return self.world.spawn_traffic(path, u, min(v, target), target, st.stream.lane_change, giveway=gw)

    def _candidates(self, st: _StreamState, ego_xy: np.ndarray) -> list[float]:
        path = st.paths[0]
        out = [] if path.cyclic else [0.0]
        u_ego, dist = path.project(ego_xy)
        if dist < 60.0:
            for u in (u_ego + self.config.spawn_ahead, u_ego - self.config.spawn_behind):
                if path.cyclic:
                    out.append(u % path.length)
                elif 0.0 < u < path.length - 40.0:
                    out.append(u)
        return out

    def _compatible_paths(self, st: _StreamState, u: float) -> list[int]:
        """Paths of the stream that are on the same lane as path 0 at coordinate u."""
        lane0 = st.paths[0].locate(u)[0]
        return [k for k, p in enumerate(st.paths) if u <= p.length and p.locate(u)[0] == lane0]

    def populate(self) -> None:
        """Fill the window around the ego at route start (along each stream's first path)."""
        if not self.config.enabled:
            return
        ego = self.world.ego
        c = self.config
        for name in sorted(self.streams):
            st = self.streams[name]
            if not st.enabled:
                continue
            path = st.paths[0]
            u_ego, dist = path.project(ego.position)
            lo, hi = (u_ego - c.spawn_behind, u_ego + c.spawn_ahead) if dist < 60.0 else (0.0, path.length)
            if not path.cyclic:
                lo, hi = max(lo, 0.0), min(hi, path.length - 40.0)
            u = lo + float(self.rng.uniform(0.0, st.next_gap))
            while u < hi and len(self.world.traffic) < c.max_vehicles:
                uu = u % path.length if path.cyclic else u
                pos = path.position(uu)
                d_ego = float(np.hypot(*(pos - ego.position)))
                ahead_of_me = path.ahead(uu, u_ego)
                behind_me = dist < 3.0 and 0.0 < ahead_of_me < c.init_clear_behind
                if c.init_min_distance <= d_ego <= c.active_radius and not behind_me and self._lane_free(path, uu, 5.0, pos):
                    choices = self._spawnable_paths(st, uu)
                    if choices:
                        k = choices[int(self.rng.integers(len(choices)))]
                        self._spawn(st, k, uu)
                u += st.next_gap + 5.0
                st.next_gap = self._draw_gap(st)

    def fill_stream(self, name: str, around: np.ndarray, behind: float, ahead: float) -> None:
        """Spawn cars of stream ``name`` (its current gaps and speeds) along its first path between
        ``behind`` m behind and ``ahead`` m ahead of ``around``, outside ``min_spawn_distance``."""
        st = self.streams[name]
        path = st.paths[0]
        u0, dist = path.project(around)
        if dist > 60.0:
            return
        u = u0 - behind
        while u < u0 + ahead and len(self.world.traffic) < self.config.max_vehicles:
            uu = u % path.length if path.cyclic else u
            if path.cyclic or 0.0 <= uu <= path.length - 40.0:
                pos = path.position(uu)
                if (np.hypot(*(pos - around)) >= self.config.min_spawn_distance and self._before_zones(st, 0, uu)
                        and self._lane_free(path, uu, 5.0, pos)):
                    self._spawn(st, 0, uu)
            u += st.next_gap + 5.0
            st.next_gap = self._draw_gap(st)

    def update(self) -> None:
        """Remove cars that left the window or their path; spawn at stream sources (every
        ``manage_every`` ticks)."""
        if not self.config.enabled or self.world.frame % self.config.manage_every != 0:
            return
        ego = self.world.ego
        c = self.config
        for v in list(self.world.traffic):
            far = np.hypot(*(v.position - ego.position)) > c.active_radius
            if far or getattr(v, "finished", False):
                self.world.remove(v)
        for name in sorted(self.streams):
            st = self.streams[name]
            if not st.enabled:
                continue
            for u in self._candidates(st, ego.position):
                if len(self.world.traffic) >= c.max_vehicles:
                    return
                path = st.paths[0]
                pos = path.position(u)
                d = float(np.hypot(*(pos - ego.position)))
                if d < c.min_spawn_distance or d > c.active_radius:
                    continue
                choices = self._spawnable_paths(st, u)
                if choices and self._lane_free(path, u, st.next_gap, pos):
                    self._spawn(st, choices[int(self.rng.integers(len(choices)))], u)
                    st.next_gap = self._draw_gap(st)

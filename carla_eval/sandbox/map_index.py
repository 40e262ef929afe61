"""Fast queries on a town's lanes: sampled centrelines, lane connectivity, nearest lane, road mask.

highway-env answers "which lane is this point on" by scanning every lane; the sandbox asks that for
every vehicle every tick, so it keeps a grid of candidate lanes per 10 m cell instead (same answer,
a handful of lanes checked). Built once per town and shared (read-only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from highway_env.road.lane import AbstractLane

from carla_eval.sandbox.towns import LaneIndex, RoadKey, Town
from carla_eval.sandbox.towns.base import lane_outline

SAMPLE_STEP = 1.0  # m between centreline samples
GRID_CELL = 10.0  # m
CONNECT_TOL = 0.5  # m: a lane starting this close to another's end continues it


@dataclass
class LaneGeometry:
    """A lane's centreline sampled every ~1 m: ``s`` [N], ``xy`` [N, 2], ``heading`` [N] (rad)."""

    s: np.ndarray
    xy: np.ndarray
    heading: np.ndarray

    def position(self, s: np.ndarray | float, lateral: np.ndarray | float = 0.0) -> np.ndarray:
        """World points [..., 2] at lane coordinates (s, lateral); lateral > 0 is to the right."""
        s = np.clip(np.asarray(s, dtype=np.float64), self.s[0], self.s[-1])
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        h = self.heading_at(s)
        lat = np.asarray(lateral, dtype=np.float64)
        return np.stack([x - np.sin(h) * lat, y + np.cos(h) * lat], axis=-1)

    def heading_at(self, s: np.ndarray | float) -> np.ndarray:
        s = np.clip(np.asarray(s, dtype=np.float64), self.s[0], self.s[-1])
        return np.interp(s, self.s, self._unwrapped)

    def __post_init__(self) -> None:
        self._unwrapped = np.unwrap(self.heading)


def _sample_lane(lane: AbstractLane) -> LaneGeometry:
    n = max(2, int(math.ceil(lane.length / SAMPLE_STEP)) + 1)
    s = np.linspace(0.0, lane.length, n)
    xy = np.array([lane.position(float(si), 0.0) for si in s])
    heading = np.array([lane.heading_at(float(si)) for si in s])
    return LaneGeometry(s, xy, heading)


class MapIndex:
    """Precomputed geometry and lookups for one town."""

    def __init__(self, town: Town, mask_resolution: float = 0.2) -> None:
        self.town = town
        self.lanes: dict[LaneIndex, AbstractLane] = town.lanes()
        self.geometry: dict[LaneIndex, LaneGeometry] = {k: _sample_lane(l) for k, l in self.lanes.items()}
        self.successors: dict[LaneIndex, list[LaneIndex]] = {k: [] for k in self.lanes}
        self.predecessors: dict[LaneIndex, list[LaneIndex]] = {k: [] for k in self.lanes}
        graph = town.network.graph
        for (a, b, i), lane in self.lanes.items():
            end = self.geometry[(a, b, i)].xy[-1]
            for c, lanes in graph.get(b, {}).items():
                for j, _ in enumerate(lanes):
                    if np.linalg.norm(self.geometry[(b, c, j)].xy[0] - end) < CONNECT_TOL:
                        self.successors[(a, b, i)].append((b, c, j))
                        self.predecessors[(b, c, j)].append((a, b, i))
        # Lanes that end without a successor next to a lane that goes on (acceleration lanes).
        self.ending_lanes: frozenset[LaneIndex] = frozenset(
            k for k in self.lanes if not self.successors[k] and any(
                side is not None and self.successors[side] for side in self.side_lanes(k)))
        self._build_grid()
        self.mask_resolution = mask_resolution
        x0, y0, x1, y1 = town.bounds(margin=40.0)
        self.mask_origin = (x0, y0)
        self.mask_shape = (int(math.ceil((y1 - y0) / mask_resolution)), int(math.ceil((x1 - x0) / mask_resolution)))
        self.drivable = self.polygon_mask([lane_outline(l) for l in self.lanes.values()] + list(town.extra_drivable))

    # ------------------------------------------------------------------ nearest lane
    def _build_grid(self) -> None:
        self._grid: dict[tuple[int, int], list[LaneIndex]] = {}
        for key, geo in self.geometry.items():
            reach = self.lanes[key].width_at(0.0) / 2 + GRID_CELL
            offsets = np.linspace(-reach, reach, int(math.ceil(2 * reach / (GRID_CELL / 2))) + 1)
            cells: set[tuple[int, int]] = set()
            for x, y in geo.xy:
                for dx in offsets:
                    for dy in offsets:
                        cells.add((int(math.floor((x + dx) / GRID_CELL)), int(math.floor((y + dy) / GRID_CELL))))
            for c in cells:
                self._grid.setdefault(c, []).append(key)

    def candidate_lanes(self, x: float, y: float) -> list[LaneIndex]:
        return self._grid.get((int(math.floor(x / GRID_CELL)), int(math.floor(y / GRID_CELL))), [])

    def closest_lane(self, position: np.ndarray, heading: float | None = None) -> LaneIndex:
        """highway-env's ``get_closest_lane_index`` restricted to nearby lanes (all lanes when the
        point is far from every lane)."""
        cands = self.candidate_lanes(float(position[0]), float(position[1]))
        if not cands:
            return self.town.network.get_closest_lane_index(position, heading)
        best, best_d = cands[0], math.inf
        for key in cands:
            d = self.lanes[key].distance_with_heading(position, heading)
            if d < best_d:
                best, best_d = key, d
        return best

    def lanes_at(self, position: np.ndarray, margin: float = 0.0) -> list[tuple[LaneIndex, float, float]]:
        """Lanes whose surface (+ margin) contains the point, as (index, s, lateral)."""
        out = []
        for key in self.candidate_lanes(float(position[0]), float(position[1])):
            lane = self.lanes[key]
            s, lat = lane.local_coordinates(position)
            if abs(lat) <= lane.width_at(s) / 2 + margin and -0.5 <= s <= lane.length + 0.5:
                out.append((key, float(s), float(lat)))
        return out

    def side_lanes(self, key: LaneIndex) -> tuple[LaneIndex | None, LaneIndex | None]:
        """(left, right) neighbours on the same road (None where there is none)."""
        a, b, i = key
        n = len(self.town.network.graph[a][b])
        return ((a, b, i - 1) if i > 0 else None, (a, b, i + 1) if i < n - 1 else None)

    def road_lane_count(self, road: RoadKey) -> int:
        return len(self.town.network.graph[road[0]][road[1]])

    # ------------------------------------------------------------------ masks
    def polygon_mask(self, polygons: list[np.ndarray]) -> np.ndarray:
        """Boolean mask [H, W] over the town (``mask_resolution`` m cells) covering ``polygons``."""
        mask = np.zeros(self.mask_shape, dtype=np.uint8)
        x0, y0 = self.mask_origin
        scale = 1.0 / self.mask_resolution
        shift = 4
        for p in polygons:  # one call per polygon: fillPoly XORs overlapping contours
            pts = np.round(((p - [x0, y0]) * scale - 0.5) * (1 << shift)).astype(np.int32)
            cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=shift)
        return mask.astype(bool)

    def mask_contains(self, mask: np.ndarray, x: float, y: float) -> bool:
        x0, y0 = self.mask_origin
        col = int((x - x0) / self.mask_resolution)
        row = int((y - y0) / self.mask_resolution)
        if row < 0 or col < 0 or row >= mask.shape[0] or col >= mask.shape[1]:
            return False
        return bool(mask[row, col])

    def on_road(self, x: float, y: float) -> bool:
        return self.mask_contains(self.drivable, x, y)


_INDEX_CACHE: dict[str, MapIndex] = {}


def get_map_index(town: Town) -> MapIndex:
    """The (cached) index of ``town``."""
    idx = _INDEX_CACHE.get(town.name)
    if idx is None or idx.town is not town:
        idx = MapIndex(town)
        _INDEX_CACHE[town.name] = idx
    return idx

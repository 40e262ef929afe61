"""Lane paths: a sequence of connected lanes read as one 1-D coordinate ``u`` (metres from its start).

Background streams, priority roads and scenario actors follow lane paths; a cyclic path (a
racetrack lap, a roundabout ring) wraps around.
"""

from __future__ import annotations

import numpy as np

from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.towns import LaneIndex


class LanePath:
    """Connected lanes ``lanes`` (each at most once) with cumulative offsets.

    Attributes:
        lanes: the lane indices in driving order.
        offsets: u of each lane's start.
        length: total length, m.
        xy: [M, 2] centreline samples (about 1 m apart), ``u`` [M] their coordinates,
            ``sample_lane`` [M] the lane of each sample.
        cyclic: the last lane continues into the first.
    """

    def __init__(self, index: MapIndex, lanes: tuple[LaneIndex, ...], cyclic: bool = False) -> None:
        if not lanes:
            raise ValueError("a lane path needs at least one lane")
        for a, b in zip(lanes[:-1], lanes[1:]):
            if b not in index.successors[a]:
                raise ValueError(f"lane path is not connected: {b} does not follow {a}")
        if cyclic and lanes[0] not in index.successors[lanes[-1]]:
            raise ValueError(f"cyclic lane path does not close: {lanes[0]} does not follow {lanes[-1]}")
        self.lanes = tuple(lanes)
        self.cyclic = cyclic
        self._offset: dict[LaneIndex, float] = {}
        xs, us, owner = [], [], []
        u = 0.0
        for lane in lanes:
            if lane in self._offset:
                raise ValueError(f"lane {lane} appears twice in a lane path")
            self._offset[lane] = u
            geo = index.geometry[lane]
            xs.append(geo.xy[:-1])
            us.append(u + geo.s[:-1])
            owner.extend([lane] * (len(geo.s) - 1))
            u += float(geo.s[-1])
        last = index.geometry[lanes[-1]]
        xs.append(last.xy[-1:])
        us.append(np.array([u]))
        owner.append(lanes[-1])
        self.sample_lane: list[LaneIndex] = owner
        self.offsets = tuple(self._offset[l] for l in lanes)
        self.length = u
        self.xy = np.concatenate(xs, axis=0)
        self.u = np.concatenate(us)
        self._index = index

    def __contains__(self, lane: LaneIndex) -> bool:
        return lane in self._offset

    def coord(self, lane: LaneIndex, s_local: float) -> float | None:
        """u of the point at ``s_local`` on ``lane`` (None when the lane is not on the path)."""
        off = self._offset.get(lane)
        return None if off is None else off + s_local

    def coord_of_vehicle(self, vehicle) -> float | None:
        """u of a highway-env vehicle's centre, from its current lane (None when off the path)."""
        lane_index = getattr(vehicle, "lane_index", None)
        if lane_index is None or lane_index not in self._offset:
            return None
        s, _ = self._index.lanes[lane_index].local_coordinates(vehicle.position)
        return self._offset[lane_index] + float(s)

    def ahead(self, u_from: float, u_to: float) -> float:
        """Distance along the path from ``u_from`` to ``u_to`` (cyclic paths: in [0, length))."""
        d = u_to - u_from
        return d % self.length if self.cyclic else d

    def locate(self, u: float) -> tuple[LaneIndex, float]:
        """(lane, s on that lane) at coordinate u (clipped to the path; wrapped when cyclic)."""
        if self.cyclic:
            u = u % self.length
        u = min(max(u, 0.0), self.length)
        k = int(np.searchsorted(self.offsets, u, side="right") - 1)
        k = min(max(k, 0), len(self.lanes) - 1)
        return self.lanes[k], u - self.offsets[k]

    def position(self, u: float, lateral: float = 0.0) -> np.ndarray:
        lane, s = self.locate(u)
        return self._index.geometry[lane].position(s, lateral)

    def heading(self, u: float) -> float:
        lane, s = self.locate(u)
        return float(self._index.geometry[lane].heading_at(s))

    def project(self, xy: np.ndarray) -> tuple[float, float]:
        """(u, distance) of the sample closest to ``xy``."""
        d = np.hypot(self.xy[:, 0] - xy[0], self.xy[:, 1] - xy[1])
        k = int(np.argmin(d))
        return float(self.u[k]), float(d[k])

"""What a sandbox town is: a highway-env road network plus what the sandbox needs around it.

Frames: CARLA world metres (x east, y south; yaw in rad, clockwise seen from above), which is
highway-env's own (x, y) with y drawn downward. A lane's lateral coordinate is positive to the
RIGHT of its direction of travel (highway-env's ``direction_lateral``), so lane ids grow to the right
on multi-lane roads (lane 0 is the leftmost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from highway_env.road.lane import AbstractLane, CircularLane, LineType, StraightLane
from highway_env.road.road import RoadNetwork

from agent.geo import GeoReference

LaneIndex = tuple[str, str, int]
RoadKey = tuple[str, str]

LANE_WIDTH = 4.0


@dataclass(frozen=True)
class TrafficStream:
    """Background traffic along one or more lane paths that start on the same lane.

    Attributes:
        name: for logs.
        paths: lane sequences a spawned vehicle follows (one is drawn per vehicle); a path with
            ``cyclic`` set loops (racetrack).
        speed_range: target speed drawn per vehicle, m/s.
        gap_range: bumper-to-bumper gap (m) drawn between consecutive spawned vehicles.
        lane_change: whether vehicles may change lanes (MOBIL) on multi-lane roads.
        priority: vehicles of this stream have right of way over crossing / merging minor paths;
            a stream that is not a priority stream yields to the priority ones.
        cyclic: the paths loop.
    """

    name: str
    paths: tuple[tuple[LaneIndex, ...], ...]
    speed_range: tuple[float, float]
    gap_range: tuple[float, float]
    lane_change: bool = False
    priority: bool = True
    cyclic: bool = False


@dataclass(frozen=True)
class SignalSpec:
    """A traffic light controlling one incoming lane of a signalised junction.

    Attributes:
        signal_id: the light's actor id (unique in the town; messages name it).
        junction: the junction it belongs to (lights of one junction share one cycle).
        phase: its slot in the junction's cycle (one approach per slot: 0, 1, 2, ...).
        lane: the incoming lane it controls.
        s_stop: where the stop line is on that lane (m from the lane's start).
        pole: (x, y) world m of the pole (the light's location in messages).
        head: (x, y) world m of the light head (hung over the lane on a mast arm).
    """

    signal_id: int
    junction: str
    phase: int
    lane: LaneIndex
    s_stop: float
    pole: tuple[float, float]
    head: tuple[float, float]


@dataclass(frozen=True)
class StopSignSpec:
    """A stop sign on one incoming lane: its stop line at ``s_stop`` (m along ``lane``) and its pole
    at ``pole`` (x, y world m; the sign's location in messages)."""

    sign_id: int
    lane: LaneIndex
    s_stop: float
    pole: tuple[float, float]


@dataclass(frozen=True)
class CrosswalkSpec:
    """A zebra crossing: ``centre`` (x, y world m), ``yaw`` (rad) of the road it crosses, its
    extent ``length`` along that road and ``width`` across it (m)."""

    centre: tuple[float, float]
    yaw: float
    length: float
    width: float


@dataclass
class Town:
    """A sandbox map.

    Attributes:
        name: town name used in route files (``<route town=...>``).
        network: the highway-env lane graph.
        geo: geo-reference for GNSS (world origin's lat/lon); (0, 0) in every town, as in CARLA's towns
            and the agent configs' default.
        junction_roads: roads (from, to) inside junctions; a route through them gets a LEFT / RIGHT /
            STRAIGHT command from its heading change (consecutive junction roads form one manoeuvre).
        streams: background traffic streams.
        extra_drivable: polygons [N, 2] (world m) that are road without being a lane (junction boxes).
        priority_paths: extra lane paths with right of way, as (lanes, cyclic); the paths of priority
            streams are added by :meth:`all_priority_paths`.
        description: one line for the docs.
        signals: traffic lights (:class:`SignalSpec`); stop_signs: stop signs; crosswalks: zebra
            crossings (all empty in towns without them).
        walker_paths: sidewalk polylines [N, 2] (world m) that ambient walkers stroll along.
    """

    name: str
    network: RoadNetwork
    geo: GeoReference
    junction_roads: frozenset[RoadKey] = frozenset()
    streams: tuple[TrafficStream, ...] = ()
    extra_drivable: tuple[np.ndarray, ...] = ()
    priority_paths: tuple[tuple[tuple[LaneIndex, ...], bool], ...] = ()
    description: str = ""
    signals: tuple[SignalSpec, ...] = ()
    stop_signs: tuple[StopSignSpec, ...] = ()
    crosswalks: tuple[CrosswalkSpec, ...] = ()
    walker_paths: tuple[np.ndarray, ...] = ()
    _bounds: tuple[float, float, float, float] | None = field(default=None, repr=False)

    def all_priority_paths(self) -> list[tuple[tuple[LaneIndex, ...], bool]]:
        """Every lane path with right of way: ``priority_paths`` plus the paths of priority streams."""
        out = list(self.priority_paths)
        for stream in self.streams:
            if stream.priority:
                out.extend((path, stream.cyclic) for path in stream.paths)
        return out

    def lane(self, index: LaneIndex) -> AbstractLane:
        return self.network.get_lane(index)

    def lanes(self) -> dict[LaneIndex, AbstractLane]:
        return self.network.lanes_dict()

    def bounds(self, margin: float = 20.0) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of every lane's edges plus ``margin`` metres."""
        if self._bounds is None:
            pts = [lane_outline(lane) for lane in self.network.lanes_list()]
            pts.extend(self.extra_drivable)
            allp = np.concatenate(pts, axis=0)
            self._bounds = (float(allp[:, 0].min()), float(allp[:, 1].min()), float(allp[:, 0].max()), float(allp[:, 1].max()))
        x0, y0, x1, y1 = self._bounds
        return x0 - margin, y0 - margin, x1 + margin, y1 + margin


def lane_samples(lane: AbstractLane, step: float = 1.0, lateral: float = 0.0) -> np.ndarray:
    """Points [N, 2] along ``lane`` at ``lateral`` offset, every ``step`` m, both ends included."""
    n = max(2, int(math.ceil(lane.length / step)) + 1)
    s = np.linspace(0.0, lane.length, n)
    return np.array([lane.position(float(si), lateral) for si in s])


def lane_outline(lane: AbstractLane, step: float = 1.0) -> np.ndarray:
    """Closed polygon [N, 2] of the lane surface (left edge forward, right edge back)."""
    n = max(2, int(math.ceil(lane.length / step)) + 1)
    s = np.linspace(0.0, lane.length, n)
    left = np.array([lane.position(float(si), -lane.width_at(si) / 2.0) for si in s])
    right = np.array([lane.position(float(si), lane.width_at(si) / 2.0) for si in s])
    return np.concatenate([left, right[::-1]], axis=0)


def line_types_for(lane_id: int, n_lanes: int, curved: bool = False) -> tuple[int, int]:
    """Markings (left, right) of lane ``lane_id`` on an ``n_lanes`` road: solid road edges, dashed
    separators, each separator drawn once (by the lane on its left). Curved lanes use highway-env's
    CONTINUOUS (drawn as a polyline) instead of CONTINUOUS_LINE (drawn as one straight chord)."""
    solid = LineType.CONTINUOUS if curved else LineType.CONTINUOUS_LINE
    left = solid if lane_id == 0 else LineType.NONE
    right = solid if lane_id == n_lanes - 1 else LineType.STRIPED
    return left, right


class RoadBuilder:
    """Adds multi-lane roads to a network like a turtle: straight runs and circular arcs.

    The pose is the centre of lane 0 (the leftmost) and its heading; lane i lies i * width to the
    right. ``turn(radius, angle)`` turns right for angle > 0 (clockwise seen from above, yaw grows)
    and left for angle < 0; ``radius`` is that of lane 0's centreline.
    """

    def __init__(
        self,
        network: RoadNetwork,
        start: tuple[float, float],
        heading: float,
        n_lanes: int,
        prefix: str,
        speed_limit: float,
        width: float = LANE_WIDTH,
        priority: int = 0,
        first_node: str | None = None,
    ) -> None:
        self.net = network
        self.pos = np.array(start, dtype=float)
        self.heading = float(heading)
        self.n_lanes = n_lanes
        self.prefix = prefix
        self.speed_limit = speed_limit
        self.width = width
        self.priority = priority
        self.node = first_node or f"{prefix}0"
        self._count = 0
        self.nodes = [self.node]

    def _next_node(self, name: str | None) -> str:
        self._count += 1
        return name or f"{self.prefix}{self._count}"

    def _right(self) -> np.ndarray:
        return np.array([-math.sin(self.heading), math.cos(self.heading)])

    def straight(self, length: float, to: str | None = None, speed_limit: float | None = None) -> str:
        nxt = self._next_node(to)
        fwd = np.array([math.cos(self.heading), math.sin(self.heading)])
        end = self.pos + length * fwd
        for i in range(self.n_lanes):
            off = i * self.width * self._right()
            self.net.add_lane(
                self.node,
                nxt,
                StraightLane(
                    self.pos + off,
                    end + off,
                    width=self.width,
                    line_types=line_types_for(i, self.n_lanes),
                    speed_limit=speed_limit or self.speed_limit,
                    priority=self.priority,
                ),
            )
        self.pos = end
        self.node = nxt
        self.nodes.append(nxt)
        return nxt

    def turn(self, radius: float, angle: float, to: str | None = None, speed_limit: float | None = None) -> str:
        nxt = self._next_node(to)
        right = angle > 0
        centre = self.pos + (radius if right else -radius) * self._right()
        phi0 = self.heading - math.pi / 2 if right else self.heading + math.pi / 2
        phi1 = phi0 + angle
        direction = 1 if right else -1
        for i in range(self.n_lanes):
            r_i = radius - direction * i * self.width
            limit = speed_limit or self.speed_limit
            self.net.add_lane(
                self.node,
                nxt,
                CircularLane(
                    centre,
                    r_i,
                    phi0,
                    phi1,
                    clockwise=right,
                    width=self.width,
                    line_types=line_types_for(i, self.n_lanes, curved=True),
                    speed_limit=limit,
                    priority=self.priority,
                ),
            )
        self.pos = centre + radius * np.array([math.cos(phi1), math.sin(phi1)])
        self.heading = self.heading + angle
        self.node = nxt
        self.nodes.append(nxt)
        return nxt


def road_lanes(network: RoadNetwork, nodes: list[str], lane_id: int) -> tuple[LaneIndex, ...]:
    """Lane ``lane_id`` of each road between consecutive ``nodes``."""
    return tuple((a, b, lane_id) for a, b in zip(nodes[:-1], nodes[1:]))


def square(cx: float, cy: float, half: float) -> np.ndarray:
    return np.array([[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half], [cx - half, cy + half]])

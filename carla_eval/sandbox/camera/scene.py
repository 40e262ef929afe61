"""The static 3D scene of a sandbox town, as triangle meshes in the CARLA world frame.

Built once per town from its lanes (numpy only; :mod:`renderer` turns it into panda3d geometry):

- ``ground``: textured off-road terrain, 20 m tiles around the town;
- ``road``: the lane surfaces and junction boxes, textured asphalt;
- ``marking``: every lane line the map has (highway-env's line types: dashed 3 m on / 1.33 m off,
  solid), 0.2 m wide, just above the road;
- ``solid``: 3D objects with baked face shading: curbs along road edges, and roadside poles,
  signs, trees and buildings at irregular spacing drawn from a generator seeded by the town's
  name (the same town looks the same in every run; motion along a straight road is visible);
- traffic controls, in towns that have them: stop lines and zebra crossings (markings), traffic
  light poles with a mast arm and a dark housing over the lane (the lamps are dynamic: the
  renderer lights them in the state's colour each tick, :func:`signal_lamps`), stop signs (a red
  plate on a pole).

Every triangle belongs to a 100 m cell (by its centre) and carries a CARLA semantic class
(:data:`SEMANTIC_CLASSES`), so the renderer can cull per cell and render semantic ground truth.
Frames: world x east, y south, z up (metres), as everywhere in the project.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from highway_env.road.lane import LineType

from carla_eval.sandbox.map_index import MapIndex

CELL_M = 100.0
GROUND_TILE_M = 20.0
GROUND_MARGIN_M = 320.0
MARKING_WIDTH_M = 0.2
STRIPE_PERIOD_M = 4.33  # highway-env's LaneGraphics: a 3 m stripe every 4.33 m
STRIPE_LENGTH_M = 3.0
ROAD_Z, MARKING_Z = 0.0, 0.0  # flat layers; drawn in layer order (see renderer)

# CARLA 0.9.14+ semantic tags (sensor.camera.semantic_segmentation, red channel).
SEMANTIC_CLASSES: dict[str, int] = {
    "unlabeled": 0, "road": 1, "sidewalk": 2, "building": 3, "pole": 6, "traffic_light": 7, "traffic_sign": 8,
    "vegetation": 9, "terrain": 10, "sky": 11, "pedestrian": 12, "car": 14, "road_line": 24,
}
LAYERS = ("ground", "road", "marking", "solid")
# Directional light baked into face colours: the sun's horizontal direction (world) and the
# brightness of a vertical face facing it (1.0) or facing away (SHADE_MIN); tops are SHADE_TOP.
SUN_DIR = np.array([0.6, -0.8])
SHADE_MIN, SHADE_TOP = 0.55, 1.0


@dataclass
class Mesh:
    """Triangles of one (cell, layer, class): positions [N, 3] float32 (world m), colours [N, 4]
    uint8 RGBA, texture coordinates [N, 2] float32 (world m / tile size), triangles [M, 3] int32."""

    positions: list[np.ndarray] = field(default_factory=list)
    colours: list[np.ndarray] = field(default_factory=list)
    uvs: list[np.ndarray] = field(default_factory=list)
    triangles: list[np.ndarray] = field(default_factory=list)
    count: int = 0

    def add(self, pos: np.ndarray, col: np.ndarray, tris: np.ndarray, uv: np.ndarray | None = None) -> None:
        pos = np.asarray(pos, np.float32).reshape(-1, 3)
        self.positions.append(pos)
        self.colours.append(np.broadcast_to(np.asarray(col, np.uint8), (len(pos), 4)))
        self.uvs.append(np.zeros((len(pos), 2), np.float32) if uv is None else np.asarray(uv, np.float32))
        self.triangles.append(np.asarray(tris, np.int32).reshape(-1, 3) + self.count)
        self.count += len(pos)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self.positions), np.concatenate(self.colours), np.concatenate(self.uvs),
                np.concatenate(self.triangles))


class SceneMeshes:
    """Meshes keyed by (cell, layer, semantic class)."""

    def __init__(self) -> None:
        self.meshes: dict[tuple[tuple[int, int], str, int], Mesh] = {}

    def mesh(self, centre_xy: np.ndarray, layer: str, cls: int) -> Mesh:
        cell = (int(math.floor(centre_xy[0] / CELL_M)), int(math.floor(centre_xy[1] / CELL_M)))
        key = (cell, layer, cls)
        m = self.meshes.get(key)
        if m is None:
            m = self.meshes[key] = Mesh()
        return m

    def quad_strip(self, left: np.ndarray, right: np.ndarray, z: float, layer: str, cls: int, colour, uv_scale: float | None = None) -> None:
        """Quads between two polylines [N, 2] (same N), one quad per segment, each in its cell."""
        for i in range(len(left) - 1):
            pts = np.array([left[i], right[i], right[i + 1], left[i + 1]], np.float64)
            pos = np.concatenate([pts, np.full((4, 1), z)], axis=1)
            uv = pts / uv_scale if uv_scale else None
            self.mesh(pts.mean(0), layer, cls).add(pos, colour, [[0, 1, 2], [0, 2, 3]], uv)

    def polygon(self, pts: np.ndarray, z: float, layer: str, cls: int, colour, uv_scale: float | None = None) -> None:
        """A convex polygon [N, 2] as a triangle fan."""
        pts = np.asarray(pts, np.float64)
        n = len(pts)
        pos = np.concatenate([pts, np.full((n, 1), z)], axis=1)
        tris = [[0, i, i + 1] for i in range(1, n - 1)]
        uv = pts / uv_scale if uv_scale else None
        self.mesh(pts.mean(0), layer, cls).add(pos, colour, tris, uv)

    def box(self, centre: np.ndarray, yaw: float, size: tuple[float, float, float], z0: float, cls: int, rgb) -> None:
        """An axis box (length along yaw, width, height) standing on ``z0``; 5 faces, baked shading."""
        add_box(self.mesh(np.asarray(centre, np.float64), "solid", cls), centre, yaw, size, z0, rgb)


def box_geometry(centre, yaw: float, size: tuple[float, float, float], z0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions [20, 3], per-vertex shade [20], triangles [10, 3] of a box without its bottom."""
    c, s = math.cos(yaw), math.sin(yaw)
    f, r = np.array([c, s]), np.array([-s, c])
    hl, hw = size[0] / 2.0, size[1] / 2.0
    ctr = np.asarray(centre, np.float64)[:2]
    corners = [ctr + f * a * hl + r * b * hw for a, b in ((1, -1), (1, 1), (-1, 1), (-1, -1))]  # FL FR RR RL
    z1 = z0 + size[2]
    pos, shade, tris = [], [], []
    for i in range(4):  # sides
        a, b = corners[i], corners[(i + 1) % 4]
        edge = b - a
        normal = np.array([edge[1], -edge[0]]) / (np.linalg.norm(edge) + 1e-12)  # outward (clockwise corners)
        k = len(pos)
        pos += [[*a, z0], [*b, z0], [*b, z1], [*a, z1]]
        sh = SHADE_MIN + (1.0 - SHADE_MIN) * max(0.0, float(normal @ SUN_DIR))
        shade += [sh] * 4
        tris += [[k, k + 1, k + 2], [k, k + 2, k + 3]]
    k = len(pos)
    pos += [[*p, z1] for p in corners]
    shade += [SHADE_TOP] * 4
    tris += [[k, k + 1, k + 2], [k, k + 2, k + 3]]
    return np.array(pos), np.array(shade), np.array(tris)


def add_box(mesh: Mesh, centre, yaw: float, size, z0: float, rgb) -> None:
    pos, shade, tris = box_geometry(centre, yaw, size, z0)
    col = np.clip(np.asarray(rgb, np.float64)[None, :] * shade[:, None], 0, 255)
    mesh.add(pos, np.concatenate([col, np.full((len(col), 1), 255)], 1).astype(np.uint8), tris)


def _seed(name: str, salt: str) -> int:
    return zlib.crc32(f"{name}/{salt}".encode())


def _lane_samples(lane, step: float) -> np.ndarray:
    n = max(2, int(math.ceil(lane.length / step)) + 1)
    return np.linspace(0.0, lane.length, n)


def _edge(lane, s: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    return np.array([lane.position(float(si), float(li)) for si, li in zip(s, lateral)])


def _is_straight(lane) -> bool:
    return type(lane).__name__ == "StraightLane"


@dataclass(frozen=True)
class RoadsideStyle:
    """Spacing (m) and kinds of roadside objects; probabilities of pole / sign / tree / building."""

    min_gap_m: float = 5.0
    max_gap_m: float = 22.0
    kinds: tuple[str, ...] = ("pole", "sign", "tree", "tree", "building", "building")


def build_scene(index: MapIndex, style: RoadsideStyle = RoadsideStyle()) -> SceneMeshes:
    """The static meshes of ``index``'s town (deterministic: seeded by the town's name)."""
    town = index.town
    scene = SceneMeshes()
    rng = np.random.default_rng(_seed(town.name, "scene"))
    road_cls, line_cls = SEMANTIC_CLASSES["road"], SEMANTIC_CLASSES["road_line"]
    white = (235, 235, 228, 255)
    # Ground tiles (grey-white vertex colour: the texture gives the look).
    x0, y0, x1, y1 = town.bounds(margin=GROUND_MARGIN_M)
    gx = np.arange(math.floor(x0 / GROUND_TILE_M), math.ceil(x1 / GROUND_TILE_M)) * GROUND_TILE_M
    gy = np.arange(math.floor(y0 / GROUND_TILE_M), math.ceil(y1 / GROUND_TILE_M)) * GROUND_TILE_M
    t = GROUND_TILE_M
    for x in gx:
        for y in gy:
            scene.polygon(np.array([[x, y], [x + t, y], [x + t, y + t], [x, y + t]]), 0.0, "ground",
                          SEMANTIC_CLASSES["terrain"], (255, 255, 255, 255), uv_scale=8.0)
    # Road surfaces and markings.
    for key in sorted(index.lanes, key=str):
        lane = index.lanes[key]
        step = 10.0 if _is_straight(lane) else 1.5
        s = _lane_samples(lane, step)
        w = np.array([lane.width_at(float(si)) / 2.0 for si in s])
        left, right = _edge(lane, s, -w), _edge(lane, s, w)
        scene.quad_strip(left, right, ROAD_Z, "road", road_cls, (255, 255, 255, 255), uv_scale=6.0)
        for side, sign in ((0, -1.0), (1, 1.0)):
            kind = lane.line_types[side]
            if kind == LineType.NONE:
                continue
            if kind == LineType.STRIPED:
                starts = np.arange(0.0, lane.length, STRIPE_PERIOD_M)
                for s0 in starts:
                    ss = np.linspace(s0, min(s0 + STRIPE_LENGTH_M, lane.length), 2 if _is_straight(lane) else 3)
                    ww = np.array([lane.width_at(float(si)) / 2.0 for si in ss])
                    a = _edge(lane, ss, sign * ww - MARKING_WIDTH_M / 2)
                    b = _edge(lane, ss, sign * ww + MARKING_WIDTH_M / 2)
                    scene.quad_strip(a, b, MARKING_Z, "marking", line_cls, white)
            else:
                a = _edge(lane, s, sign * w - MARKING_WIDTH_M / 2)
                b = _edge(lane, s, sign * w + MARKING_WIDTH_M / 2)
                scene.quad_strip(a, b, MARKING_Z, "marking", line_cls, white)
    for poly in town.extra_drivable:
        scene.polygon(poly, ROAD_Z, "road", road_cls, (255, 255, 255, 255), uv_scale=6.0)
    _curbs_and_roadside(scene, index, rng, style)
    _traffic_controls(scene, index)
    return scene


LIGHT_HOUSING = (0.35, 0.45, 1.1)  # m: depth, width, height of a light head
LIGHT_HOUSING_Z = 4.5  # m: bottom of the head
LAMP_SIZE = 0.3  # m
LAMP_STATES = ("Red", "Yellow", "Green")  # top to bottom


def crosswalk_stripes(town) -> list[tuple[np.ndarray, float, float, float]]:
    """Zebra stripes of the town's crossings as (centre, yaw, length, width) rectangles (m):
    0.5 m wide stripes along the road, 1 m apart, across the whole crossing."""
    out = []
    for cw in town.crosswalks:
        f = np.array([math.cos(cw.yaw), math.sin(cw.yaw)])
        r = np.array([-math.sin(cw.yaw), math.cos(cw.yaw)])
        for off in np.arange(-cw.width / 2 + 0.5, cw.width / 2 - 0.25, 1.0):
            out.append((np.asarray(cw.centre) + r * off, cw.yaw, cw.length, 0.5))
        del f
    return out


def stop_line_rects(index: MapIndex) -> list[tuple[np.ndarray, float, float, float]]:
    """Stop lines (0.5 m deep, across the lane, just beyond the stop point) as rectangles."""
    town = index.town
    out = []
    for lane_key, s_stop in [(sp.lane, sp.s_stop) for sp in town.signals] + [(sp.lane, sp.s_stop) for sp in town.stop_signs]:
        geo = index.geometry[lane_key]
        out.append((geo.position(s_stop + 0.25), float(geo.heading_at(s_stop)), 0.5, index.lanes[lane_key].width_at(s_stop)))
    return out


def signal_facing(index: MapIndex, spec) -> float:
    """Yaw (rad) of the lane a light controls at its stop line (the head faces the other way)."""
    return float(index.geometry[spec.lane].heading_at(spec.s_stop))


def signal_lamps(index: MapIndex, spec) -> list[tuple[str, np.ndarray, float]]:
    """The three lamps of a light head: (state they show, centre [3] world m, yaw rad)."""
    yaw = signal_facing(index, spec)
    f = np.array([math.cos(yaw), math.sin(yaw)])
    front = np.asarray(spec.head) - f * (LIGHT_HOUSING[0] / 2 + 0.03)
    out = []
    for k, state in enumerate(LAMP_STATES):
        z = LIGHT_HOUSING_Z + LIGHT_HOUSING[2] - 0.2 - k * 0.35 - LAMP_SIZE / 2
        out.append((state, np.array([front[0], front[1], z]), yaw))
    return out


def _traffic_controls(scene: SceneMeshes, index: MapIndex) -> None:
    town = index.town
    if not (town.signals or town.stop_signs or town.crosswalks):
        return
    white = (235, 235, 228, 255)
    line_cls = SEMANTIC_CLASSES["road_line"]
    for centre, yaw, length, width in crosswalk_stripes(town) + stop_line_rects(index):
        f = np.array([math.cos(yaw), math.sin(yaw)])
        r = np.array([-math.sin(yaw), math.cos(yaw)])
        c = np.asarray(centre, np.float64)
        pts = np.array([c + f * a * length / 2 + r * b * width / 2 for a, b in ((1, -1), (1, 1), (-1, 1), (-1, -1))])
        scene.polygon(pts, MARKING_Z, "marking", line_cls, white)
    pole_cls, light_cls = SEMANTIC_CLASSES["pole"], SEMANTIC_CLASSES["traffic_light"]
    for spec in town.signals:
        pole, head = np.asarray(spec.pole, np.float64), np.asarray(spec.head, np.float64)
        top = LIGHT_HOUSING_Z + LIGHT_HOUSING[2] + 0.3
        scene.box(pole, 0.0, (0.28, 0.28, top + 0.2), 0.0, pole_cls, (70, 72, 75))
        arm = head - pole
        scene.box(0.5 * (pole + head), math.atan2(arm[1], arm[0]), (float(np.hypot(*arm)) + 0.3, 0.16, 0.16), top,
                  pole_cls, (70, 72, 75))
        scene.box(head, signal_facing(index, spec), LIGHT_HOUSING, LIGHT_HOUSING_Z, light_cls, (25, 25, 28))
        scene.box(head, 0.0, (0.1, 0.1, top - LIGHT_HOUSING_Z - LIGHT_HOUSING[2]), LIGHT_HOUSING_Z + LIGHT_HOUSING[2],
                  pole_cls, (70, 72, 75))
    sign_cls = SEMANTIC_CLASSES["traffic_sign"]
    for spec in town.stop_signs:
        pole = np.asarray(spec.pole, np.float64)
        yaw = float(index.geometry[spec.lane].heading_at(spec.s_stop))
        scene.box(pole, yaw, (0.1, 0.1, 2.0), 0.0, pole_cls, (150, 150, 150))
        scene.box(pole, yaw, (0.05, 0.86, 0.86), 1.85, sign_cls, (235, 235, 235))  # white rim
        f = np.array([math.cos(yaw), math.sin(yaw)])
        scene.box(pole - f * 0.04, yaw, (0.04, 0.74, 0.74), 1.91, sign_cls, (200, 20, 24))


class _Occupancy:
    """Coarse 2 m grid of ground taken by roadside objects (so they do not overlap)."""

    def __init__(self) -> None:
        self.cells: set[tuple[int, int]] = set()

    def _cells(self, centre: np.ndarray, radius: float) -> list[tuple[int, int]]:
        r = int(math.ceil(radius / 2.0))
        cx, cy = int(math.floor(centre[0] / 2.0)), int(math.floor(centre[1] / 2.0))
        return [(cx + i, cy + j) for i in range(-r, r + 1) for j in range(-r, r + 1)]

    def take(self, centre: np.ndarray, radius: float) -> bool:
        cells = self._cells(centre, radius)
        if any(c in self.cells for c in cells):
            return False
        self.cells.update(cells)
        return True


def _clear_of_road(index: MapIndex, centre: np.ndarray, radius: float) -> bool:
    for dx in (-radius, 0.0, radius):
        for dy in (-radius, 0.0, radius):
            if index.on_road(float(centre[0] + dx), float(centre[1] + dy)):
                return False
    return True


def _curbs_and_roadside(scene: SceneMeshes, index: MapIndex, rng: np.random.Generator, style: RoadsideStyle) -> None:
    occupied = _Occupancy()
    curb_cls = SEMANTIC_CLASSES["sidewalk"]
    for key in sorted(index.lanes, key=str):
        lane = index.lanes[key]
        for side, sign in ((0, -1.0), (1, 1.0)):
            if lane.line_types[side] not in (LineType.CONTINUOUS, LineType.CONTINUOUS_LINE):
                continue
            # Curb: 0.25 m wide, 0.15 m high, just outside the edge, where the outside is off-road.
            s = _lane_samples(lane, 10.0 if _is_straight(lane) else 2.0)
            for s_a, s_b in zip(s[:-1], s[1:]):
                sm = 0.5 * (s_a + s_b)
                half = lane.width_at(float(sm)) / 2.0
                outside = np.asarray(lane.position(float(sm), sign * (half + 0.6)))
                if index.on_road(float(outside[0]), float(outside[1])):
                    continue
                pa = np.asarray(lane.position(float(s_a), sign * (half + 0.175)))
                pb = np.asarray(lane.position(float(s_b), sign * (half + 0.175)))
                seg = pb - pa
                length = float(np.linalg.norm(seg))
                if length < 1e-3:
                    continue
                scene.box(0.5 * (pa + pb), math.atan2(seg[1], seg[0]), (length + 0.05, 0.25, 0.15), 0.0, curb_cls, (150, 148, 140))
            # Roadside objects along this edge.
            pos = float(rng.uniform(0.0, style.max_gap_m))
            while pos < lane.length:
                kind = style.kinds[int(rng.integers(len(style.kinds)))]
                _roadside_object(scene, index, occupied, rng, lane, pos, sign, kind)
                pos += float(rng.uniform(style.min_gap_m, style.max_gap_m))


def _roadside_object(scene: SceneMeshes, index: MapIndex, occupied: _Occupancy, rng: np.random.Generator,
                     lane, s: float, sign: float, kind: str) -> None:
    half = lane.width_at(s) / 2.0
    heading = float(lane.heading_at(s))
    if kind == "pole":
        offset, radius = rng.uniform(1.2, 2.5), 0.6
    elif kind == "sign":
        offset, radius = rng.uniform(1.0, 2.2), 0.8
    elif kind == "tree":
        offset, radius = rng.uniform(3.0, 9.0), 2.2
    else:
        offset, radius = rng.uniform(14.0, 30.0), 9.0
    centre = np.asarray(lane.position(s, sign * (half + offset + radius * (kind == "building"))), np.float64)
    if not _clear_of_road(index, centre, radius + 0.5) or not occupied.take(centre, radius):
        return
    if kind == "pole":
        h = float(rng.uniform(5.5, 8.0))
        scene.box(centre, heading, (0.22, 0.22, h), 0.0, SEMANTIC_CLASSES["pole"], (128, 128, 132))
        arm = centre - sign * np.array([-math.sin(heading), math.cos(heading)]) * 0.9
        scene.box(arm, heading + math.pi / 2, (1.8, 0.15, 0.15), h - 0.3, SEMANTIC_CLASSES["pole"], (128, 128, 132))
    elif kind == "sign":
        scene.box(centre, heading, (0.12, 0.12, 2.6), 0.0, SEMANTIC_CLASSES["pole"], (140, 140, 140))
        colours = ((30, 70, 170), (200, 40, 40), (240, 240, 235), (40, 130, 60), (230, 190, 30))
        plate = colours[int(rng.integers(len(colours)))]
        scene.box(centre, heading, (0.08, float(rng.uniform(0.6, 1.2)), float(rng.uniform(0.5, 0.9))), 2.0,
                  SEMANTIC_CLASSES["traffic_sign"], plate)
    elif kind == "tree":
        trunk_h = float(rng.uniform(1.8, 3.2))
        scene.box(centre, 0.0, (0.35, 0.35, trunk_h), 0.0, SEMANTIC_CLASSES["vegetation"], (92, 66, 40))
        size = float(rng.uniform(2.4, 4.2))
        green = np.array([48, 96, 40]) * rng.uniform(0.75, 1.25)
        yaw = float(rng.uniform(0, math.pi / 2))
        scene.box(centre, yaw, (size, size, size * 0.9), trunk_h, SEMANTIC_CLASSES["vegetation"], green)
        scene.box(centre, yaw + math.pi / 4, (size * 0.8, size * 0.8, size * 1.1), trunk_h + 0.2, SEMANTIC_CLASSES["vegetation"], green * 0.9)
    else:
        w, d, h = float(rng.uniform(8, 18)), float(rng.uniform(8, 16)), float(rng.uniform(5, 24))
        walls = ((186, 170, 150), (160, 160, 168), (200, 190, 172), (140, 110, 95), (210, 205, 198), (120, 130, 140))
        wall = np.array(walls[int(rng.integers(len(walls)))])
        scene.box(centre, heading, (w, d, h), 0.0, SEMANTIC_CLASSES["building"], wall)
        # Window bands: darker boxes 5 cm proud of the facade, one per storey.
        for z in np.arange(1.2, h - 1.0, 3.0):
            scene.box(centre, heading, (w * 0.9, d + 0.1, 1.1), float(z), SEMANTIC_CLASSES["building"], wall * 0.45)

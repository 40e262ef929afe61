"""Top-down camera images of the sandbox, ego-centred and ego-aligned, as BGRA arrays.

The static map (road surface, lane markings) is drawn once per town and scale with highway-env's
pygame renderer (``LaneGraphics`` on an offscreen ``WorldSurface``); every frame then only rotates
the needed patch into the camera image (``cv2.warpAffine``) and draws the vehicles as rotated
rectangles in highway-env's colours (ego green, others yellow, crashed red). That keeps a 128 x 128
frame well under a millisecond.

Camera model (a CARLA RGB camera looking straight down, pitch -90): the view is centred on the
camera's mount point (x forward, y right in the ego frame, metres), image up = the camera's forward
direction (the ego's forward, turned by the mount yaw), image right = its right; it covers
``2 z tan(fov / 2)`` metres across the image width (fov is horizontal, z is the height above ground),
with square pixels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.towns.base import lane_outline

MAX_MAP_PPM = 8.0  # the static map is drawn at most at 8 px/m (finer cameras are upsampled)


@dataclass(frozen=True)
class RenderStyle:
    """Colours (RGB) of the top-down view; vehicles use highway-env's VehicleGraphics colours."""

    offroad: tuple[int, int, int] = (34, 44, 34)
    road: tuple[int, int, int] = (100, 100, 100)
    ego: tuple[int, int, int] = (50, 200, 0)
    vehicle: tuple[int, int, int] = (200, 200, 0)
    crashed: tuple[int, int, int] = (255, 100, 100)
    outline: tuple[int, int, int] = (20, 20, 20)
    landmark: tuple[int, int, int] = (170, 150, 120)
    marking: tuple[int, int, int] = (235, 235, 228)
    walker: tuple[int, int, int] = (230, 60, 200)
    stop_sign: tuple[int, int, int] = (200, 20, 20)
    lights: tuple[tuple[str, tuple[int, int, int]], ...] = (("Red", (255, 30, 30)), ("Yellow", (255, 210, 0)), ("Green", (30, 230, 60)))


@dataclass(frozen=True)
class LandmarkStyle:
    """Roadside landmarks: small squares off the road at irregular spacing (seeded per town).

    Without them a top-down view of a straight road looks the same wherever the car is (dashes
    repeat every few metres), so the ego's motion between two frames could not be seen.
    """

    size_m: float = 1.2
    min_gap_m: float = 4.0
    max_gap_m: float = 16.0
    offset_m: tuple[float, float] = (2.0, 6.0)  # distance beyond the lane edge


def _bgra(rgb: tuple[int, int, int]) -> tuple[int, int, int, int]:
    return (rgb[2], rgb[1], rgb[0], 255)


def ensure_offscreen_video() -> None:
    """Let SDL draw without a display: set SDL_VIDEODRIVER=offscreen unless a real driver is chosen.

    "dummy" is replaced too: highway-env disables its drawing under the dummy driver.
    """
    if os.environ.get("SDL_VIDEODRIVER") in (None, "", "dummy"):
        os.environ["SDL_VIDEODRIVER"] = "offscreen"


class MapRaster:
    """The static top-down map of a town at ``ppm`` pixels per metre, BGRA [H, W, 4].

    Pixel (row r, col c) covers world x in [x0 + c / ppm, x0 + (c + 1) / ppm), y likewise with rows.
    """

    def __init__(
        self, index: MapIndex, ppm: float, style: RenderStyle = RenderStyle(), landmarks: LandmarkStyle = LandmarkStyle()
    ) -> None:
        ensure_offscreen_video()
        import pygame
        from highway_env.road.graphics import LaneGraphics, WorldSurface

        self.ppm = float(ppm)
        x0, y0, x1, y1 = index.town.bounds(margin=45.0)
        self.origin = np.array([x0, y0])
        w = int(math.ceil((x1 - x0) * ppm))
        h = int(math.ceil((y1 - y0) * ppm))
        surface = WorldSurface((w, h), 0, pygame.Surface((w, h)))
        surface.scaling = self.ppm
        surface.origin = self.origin.copy()
        surface.fill(style.offroad)
        # Landmarks first: the road surface drawn next hides any that fall on a neighbouring lane.
        for poly in _landmark_squares(index, landmarks):
            pts = [(float((px - x0) * ppm), float((py - y0) * ppm)) for px, py in poly]
            pygame.draw.polygon(surface, style.landmark, pts, 0)
        polys = [lane_outline(lane) for lane in index.lanes.values()] + list(index.town.extra_drivable)
        for poly in polys:
            pts = [(float((px - x0) * ppm), float((py - y0) * ppm)) for px, py in poly]
            pygame.draw.polygon(surface, style.road, pts, 0)
        for lane in index.lanes.values():
            LaneGraphics.display(lane, surface)
        for poly, colour in traffic_control_polygons(index, style):
            pts = [(float((px - x0) * ppm), float((py - y0) * ppm)) for px, py in poly]
            pygame.draw.polygon(surface, colour, pts, 0)
        rgb = pygame.surfarray.array3d(surface).transpose(1, 0, 2)  # [H, W, 3] RGB
        self.signals = index.town.signals
        self.image = np.ascontiguousarray(np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2))
        self.style = style


def _rect(centre, yaw: float, length: float, width: float) -> np.ndarray:
    f, r = np.array([math.cos(yaw), math.sin(yaw)]), np.array([-math.sin(yaw), math.cos(yaw)])
    c = np.asarray(centre, np.float64)
    return np.array([c + f * a * length / 2 + r * b * width / 2 for a, b in ((1, -1), (1, 1), (-1, 1), (-1, -1))])


def traffic_control_polygons(index: MapIndex, style: RenderStyle) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """Static top-down marks of the town's traffic controls: zebra stripes, stop lines, stop signs
    (a red square at the pole); polygons [4, 2] in world m with their RGB colour."""
    from carla_eval.sandbox.camera.scene import crosswalk_stripes, stop_line_rects

    town = index.town
    out = [(_rect(c, yaw, ln, w), style.marking) for c, yaw, ln, w in crosswalk_stripes(town) + stop_line_rects(index)]
    for spec in town.stop_signs:
        out.append((_rect(spec.pole, 0.0, 1.2, 1.2), style.stop_sign))
    return out


def _landmark_squares(index: MapIndex, style: LandmarkStyle) -> list[np.ndarray]:
    """Squares [4, 2] (world m) along both edges of every lane, spacing and offset drawn from a
    generator seeded by the town's name (the same map every run)."""
    seed = int.from_bytes(index.town.name.encode()[:8].ljust(8, b"\0"), "little")
    rng = np.random.default_rng(seed)
    half = style.size_m / 2.0
    squares = []
    for key in sorted(index.geometry, key=str):
        geom, lane = index.geometry[key], index.lanes[key]
        for side in (-1.0, 1.0):
            s = float(rng.uniform(0.0, style.max_gap_m))
            while s < geom.s[-1]:
                lateral = side * (lane.width_at(s) / 2.0 + rng.uniform(*style.offset_m))
                centre = geom.position(s, lateral)
                h = float(geom.heading_at(s))
                f, r = np.array([math.cos(h), math.sin(h)]), np.array([-math.sin(h), math.cos(h)])
                squares.append(np.array([centre + f * dx + r * dy for dx, dy in ((half, -half), (half, half), (-half, half), (-half, -half))]))
                s += float(rng.uniform(style.min_gap_m, style.max_gap_m))
    return squares


_RASTERS: dict[tuple[str, float], MapRaster] = {}


def get_map_raster(index: MapIndex, ppm: float) -> MapRaster:
    key = (index.town.name, round(min(ppm, MAX_MAP_PPM), 3))
    r = _RASTERS.get(key)
    if r is None:
        r = MapRaster(index, key[1])
        _RASTERS[key] = r
    return r


@dataclass(frozen=True)
class TopDownCameraSpec:
    """Geometry of one top-down camera (from a ``sensor.camera.rgb`` spec dict)."""

    width: int
    height: int
    fov_deg: float
    z: float
    x: float = 0.0
    y: float = 0.0
    yaw_deg: float = 0.0

    @property
    def half_width_m(self) -> float:
        return self.z * math.tan(math.radians(self.fov_deg) / 2.0)

    @property
    def ppm(self) -> float:
        return self.width / (2.0 * self.half_width_m)


class TopDownCamera:
    """Renders one camera; ``render(ego_x, ego_y, ego_yaw, vehicles)`` -> BGRA uint8 [H, W, 4]."""

    def __init__(self, spec: TopDownCameraSpec, index: MapIndex, style: RenderStyle = RenderStyle()) -> None:
        self.spec = spec
        self.raster = get_map_raster(index, spec.ppm)
        self.style = style
        self._colors = {k: _bgra(getattr(style, k)) for k in ("ego", "vehicle", "crashed", "outline")}
        self._bg = _bgra(style.offroad)

    def _pixel_to_world(self, ego_x: float, ego_y: float, ego_yaw: float) -> np.ndarray:
        """Affine A [2, 3]: output pixel (col, row, 1) -> world (x, y)."""
        s = self.spec
        cam_yaw = ego_yaw + math.radians(s.yaw_deg)
        f = np.array([math.cos(cam_yaw), math.sin(cam_yaw)])  # image up, world frame
        r = np.array([-math.sin(cam_yaw), math.cos(cam_yaw)])  # image right
        c_ego, s_ego = math.cos(ego_yaw), math.sin(ego_yaw)
        centre = np.array([ego_x + c_ego * s.x - s_ego * s.y, ego_y + s_ego * s.x + c_ego * s.y])
        inv = 1.0 / s.ppm
        # world = centre + r * (col + 0.5 - W/2) / ppm + f * (H/2 - row - 0.5) / ppm
        a = np.zeros((2, 3))
        a[:, 0] = r * inv
        a[:, 1] = -f * inv
        a[:, 2] = centre + r * (0.5 - s.width / 2) * inv + f * (s.height / 2 - 0.5) * inv
        return a

    def render(self, ego_x: float, ego_y: float, ego_yaw: float, vehicles: list, walkers: list = (),
               lights: dict[int, str] | None = None) -> np.ndarray:
        """Image [H, W, 4] uint8 BGRA. ``vehicles``: objects with position, heading, LENGTH, WIDTH,
        crashed; the first one is drawn as the ego. ``walkers`` are drawn as small magenta squares,
        each traffic light (``lights``: id -> state) as a square of its colour over its stop line."""
        s = self.spec
        a = self._pixel_to_world(ego_x, ego_y, ego_yaw)
        ppm_map = self.raster.ppm
        # world -> map pixel: (w - origin) * ppm_map - 0.5
        m = a * ppm_map
        m[:, 2] -= self.raster.origin * ppm_map + 0.5
        img = cv2.warpAffine(self.raster.image, m, (s.width, s.height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=self._bg)
        self._draw_vehicles(img, a, vehicles)
        if lights:
            self._draw_lights(img, a, lights)
        if walkers:
            self._draw_boxes(img, a, [(w.position, w.heading, 0.9, 0.9) for w in walkers], _bgra(self.style.walker))
        return img

    def _draw_lights(self, img: np.ndarray, a: np.ndarray, lights: dict[int, str]) -> None:
        colours = dict(self.style.lights)
        for spec in self.raster.signals:
            state = lights.get(spec.signal_id)
            if state in colours:
                self._draw_boxes(img, a, [(np.asarray(spec.head), 0.0, 1.6, 1.6)], _bgra(colours[state]))

    def _draw_boxes(self, img: np.ndarray, a: np.ndarray, boxes: list, colour) -> None:
        inv_lin = np.linalg.inv(a[:, :2])
        scale = 16.0
        for pos, yaw, length, width in boxes:
            poly = _rect(pos, yaw, length, width)
            px = (poly - a[:, 2]) @ inv_lin.T
            if px.min() > max(img.shape[:2]) + 10 or px.max() < -10:
                continue
            cv2.fillConvexPoly(img, np.round(px * scale).astype(np.int32), colour, lineType=cv2.LINE_AA, shift=4)

    def _draw_vehicles(self, img: np.ndarray, a: np.ndarray, vehicles: list) -> None:
        s = self.spec
        # world -> pixel: inverse of a (2x2 part is a scaled rotation).
        lin = a[:, :2]
        inv_lin = np.linalg.inv(lin)
        reach = math.hypot(s.width, s.height) / s.ppm / 2 + 4.0
        centre_world = a @ np.array([s.width / 2, s.height / 2, 1.0])
        shift = 4
        scale = float(1 << shift)
        for k, v in enumerate(vehicles):
            pos = v.position
            if abs(pos[0] - centre_world[0]) > reach or abs(pos[1] - centre_world[1]) > reach:
                continue
            c, sn = math.cos(v.heading), math.sin(v.heading)
            half_l, half_w = v.LENGTH / 2, v.WIDTH / 2
            fwd, right = np.array([c, sn]), np.array([-sn, c])
            body = np.array([pos + fwd * dx + right * dy for dx, dy in ((half_l, -half_w), (half_l, half_w), (-half_l, half_w), (-half_l, -half_w))])
            shield = np.array([pos + fwd * dx + right * dy for dx, dy in ((0.45 * half_l, -0.8 * half_w), (0.45 * half_l, 0.8 * half_w), (0.05 * half_l, 0.8 * half_w), (0.05 * half_l, -0.8 * half_w))])
            color = self._colors["ego"] if k == 0 else (self._colors["crashed"] if getattr(v, "crashed", False) else self._colors["vehicle"])
            for poly, col in ((body, color), (shield, self._colors["outline"])):
                px = (poly - a[:, 2]) @ inv_lin.T
                cv2.fillConvexPoly(img, np.round(px * scale).astype(np.int32), col, lineType=cv2.LINE_AA, shift=shift)

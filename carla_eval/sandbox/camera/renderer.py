"""Perspective RGB cameras of the sandbox (with optional depth and semantic ground truth).

A real rasteriser with a depth buffer: panda3d's software renderer ``p3tinydisplay``, offscreen
(a pip wheel, no GPU, no display, no system libraries). The cameras follow CARLA's pinhole model
and frames (:class:`carla_eval.projection.PinholeCamera`): mount (x, y, z, roll, pitch, yaw) in the
vehicle frame, focal length ``f = W / (2 tan(fov / 2))`` px on both axes, principal point at
(W / 2, H / 2) in continuous pixel coordinates (pixel column i covers u in [i, i + 1)).

All cameras of a suite render into one offscreen buffer side by side (one display region each,
one read-back per tick). The world is mapped into panda3d's right-handed z-up frame by y -> -y.

Draw order: sky ring (depth write off), then the flat layers ground -> road -> markings with the
depth test off and depth write on (they lie on the ground plane, so later layers simply cover
earlier ones and the depth buffer holds the ground's depth), then 3D objects (curbs, poles, signs,
trees, buildings, vehicles) with the normal depth test: occlusion is exact per pixel.

Ground truth (never part of the SENSORS-track input):
- ``depth``: planar depth along the camera's forward axis in metres, encoded as CARLA's
  ``sensor.camera.depth`` does (BGRA uint8, ``(R + 256 G + 65536 B) / (2^24 - 1) * 1000`` m; sky
  1000 m). Objects are rasterised with a texture ramp on eye-space depth (1 cm steps); flat-ground
  pixels (road, lines, terrain) are replaced by the exact ray / ground-plane intersection.
- ``semantic``: CARLA's semantic tags in the red channel (BGRA uint8), see
  :data:`~carla_eval.sandbox.camera.scene.SEMANTIC_CLASSES`.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from carla_eval.projection import PinholeCamera, rotation_matrix
from carla_eval.sandbox.camera.appearance import Appearance
from carla_eval.sandbox.camera.scene import (LAMP_SIZE, LAYERS, SEMANTIC_CLASSES, SceneMeshes, box_geometry, build_scene,
                                             signal_lamps)
from carla_eval.sandbox.camera.textures import asphalt_texture, grass_texture
from carla_eval.sandbox.map_index import MapIndex

NEAR_M, FAR_M = 0.1, 260.0
SKY_RADIUS_M = 240.0
SKY_DEPTH_M = 1000.0
DEPTH_FINE_PERIOD_M = 2.56  # the fine ramp repeats every 2.56 m in 256 steps of 1 cm
DEPTH_COARSE_M = 256.0  # the coarse ramp spans 0-256 m in 1 m steps (beyond: clamped)
VEHICLE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (200, 200, 0), (190, 30, 30), (30, 60, 170), (230, 230, 230), (40, 40, 45), (120, 125, 130),
    (20, 120, 60), (220, 110, 20), (110, 30, 120), (160, 140, 100),
)
GROUND_TRUTH_CHANNELS = ("depth", "semantic")
_FLAT_CLASSES = (SEMANTIC_CLASSES["road"], SEMANTIC_CLASSES["road_line"], SEMANTIC_CLASSES["terrain"])

SEMANTIC_STEP = 8  # classes are drawn at 8 x tag (the software rasteriser's colour is off by up to 1)

_PANDA: dict[str, Any] = {}


def _semantic_level(cls: int) -> float:
    return cls * SEMANTIC_STEP / 255.0


def _panda():
    """panda3d.core with the offscreen software pipe (configured once per process)."""
    if not _PANDA:
        from panda3d.core import loadPrcFileData

        loadPrcFileData("ik-drive-sandbox", "\n".join([
            "load-display p3tinydisplay", "window-type offscreen", "audio-library-name null",
            "sync-video 0", "notify-level error", "notify-level-x11display fatal", "notify-level-display fatal", "default-directnotify-level error",
            "framebuffer-multisample 0", "texture-minfilter linear", "texture-magfilter linear",
        ]))
        import panda3d.core as p3d

        engine = p3d.GraphicsEngine.get_global_ptr()
        pipe = p3d.GraphicsPipeSelection.get_global_ptr().make_module_pipe("p3tinydisplay")
        if pipe is None:
            raise RuntimeError("panda3d's software renderer p3tinydisplay is not available")
        _PANDA.update(core=p3d, engine=engine, pipe=pipe)
    return _PANDA["core"], _PANDA["engine"], _PANDA["pipe"]


def _texture(p3d, name: str, rgb: np.ndarray):
    tex = p3d.Texture(name)
    h, w = rgb.shape[:2]
    tex.setup_2d_texture(w, h, p3d.Texture.T_unsigned_byte, p3d.Texture.F_rgb)
    tex.set_ram_image(np.ascontiguousarray(rgb[::-1, :, ::-1]).tobytes())  # panda: BGR, bottom row first
    tex.set_wrap_u(p3d.SamplerState.WM_repeat)
    tex.set_wrap_v(p3d.SamplerState.WM_repeat)
    return tex


def _geom_node(p3d, name: str, pos: np.ndarray, col: np.ndarray, uv: np.ndarray | None, tris: np.ndarray):
    """A GeomNode from numpy arrays (world frame -> panda frame by y -> -y; winding flipped with it)."""
    arr = p3d.GeomVertexArrayFormat()
    arr.add_column("vertex", 3, p3d.Geom.NT_float32, p3d.Geom.C_point)
    arr.add_column("color", 4, p3d.Geom.NT_uint8, p3d.Geom.C_color)
    if uv is not None:
        arr.add_column("texcoord", 2, p3d.Geom.NT_float32, p3d.Geom.C_texcoord)
    fmt = p3d.GeomVertexFormat.register_format(p3d.GeomVertexFormat(arr))
    vdata = p3d.GeomVertexData(name, fmt, p3d.Geom.UH_static)
    n = len(pos)
    vdata.unclean_set_num_rows(n)
    fields = [("v", np.float32, (3,)), ("c", np.uint8, (4,))] + ([("t", np.float32, (2,))] if uv is not None else [])
    rec = np.zeros(n, dtype=np.dtype(fields))
    rec["v"] = pos * np.array([1.0, -1.0, 1.0], np.float32)
    rec["c"] = col
    if uv is not None:
        rec["t"] = uv * np.array([1.0, -1.0], np.float32)
    handle = vdata.modify_array(0)
    memoryview(handle).cast("B")[:] = rec.tobytes()
    prim = p3d.GeomTriangles(p3d.Geom.UH_static)
    prim.set_index_type(p3d.Geom.NT_uint32)
    idx = np.ascontiguousarray(tris[:, ::-1], dtype=np.uint32).reshape(-1)  # y flip mirrors the winding
    prim_arr = prim.modify_vertices()
    prim_arr.unclean_set_num_rows(len(idx))
    memoryview(prim_arr).cast("B")[:] = idx.tobytes()
    geom = p3d.Geom(vdata)
    geom.add_primitive(prim)
    node = p3d.GeomNode(name)
    node.add_geom(geom)
    return node


class TownScene:
    """The static scene of one town as panda3d node trees (built once per process and town).

    ``root`` holds one node per (100 m cell, layer, semantic class), tagged with the class (the
    semantic pass draws each class in its own flat colour); ``rgb_root`` is the same geometry with
    the classes of a cell and layer merged into one node (fewer nodes to cull for the RGB pass).
    """

    def __init__(self, index: MapIndex) -> None:
        p3d, _, _ = _panda()
        self.name = index.town.name
        meshes: SceneMeshes = build_scene(index)
        textures = {"ground": _texture(p3d, "grass", grass_texture()), "road": _texture(p3d, "asphalt", asphalt_texture())}
        self.root = p3d.NodePath(f"town-{self.name}")
        self.rgb_root = p3d.NodePath(f"town-{self.name}-rgb")
        self.layers: dict[str, Any] = {}
        self.rgb_layers: dict[str, Any] = {}
        for order, layer in enumerate(LAYERS):
            for root, store in ((self.root, self.layers), (self.rgb_root, self.rgb_layers)):
                lp = root.attach_new_node(f"layer-{layer}")
                if layer != "solid":
                    lp.set_bin("background", 10 + order)
                    lp.set_depth_test(False)
                    lp.set_depth_write(True)
                    lp.set_two_sided(True)
                if layer in textures:
                    lp.set_texture(textures[layer])
                store[layer] = lp
        self.triangles = 0
        cells: dict[tuple[tuple[int, int], str], Any] = {}
        for (cell, layer, cls), mesh in sorted(meshes.meshes.items()):
            pos, col, uv, tris = mesh.arrays()
            self.triangles += len(tris)
            node = _geom_node(p3d, f"{layer}-{cell[0]}-{cell[1]}-{cls}", pos, col, uv if layer in textures else None, tris)
            self.layers[layer].attach_new_node(node).set_tag("cls", str(cls))
            group = cells.get((cell, layer))
            if group is None:
                group = cells[(cell, layer)] = self.rgb_layers[layer].attach_new_node(f"{layer}-{cell[0]}-{cell[1]}")
            group.attach_new_node(node.make_copy())
        for group in cells.values():
            group.flatten_strong()


_SCENES: dict[str, TownScene] = {}


def get_town_scene(index: MapIndex) -> TownScene:
    scene = _SCENES.get(index.town.name)
    if scene is None:
        scene = _SCENES[index.town.name] = TownScene(index)
    return scene


VEHICLE_MODEL_SIZE = (4.5, 2.0)  # (length, width) m the parts below are laid out for


def vehicle_parts() -> list[tuple[tuple[float, float], tuple[float, float, float], float, float]]:
    """The car model: (centre x, y), (length, width, height), z0, tone per box, in metres for a
    4.5 m x 2.0 m car, vehicle frame (x forward, y right). Body, cabin (dark glass), roof, wheels."""
    L, W = VEHICLE_MODEL_SIZE
    parts = [((0.0, 0.0), (L, W, 0.75), 0.35, 1.0),  # body
             ((-0.25, 0.0), (0.52 * L, 0.86 * W, 0.55), 1.10, 0.32),  # cabin (glass)
             ((-0.25, 0.0), (0.44 * L, 0.80 * W, 0.06), 1.65, 1.0)]  # roof
    for fx in (0.33, -0.33):
        for fy in (0.5, -0.5):
            parts.append(((fx * L, fy * (W - 0.25)), (0.7, 0.26, 0.7), 0.0, 0.09))  # wheels
    return parts


def vehicle_vertices(length: float, width: float) -> np.ndarray:
    """[N, 3] corners of the car model scaled to ``length`` x ``width`` (vehicle frame, m)."""
    L, W = VEHICLE_MODEL_SIZE
    pts = [box_geometry(c, 0.0, size, z0)[0] for c, size, z0, _ in vehicle_parts()]
    return np.concatenate(pts) * np.array([length / L, width / W, 1.0])


def _vehicle_template(p3d):
    """The car model at unit length and width (scaled per vehicle to its LENGTH and WIDTH)."""
    L, W = VEHICLE_MODEL_SIZE
    pos_all, col_all, tri_all, n = [], [], [], 0
    for (cx, cy), size, z0, tone in vehicle_parts():
        pos, shade, tris = box_geometry((cx, cy), 0.0, size, z0)
        c = np.clip(255 * tone * shade, 0, 255)
        pos_all.append(pos / np.array([L, W, 1.0]))
        col_all.append(np.stack([c, c, c, np.full_like(c, 255)], 1))
        tri_all.append(tris + n)
        n += len(pos)
    return _geom_node(p3d, "vehicle", np.concatenate(pos_all), np.concatenate(col_all).astype(np.uint8), None,
                      np.concatenate(tri_all))


WALKER_CLOTHES: tuple[tuple[int, int, int], ...] = (
    (180, 40, 40), (40, 80, 170), (230, 230, 225), (40, 40, 45), (30, 120, 70), (220, 150, 40), (120, 60, 140), (150, 120, 90),
)
LAMP_COLOURS = {"Red": (1.0, 0.12, 0.08), "Yellow": (1.0, 0.78, 0.05), "Green": (0.1, 1.0, 0.35)}
LAMP_OFF = 0.13  # brightness of an unlit lamp (x its colour)


def walker_parts() -> list[tuple[tuple[float, float], tuple[float, float, float], float, tuple[int, int, int]]]:
    """The walker figure: (centre x, y), (length, width, height), z0, RGB per box, in metres,
    walker frame (x forward, y right): two legs, torso, two arms, head (1.8 m tall)."""
    trousers, shirt, skin = (70, 70, 90), (235, 235, 235), (225, 185, 150)
    return [((0.0, -0.11), (0.2, 0.17, 0.86), 0.0, trousers), ((0.0, 0.11), (0.2, 0.17, 0.86), 0.0, trousers),
            ((0.0, 0.0), (0.26, 0.44, 0.62), 0.86, shirt),
            ((0.0, -0.28), (0.14, 0.11, 0.58), 0.88, shirt), ((0.0, 0.28), (0.14, 0.11, 0.58), 0.88, shirt),
            ((0.02, 0.0), (0.22, 0.2, 0.26), 1.54, skin)]


def _walker_template(p3d):
    pos_all, col_all, tri_all, n = [], [], [], 0
    for centre, size, z0, rgb in walker_parts():
        pos, shade, tris = box_geometry(centre, 0.0, size, z0)
        c = np.clip(np.asarray(rgb, np.float64)[None, :] * shade[:, None], 0, 255)
        pos_all.append(pos)
        col_all.append(np.concatenate([c, np.full((len(c), 1), 255)], 1))
        tri_all.append(tris + n)
        n += len(pos)
    return _geom_node(p3d, "walker", np.concatenate(pos_all), np.concatenate(col_all).astype(np.uint8), None,
                      np.concatenate(tri_all))


def _lamp_node(p3d, centre: np.ndarray, yaw: float):
    pos, _, tris = box_geometry(centre[:2], yaw, (0.06, LAMP_SIZE, LAMP_SIZE), float(centre[2]) - LAMP_SIZE / 2)
    col = np.full((len(pos), 4), 255, np.uint8)
    return _geom_node(p3d, "lamp", pos, col, None, tris)


def _sky_ring(p3d, appearance: Appearance, seed: int):
    """A cylinder around the camera: sky gradient above the horizon, an irregular treeline on it."""
    segs = 48
    rng = np.random.default_rng(seed)
    ang = np.linspace(0.0, 2 * math.pi, segs + 1)
    ring = np.stack([np.cos(ang), np.sin(ang)], 1) * SKY_RADIUS_M
    levels = [(-20.0, appearance.sky_horizon), (0.0, appearance.sky_horizon), (70.0, appearance.sky_top), (260.0, appearance.sky_top)]
    pos, col, tris = [], [], []

    def rgba(c):
        return [int(255 * v) for v in c] + [255]

    for (z0, c0), (z1, c1) in zip(levels[:-1], levels[1:]):
        for i in range(segs):
            k = len(pos)
            a, b = ring[i], ring[i + 1]
            pos += [[*a, z0], [*b, z0], [*b, z1], [*a, z1]]
            col += [rgba(c0), rgba(c0), rgba(c1), rgba(c1)]
            tris += [[k, k + 2, k + 1], [k, k + 3, k + 2]]
    tree = rgba(appearance.treeline)
    heights = rng.uniform(2.0, 9.0, segs * 4 + 1)
    fine = np.linspace(0.0, 2 * math.pi, segs * 4 + 1)
    fring = np.stack([np.cos(fine), np.sin(fine)], 1) * (SKY_RADIUS_M - 2.0)
    for i in range(segs * 4):
        k = len(pos)
        a, b = fring[i], fring[i + 1]
        pos += [[*a, -2.0], [*b, -2.0], [*b, heights[i + 1]], [*a, heights[i]]]
        col += [tree] * 4
        tris += [[k, k + 2, k + 1], [k, k + 3, k + 2]]
    node = _geom_node(p3d, "sky", np.array(pos), np.array(col, np.uint8), None, np.array(tris))
    return node


@dataclass(frozen=True)
class _Region:
    spec: dict
    camera: PinholeCamera
    col0: int


class PerspectiveRenderer:
    """Renders every perspective camera of a sensor suite, one tick at a time.

    Args:
        camera_specs: leaderboard ``sensor.camera.rgb`` spec dicts (id, x, y, z, roll, pitch, yaw,
            width, height, fov).
        index: the town's map index (its static scene is built on first use and cached).
        appearance: the route's look (:func:`~carla_eval.sandbox.camera.appearance.route_appearance`).
        ground_truth: also render depth and semantic images (:meth:`render` returns them).
    """

    def __init__(self, camera_specs: Sequence[Mapping[str, Any]], index: MapIndex, appearance: Appearance,
                 ground_truth: bool = False, seed: int = 0) -> None:
        p3d, engine, pipe = _panda()
        self._p3d, self._engine = p3d, engine
        self.scene = get_town_scene(index)
        self.appearance = appearance
        self.regions: list[_Region] = []
        col0 = 0
        for spec in camera_specs:
            cam = PinholeCamera.from_spec(spec)
            self.regions.append(_Region(dict(spec), cam, col0))
            col0 += cam.width
        self.width = col0
        self.height = max(r.camera.height for r in self.regions)
        self.frame_root = p3d.NodePath("frame")
        self.world = self.frame_root.attach_new_node("world")
        self._static_rgb = self.scene.rgb_root.instance_to(self.world)
        self._static_gt = self.scene.root.instance_to(self.world) if ground_truth else None
        self.world.set_color_scale(*appearance.light, 1.0)
        road = 1.0 - 0.45 * appearance.road_wet
        self.scene.rgb_layers["road"].set_color_scale(road, road, road, 1.0)
        self.sky = self.frame_root.attach_new_node(_sky_ring(p3d, appearance, zlib.crc32(self.scene.name.encode())))
        self.sky.set_bin("background", 0)
        self.sky.set_depth_write(False)
        self.sky.set_depth_test(False)
        self.sky.set_tag("cls", str(SEMANTIC_CLASSES["sky"]))
        self._vehicle_node = _vehicle_template(p3d)
        self._vehicles: dict[int, Any] = {}
        self._walker_node = _walker_template(p3d)
        self._walkers: dict[int, Any] = {}
        self._lamps: dict[int, list[tuple[str, Any]]] = {}
        self._lamp_state: dict[int, str] = {}
        for spec in index.town.signals:
            lamps = []
            for state, centre, yaw in signal_lamps(index, spec):
                lamp = self.world.attach_new_node(_lamp_node(p3d, centre, yaw))
                lamp.set_tag("cls", str(SEMANTIC_CLASSES["traffic_light"]))
                lamps.append((state, lamp))
            self._lamps[spec.signal_id] = lamps
        self._set_lights({})
        self._ego_cams: list[Any] = []
        self._buffers: list[Any] = []
        self._color_tex = self._make_buffer("rgb", self._rgb_camera_state(), sky=True)
        self._gt_tex = None
        if ground_truth:
            self._sem_tex = self._make_buffer("semantic", None, sky=False, semantic=True)
            self._depth_tex = self._make_buffer("depth", self._depth_camera_state(), sky=False)
        self.ground_truth = ground_truth

    # ------------------------------------------------------------------ set-up
    def _rgb_camera_state(self):
        return None

    def _depth_camera_state(self):
        p3d = self._p3d
        ramp = np.zeros((256, 256, 3), np.uint8)
        ramp[..., 0] = np.arange(256)[None, :]  # R: fine (u, repeats every 2.56 m)
        ramp[..., 1] = np.arange(256)[:, None]  # G: coarse (v, 1 m steps)
        tex = p3d.Texture("depth-ramp")
        tex.setup_2d_texture(256, 256, p3d.Texture.T_unsigned_byte, p3d.Texture.F_rgb)
        tex.set_ram_image(np.ascontiguousarray(ramp[:, :, ::-1]).tobytes())  # row v=0 first (panda: bottom)
        for setter in (tex.set_minfilter, tex.set_magfilter):
            setter(p3d.SamplerState.FT_nearest)
        tex.set_wrap_u(p3d.SamplerState.WM_repeat)
        tex.set_wrap_v(p3d.SamplerState.WM_clamp)
        self._depth_stage = stage = p3d.TextureStage("depth")
        stage.set_mode(p3d.TextureStage.M_replace)
        # Eye space: panda cameras look along +y; u = y / 2.56 m, v = y / 256 m.
        mat = p3d.Mat4(0, 0, 0, 0, 1.0 / DEPTH_FINE_PERIOD_M, 1.0 / DEPTH_COARSE_M, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
        return p3d.RenderState.make(
            p3d.TextureAttrib.make_all_off().add_on_stage(stage, tex),
            p3d.TexGenAttrib.make(stage, p3d.TexGenAttrib.M_eye_position),
            p3d.TexMatrixAttrib.make(stage, p3d.TransformState.make_mat(mat)),
            p3d.ColorAttrib.make_flat((1, 1, 1, 1)),
            p3d.ColorScaleAttrib.make_off(),
            1000,
        )

    def _make_buffer(self, name: str, state, sky: bool, semantic: bool = False):
        p3d, engine = self._p3d, self._engine
        _, _, pipe = _panda()
        fb = p3d.FrameBufferProperties()
        fb.set_rgba_bits(8, 8, 8, 8)
        fb.set_depth_bits(24)
        buf = engine.make_output(pipe, f"sandbox-{name}", 0, fb, p3d.WindowProperties.size(self.width, self.height),
                                 p3d.GraphicsPipe.BF_refuse_window, None, None)
        if buf is None:
            raise RuntimeError(f"could not create the offscreen {name} buffer ({self.width} x {self.height})")
        buf.set_clear_color_active(True)
        if semantic:
            clear = (_semantic_level(SEMANTIC_CLASSES["sky"]), 0.0, 0.0, 1.0)
        elif state is not None:
            clear = (1.0, 1.0, 1.0, 1.0)  # decoded as "beyond the ramp": the sky's depth
        else:
            clear = (*self.appearance.sky_top, 1.0)
        buf.set_clear_color(clear)
        tex = p3d.Texture(f"{name}-readback")
        buf.add_render_texture(tex, p3d.GraphicsOutput.RTM_copy_ram, p3d.GraphicsOutput.RTP_color)
        mask = p3d.BitMask32.bit(len(self._buffers) + 1)
        if not sky:
            self.sky.hide(mask)
        if state is None and not semantic:
            if self._static_gt is not None:
                self._static_gt.hide(mask)
        else:
            self._static_rgb.hide(mask)
        for region in self.regions:
            cam = region.camera
            lens = p3d.PerspectiveLens()
            hfov = cam.fov
            vfov = math.degrees(2.0 * math.atan(math.tan(math.radians(hfov) / 2.0) * cam.height / cam.width))
            lens.set_fov(hfov, vfov)
            lens.set_near_far(NEAR_M, FAR_M)
            node = p3d.Camera(f"{name}-{region.spec.get('id')}", lens)
            node.set_camera_mask(mask)
            if state is not None:
                node.set_initial_state(state)
            if semantic:
                node.set_tag_state_key("cls")
                for cls in set(SEMANTIC_CLASSES.values()):
                    node.set_tag_state(str(cls), p3d.RenderState.make(
                        p3d.ColorAttrib.make_flat((_semantic_level(cls), 0.0, 0.0, 1.0)), p3d.TextureAttrib.make_all_off(),
                        p3d.ColorScaleAttrib.make_off(), 1000))
            cnp = self.frame_root.attach_new_node(node)
            l0, l1 = region.col0 / self.width, (region.col0 + cam.width) / self.width
            dr = buf.make_display_region(l0, l1, 1.0 - cam.height / self.height, 1.0)
            dr.set_camera(cnp)
            dr.set_clear_color_active(True)
            dr.set_clear_color(clear)
            dr.set_clear_depth_active(True)
            self._ego_cams.append((cnp, region))
        buf.set_active(False)
        self._buffers.append(buf)
        return tex

    # ------------------------------------------------------------------ per tick
    def _place_cameras(self, ego_x: float, ego_y: float, ego_yaw: float) -> None:
        p3d = self._p3d
        c, s = math.cos(ego_yaw), math.sin(ego_yaw)
        ego_rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # vehicle -> world (CARLA, left-handed)
        flip = np.diag([1.0, -1.0, 1.0])
        for cnp, region in self._ego_cams:
            cam = region.camera
            axes = ego_rot @ rotation_matrix(cam.roll, cam.pitch, cam.yaw)  # columns: fwd, right, up (world)
            origin = np.array([ego_x, ego_y, 0.0]) + ego_rot @ np.array([cam.x, cam.y, cam.z])
            fwd, right, up = (flip @ axes[:, i] for i in range(3))
            o = flip @ origin
            # panda: rows of the matrix are the images of the local x (right), y (forward), z (up) axes.
            cnp.set_mat(p3d.Mat4(*right, 0, *fwd, 0, *up, 0, *o, 1))
        self.sky.set_pos(ego_x, -ego_y, 0.0)

    def _actor_node(self, pool: dict[int, Any], aid: int, template: Any, cls: str, palette: Sequence[tuple[int, int, int]]):
        """The node of actor ``aid`` in ``pool``, made on first sight: an instance of ``template``
        tagged with semantic class ``cls``, coloured from ``palette`` by its id (stable per actor)."""
        np_ = pool.get(aid)
        if np_ is None:
            np_ = self.world.attach_new_node(f"{cls}-{aid}")
            np_.attach_new_node(template).set_tag("cls", str(SEMANTIC_CLASSES[cls]))
            rgb = palette[zlib.crc32(str(aid).encode()) % len(palette)]
            np_.set_color_scale(*(c / 255.0 for c in rgb), 1.0)
            pool[aid] = np_
        return np_

    @staticmethod
    def _hide_unseen(pool: dict[int, Any], seen: set[int]) -> None:
        for aid, np_ in pool.items():
            if aid not in seen:
                np_.hide()

    def _place_vehicles(self, vehicles: Iterable[Any], ego_x: float, ego_y: float, skip_first: bool) -> None:
        seen = set()
        for k, v in enumerate(vehicles):
            if k == 0 and skip_first:
                continue
            px, py = float(v.position[0]), float(v.position[1])
            if abs(px - ego_x) > FAR_M or abs(py - ego_y) > FAR_M:
                continue
            aid = int(getattr(v, "actor_id", k))
            seen.add(aid)
            np_ = self._actor_node(self._vehicles, aid, self._vehicle_node, "car", VEHICLE_PALETTE)
            np_.set_pos(px, -py, 0.0)
            np_.set_h(-math.degrees(float(v.heading)))
            np_.set_scale(float(getattr(v, "LENGTH", 4.5)), float(getattr(v, "WIDTH", 2.0)), 1.0)
            np_.show()
        self._hide_unseen(self._vehicles, seen)

    def _set_lights(self, lights: Mapping[int, str]) -> None:
        """Light each head's lamp of its state (unlit lamps dark); only changed heads are touched."""
        for sid, lamps in self._lamps.items():
            state = lights.get(sid, "Off")
            if self._lamp_state.get(sid) == state:
                continue
            self._lamp_state[sid] = state
            for lamp_state, lamp in lamps:
                r, g, b = LAMP_COLOURS[lamp_state]
                k = 1.0 if lamp_state == state else LAMP_OFF
                lamp.set_color_scale(r * k, g * k, b * k, 1.0)

    def _place_walkers(self, walkers: Iterable[Any], ego_x: float, ego_y: float) -> None:
        seen = set()
        for w in walkers:
            px, py = float(w.position[0]), float(w.position[1])
            if abs(px - ego_x) > FAR_M or abs(py - ego_y) > FAR_M:
                continue
            aid = int(w.actor_id)
            seen.add(aid)
            np_ = self._actor_node(self._walkers, aid, self._walker_node, "pedestrian", WALKER_CLOTHES)
            np_.set_pos(px, -py, 0.0)
            np_.set_h(-math.degrees(float(w.heading)))
            # A walker that was hit lies on the ground.
            np_.set_r(90.0 if getattr(w, "crashed", False) else 0.0)
            np_.show()
        self._hide_unseen(self._walkers, seen)

    def _read(self, tex) -> np.ndarray:
        data = np.frombuffer(tex.get_ram_image(), np.uint8).reshape(self.height, self.width, 4)
        return data[::-1]

    def render(self, ego_x: float, ego_y: float, ego_yaw: float, vehicles: Sequence[Any],
               skip_first: bool = True, walkers: Sequence[Any] = (),
               lights: Mapping[int, str] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Render every camera. ``vehicles``: objects with position, heading, LENGTH, WIDTH, actor_id;
        the first (the ego) is not drawn when ``skip_first``. ``walkers``: objects with position,
        heading, actor_id (drawn as figures); ``lights``: traffic light id -> "Red" / "Yellow" /
        "Green" (the lit lamp of each head; a light missing from it is dark).

        Returns ``{"rgb": {id: BGRA uint8 [H, W, 4]}}``, plus ``"depth"`` and ``"semantic"`` (same
        layout, CARLA encodings) when the renderer was built with ``ground_truth``.
        """
        self._place_cameras(ego_x, ego_y, ego_yaw)
        self._place_vehicles(vehicles, ego_x, ego_y, skip_first)
        self._place_walkers(walkers, ego_x, ego_y)
        self._set_lights(lights or {})
        for buf in self._buffers:
            buf.set_active(True)
        self._engine.render_frame()
        for buf in self._buffers:
            buf.set_active(False)
        out: dict[str, dict[str, np.ndarray]] = {"rgb": {}}
        rgb = self._read(self._color_tex)
        for region in self.regions:
            cam = region.camera
            img = np.array(rgb[: cam.height, region.col0 : region.col0 + cam.width])
            img[..., 3] = 255
            out["rgb"][str(region.spec.get("id"))] = img
        if self.ground_truth:
            sem_all = self._read(self._sem_tex)
            dep_all = self._read(self._depth_tex)
            out["depth"], out["semantic"] = {}, {}
            for region in self.regions:
                cam = region.camera
                sl = (slice(0, cam.height), slice(region.col0, region.col0 + cam.width))
                sem = np.zeros(sem_all[sl].shape, np.uint8)
                sem[..., 2] = np.round(sem_all[sl][..., 2] / SEMANTIC_STEP).astype(np.uint8)
                sem[..., 3] = 255
                depth_m = self._decode_depth(dep_all[sl], sem[..., 2], region, ego_x, ego_y, ego_yaw)
                out["semantic"][str(region.spec.get("id"))] = sem
                out["depth"][str(region.spec.get("id"))] = encode_carla_depth(depth_m)
        return out

    def _decode_depth(self, enc: np.ndarray, cls: np.ndarray, region: _Region, ego_x: float, ego_y: float,
                      ego_yaw: float) -> np.ndarray:
        # Panda's RAM image is BGRA: R (fine) is channel 2, G (coarse) channel 1.
        fine = enc[..., 2].astype(np.float64) * (DEPTH_FINE_PERIOD_M / 256.0)
        coarse = enc[..., 1].astype(np.float64) * (DEPTH_COARSE_M / 256.0)
        k = np.round((coarse + 0.5 - fine) / DEPTH_FINE_PERIOD_M)
        depth = k * DEPTH_FINE_PERIOD_M + fine
        depth[(enc[..., 1] == 255) & (enc[..., 2] == 255)] = SKY_DEPTH_M
        depth = _fix_edge_outliers(depth, cls)
        flat = np.isin(cls, _FLAT_CLASSES)
        if flat.any():
            plane = ground_plane_depth(region.camera)
            depth = np.where(flat & np.isfinite(plane), plane, depth)
        depth[cls == SEMANTIC_CLASSES["sky"]] = SKY_DEPTH_M
        return depth

    def close(self) -> None:
        for buf in self._buffers:
            self._engine.remove_window(buf)
        self._buffers = []
        self.frame_root.remove_node()


def _fix_edge_outliers(depth: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Replace object pixels whose ramp depth disagrees with their own object's neighbours.

    At silhouette edges the rasteriser can sample the depth ramp with texture coordinates from
    outside the triangle, which decodes to a wrong wrap of the fine ramp (a far building pixel
    reading 0.3 m). Such a pixel is replaced by the median of its 3 x 3 neighbours of the same
    class when it differs from it by more than max(0.5 m, 15 %)."""
    h, w = depth.shape
    pad_d = np.pad(depth, 1, mode="edge")
    pad_c = np.pad(cls, 1, mode="constant", constant_values=255)
    stack = np.empty((9, h, w))
    k = 0
    for dy in range(3):
        for dx in range(3):
            same = pad_c[dy : dy + h, dx : dx + w] == cls
            stack[k] = np.where(same, pad_d[dy : dy + h, dx : dx + w], np.nan)
            k += 1
    objects = ~np.isin(cls, _FLAT_CLASSES + (SEMANTIC_CLASSES["sky"],))
    with np.errstate(invalid="ignore"):
        gap = np.abs(stack - depth[None])
        limit = np.maximum(0.5, 0.15 * depth)[None]
        # Candidates: an object pixel that most of its own object's neighbours disagree with.
        disagree = np.sum(gap > limit, axis=0)
        candidates = objects & (disagree >= 3)
    if not candidates.any():
        return depth
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
        med = np.nanmedian(stack[:, candidates], axis=0)
    out = depth.copy()
    vals = out[candidates]
    bad = np.isfinite(med) & (np.abs(vals - med) > np.maximum(0.5, 0.15 * med))
    vals[bad] = med[bad]
    out[candidates] = vals
    return out


def ground_plane_depth(cam: PinholeCamera) -> np.ndarray:
    """[H, W] planar depth (m, along the camera's forward axis) of the ground plane z = 0 at each
    pixel centre; inf where the pixel's ray does not go down. The ground is flat, so this depends
    only on the mount (height and orientation), not on where the car is."""
    f = cam.focal
    u = np.arange(cam.width) + 0.5
    v = np.arange(cam.height) + 0.5
    uu, vv = np.meshgrid(u, v)
    # Ray in camera axes (forward, right, up) with forward component 1: planar depth = scale.
    rays = np.stack([np.ones_like(uu), (uu - cam.width / 2.0) / f, -(vv - cam.height / 2.0) / f], -1)
    world_dz = rays @ rotation_matrix(cam.roll, cam.pitch, cam.yaw)[2]  # z component in the vehicle frame
    with np.errstate(divide="ignore"):
        t = np.where(world_dz < -1e-9, -cam.z / world_dz, np.inf)
    return t


def encode_carla_depth(depth_m: np.ndarray) -> np.ndarray:
    """Depth in metres [H, W] -> BGRA uint8 [H, W, 4] in CARLA's depth-camera encoding (1000 m max)."""
    units = np.round(np.clip(depth_m, 0.0, SKY_DEPTH_M) / SKY_DEPTH_M * (2**24 - 1)).astype(np.int64)
    out = np.empty(depth_m.shape + (4,), np.uint8)
    out[..., 2] = units & 255  # R
    out[..., 1] = (units >> 8) & 255  # G
    out[..., 0] = (units >> 16) & 255  # B
    out[..., 3] = 255
    return out


def decode_carla_depth(bgra: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_carla_depth`: metres [H, W] float64."""
    b = bgra.astype(np.float64)
    return (b[..., 2] + 256.0 * b[..., 1] + 65536.0 * b[..., 0]) / (2**24 - 1) * SKY_DEPTH_M

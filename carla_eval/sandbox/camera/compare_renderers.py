"""The renderer choice, measured: panda3d ``p3tinydisplay`` vs moderngl on EGL (Mesa llvmpipe).

    python -m carla_eval.sandbox.camera.compare_renderers [--town highway] [--ticks 200]

Both draw the same scene of :func:`~carla_eval.sandbox.camera.scene.build_scene` (same meshes,
textures and draw order) plus 24 cars, for the carla-3cam cameras at 288 x 160, and the script
prints the median wall and CPU time (``time.process_time``, all threads) per tick of each (render +
read-back of the three BGRA images); run it with ``LP_NUM_THREADS=1`` so llvmpipe uses one core, as
p3tinydisplay does. moderngl
needs ``pip install moderngl`` and Debian's ``libegl-mesa0 libgl1-mesa-dri``; it is not a
dependency of the project (see docs/sandbox.md for the measured numbers and the choice).
"""

from __future__ import annotations

import argparse
import math
import time
from types import SimpleNamespace

import numpy as np

from agent.rigs import get_rig
from carla_eval.projection import PinholeCamera, rotation_matrix
from carla_eval.sandbox.camera.appearance import PRESETS
from carla_eval.sandbox.camera.benchmark import _scene_vehicles
from carla_eval.sandbox.camera.renderer import FAR_M, NEAR_M, PerspectiveRenderer
from carla_eval.sandbox.camera.scene import LAYERS, box_geometry, build_scene
from carla_eval.sandbox.camera.textures import asphalt_texture, grass_texture
from carla_eval.sandbox.map_index import get_map_index
from carla_eval.sandbox.towns import get_town

_VS = """
#version 330
uniform mat4 mvp; uniform vec2 pos; uniform vec2 rot; uniform vec2 scale;
in vec3 in_pos; in vec4 in_col; in vec2 in_uv;
out vec4 col; out vec2 uv;
void main() {
    vec2 p = in_pos.xy * scale;
    vec2 w = vec2(rot.x * p.x - rot.y * p.y, rot.y * p.x + rot.x * p.y) + pos;
    gl_Position = mvp * vec4(w, in_pos.z, 1.0); col = in_col; uv = in_uv;
}
"""
_FS = """
#version 330
uniform sampler2D tex; uniform int textured; uniform vec4 tint;
in vec4 col; in vec2 uv; out vec4 frag;
void main() { vec4 c = col * tint; if (textured == 1) c *= texture(tex, uv); frag = c.bgra; }
"""


def _mvp(cam: PinholeCamera, ego_x: float, ego_y: float, ego_yaw: float) -> np.ndarray:
    """World (CARLA frame) -> clip space for one camera, OpenGL conventions."""
    c, s = math.cos(ego_yaw), math.sin(ego_yaw)
    ego_rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    axes = ego_rot @ rotation_matrix(cam.roll, cam.pitch, cam.yaw)  # columns fwd, right, up
    origin = np.array([ego_x, ego_y, 0.0]) + ego_rot @ np.array([cam.x, cam.y, cam.z])
    # Camera coordinates: x right, y up, z backwards.
    view = np.eye(4)
    view[0, :3], view[1, :3], view[2, :3] = axes[:, 1], axes[:, 2], -axes[:, 0]
    view[:3, 3] = -view[:3, :3] @ origin
    f = cam.focal
    n, fa = NEAR_M, FAR_M
    proj = np.zeros((4, 4))
    proj[0, 0] = 2 * f / cam.width
    proj[1, 1] = 2 * f / cam.height
    proj[2, 2] = -(fa + n) / (fa - n)
    proj[2, 3] = -2 * fa * n / (fa - n)
    proj[3, 2] = -1
    return proj @ view


def moderngl_ticks(town: str, ticks: int, vehicles: int) -> float:
    import moderngl

    ctx = moderngl.create_standalone_context(backend="egl")
    prog = ctx.program(vertex_shader=_VS, fragment_shader=_FS)
    index = get_map_index(get_town(town))
    meshes = build_scene(index)
    textures = {"ground": grass_texture(), "road": asphalt_texture()}
    layer_vaos = {}
    for layer in LAYERS:
        parts = [m.arrays() for (cell, lay, cls), m in meshes.meshes.items() if lay == layer]
        if not parts:
            continue
        pos = np.concatenate([p[0] for p in parts])
        col = np.concatenate([p[1] for p in parts]).astype(np.float32) / 255.0
        uv = np.concatenate([p[2] for p in parts])
        off = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
        tris = np.concatenate([p[3] - p[3].min() + o if len(p[3]) else p[3] for p, o in zip(parts, off)])
        vbo = ctx.buffer(np.concatenate([pos, col, uv], 1).astype("f4").tobytes())
        ibo = ctx.buffer(tris.astype("i4").tobytes())
        layer_vaos[layer] = ctx.vertex_array(prog, [(vbo, "3f 4f 2f", "in_pos", "in_col", "in_uv")], ibo)
    tex = {k: ctx.texture(v.shape[1::-1], 3, np.ascontiguousarray(v).tobytes()) for k, v in textures.items()}
    for t in tex.values():
        t.repeat_x = t.repeat_y = True
        t.filter = (moderngl.LINEAR, moderngl.LINEAR)
    parts = []
    for (cx, cy), size, z0, tone in [((0.0, 0.0), (1.0, 1.0, 0.75), 0.35, 1.0), ((-0.05, 0.0), (0.52, 0.86, 0.55), 1.1, 0.3)]:
        p, shade, tr = box_geometry((cx, cy), 0.0, size, z0)
        parts.append((p, np.repeat((tone * shade)[:, None], 4, 1), tr))
    off = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    cv = np.concatenate([np.concatenate([p[0], p[1], np.zeros((len(p[0]), 2))], 1) for p in parts]).astype("f4")
    ci = np.concatenate([p[2] + o for p, o in zip(parts, off)]).astype("i4")
    car_vao = ctx.vertex_array(prog, [(ctx.buffer(cv.tobytes()), "3f 4f 2f", "in_pos", "in_col", "in_uv")], ctx.buffer(ci.tobytes()))
    cams = [PinholeCamera.from_spec(c.to_sensor()) for c in get_rig("carla-3cam").cameras]
    width = sum(c.width for c in cams)
    fbo = ctx.simple_framebuffer((width, 160), components=4)
    fbo.use()
    lane = max(index.lanes.values(), key=lambda l: l.length)
    others = _scene_vehicles(index, vehicles, np.random.default_rng(0), np.asarray(lane.position(50.0, 0.0)))
    times = []
    for k in range(ticks):
        s = min(50.0 + k, lane.length - 1.0)
        p = np.asarray(lane.position(s, 0.0))
        h = float(lane.heading_at(s))
        t0, c0 = time.perf_counter(), time.process_time()
        fbo.clear(0.3, 0.5, 0.8, 1.0)
        x0 = 0
        for cam in cams:
            fbo.viewport = (x0, 0, cam.width, cam.height)
            x0 += cam.width
            prog["mvp"].write(_mvp(cam, p[0], p[1], h).T.astype("f4").tobytes())
            prog["pos"].value, prog["rot"].value, prog["scale"].value = (0.0, 0.0), (1.0, 0.0), (1.0, 1.0)
            prog["tint"].value = (1.0, 1.0, 1.0, 1.0)
            ctx.disable(moderngl.DEPTH_TEST)
            for layer in ("ground", "road", "marking"):
                prog["textured"].value = int(layer in tex)
                if layer in tex:
                    tex[layer].use(0)
                layer_vaos[layer].render()
            ctx.enable(moderngl.DEPTH_TEST)
            prog["textured"].value = 0
            layer_vaos["solid"].render()
            for v in others:
                prog["pos"].value = (float(v.position[0]), float(v.position[1]))
                prog["rot"].value = (math.cos(v.heading), math.sin(v.heading))
                prog["scale"].value = (v.LENGTH, v.WIDTH)
                car_vao.render()
        data = fbo.read(components=4)
        _ = [np.frombuffer(data, np.uint8).reshape(160, width, 4)[:, i * 288:(i + 1) * 288].copy() for i in range(3)]
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return _medians(times)


def panda_ticks(town: str, ticks: int, vehicles: int) -> float:
    index = get_map_index(get_town(town))
    r = PerspectiveRenderer([c.to_sensor() for c in get_rig("carla-3cam").cameras], index, PRESETS["clear_noon"])
    lane = max(index.lanes.values(), key=lambda l: l.length)
    others = _scene_vehicles(index, vehicles, np.random.default_rng(0), np.asarray(lane.position(50.0, 0.0)))
    ego = SimpleNamespace(position=np.zeros(2), heading=0.0, actor_id=1)
    times = []
    for k in range(ticks):
        s = min(50.0 + k, lane.length - 1.0)
        p = np.asarray(lane.position(s, 0.0))
        t0, c0 = time.perf_counter(), time.process_time()
        r.render(float(p[0]), float(p[1]), float(lane.heading_at(s)), [ego, *others])
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    r.close()
    return _medians(times)


def _medians(times: list[tuple[float, float]]) -> tuple[float, float]:
    arr = np.array(times[5:]) * 1e3
    return float(np.median(arr[:, 0])), float(np.median(arr[:, 1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--town", default="highway")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--vehicles", type=int, default=24)
    args = parser.parse_args(argv)
    wall, cpu = panda_ticks(args.town, args.ticks, args.vehicles)
    print(f"panda3d p3tinydisplay:   {wall:.2f} ms wall, {cpu:.2f} ms CPU per tick (medians)")
    try:
        wall, cpu = moderngl_ticks(args.town, args.ticks, args.vehicles)
    except Exception as exc:  # no moderngl, no EGL: say so
        print(f"moderngl / EGL: not available here ({type(exc).__name__}: {exc})")
    else:
        print(f"moderngl / EGL llvmpipe: {wall:.2f} ms wall, {cpu:.2f} ms CPU per tick (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Gallery of the sandbox's perspective cameras: ``python -m carla_eval.sandbox.camera.gallery``.

For each town it drives the privileged expert along the first route of that town in a route file
(default: the bench suite) with its traffic, stops after ``--tick`` ticks and renders the
carla-3cam cameras (left | front | right) of that moment under several appearance presets, plus
the semantic and depth ground truth. One JPEG per town in ``--out`` (default docs/img/cameras),
plus ``traffic_rules.jpg``: the front camera of the ``signals`` town facing a traffic light in
each state, a stop sign, and walkers on a zebra crossing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from agent.rigs import get_rig
from carla_eval.routes import parse_routes_file
from carla_eval.sandbox.backend import SandboxBackend
from carla_eval.sandbox.camera.appearance import PRESETS
from carla_eval.sandbox.camera.renderer import PerspectiveRenderer, decode_carla_depth
from carla_eval.sandbox.config import CriteriaConfig, SandboxConfig
from carla_eval.sandbox.towns import TOWN_NAMES

SEMANTIC_COLOURS = {  # CARLA's palette for the tags the sandbox uses (RGB)
    0: (0, 0, 0), 1: (128, 64, 128), 2: (244, 35, 232), 3: (70, 70, 70), 6: (153, 153, 153), 7: (250, 170, 30), 8: (220, 220, 0),
    9: (107, 142, 35), 10: (152, 251, 152), 11: (70, 130, 180), 12: (220, 20, 60), 14: (0, 0, 142), 24: (157, 234, 50),
}


def semantic_rgb(tags: np.ndarray) -> np.ndarray:
    out = np.zeros(tags.shape + (3,), np.uint8)
    for tag, colour in SEMANTIC_COLOURS.items():
        out[tags == tag] = colour
    return out


def depth_rgb(depth_m: np.ndarray) -> np.ndarray:
    v = np.clip(np.log1p(depth_m) / np.log1p(200.0), 0.0, 1.0)
    return cv2.applyColorMap((255 * (1.0 - v)).astype(np.uint8), cv2.COLORMAP_MAGMA)[..., ::-1]


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def town_sheet(route, tick: int, presets: list[str]) -> np.ndarray:
    """[rows * 160, 864, 3] RGB: one row per preset, then semantic and depth."""
    backend = SandboxBackend(SandboxConfig(criteria=CriteriaConfig(max_ticks=tick + 1)))
    expert = backend.create_expert_agent()
    specs = [c.to_sensor() for c in get_rig("carla-3cam").cameras]
    rows: list[np.ndarray] = []

    def on_tick(info) -> None:
        if info.step != tick:
            return
        s = backend.session
        st = s.world.ego.state
        for k, name in enumerate(presets):
            r = PerspectiveRenderer(specs, s.index, PRESETS[name], ground_truth=(k == 0))
            out = r.render(st.x, st.y, st.yaw, s.world.road.vehicles, walkers=s.world.walkers, lights=s.world.light_states())
            r.close()
            rows.append(np.concatenate([_label(out["rgb"][c["id"]][..., 2::-1], f"{c['id']} / {name}") for c in specs], 1))
            if k == 0:
                sem = np.concatenate([semantic_rgb(out["semantic"][c["id"]][..., 2]) for c in specs], 1)
                dep = np.concatenate([depth_rgb(decode_carla_depth(out["depth"][c["id"]])) for c in specs], 1)
                truth = [_label(sem, "semantic (CARLA tags)"), _label(dep, "depth (log scale)")]
        rows.extend(truth)

    backend.run_route(route, expert, "", seed=0, on_tick=on_tick)
    return np.concatenate(rows, 0)


def traffic_rules_sheet() -> np.ndarray:
    """RGB sheet, 4 rows: the carla-3cam rig's front camera
    of the ``signals`` town: 25 m before light 100 lit red / yellow / green with two walkers on
    the zebra crossing, then 20 m before the stop sign of arm 1 of junction B; each with its
    semantic tags beside it."""
    from carla_eval.sandbox.map_index import get_map_index
    from carla_eval.sandbox.towns import get_town
    from carla_eval.sandbox.walkers import Walker

    index = get_map_index(get_town("signals"))
    front = next(c.to_sensor() for c in get_rig("carla-3cam").cameras if abs(c.yaw) < 1e-6)
    r = PerspectiveRenderer([front], index, PRESETS["clear_noon"], ground_truth=True)
    walkers = [Walker(900, np.array([[-12.5, 6.5], [-12.5, -6.5]]), 1.5, start=3.0),
               Walker(901, np.array([[-11.5, -6.5], [-11.5, 6.5]]), 1.5, start=7.0)]
    views = [((-40.0, 2.0, 0.0), {100: st}, walkers, f"light 100 {st}") for st in ("Red", "Yellow", "Green")]
    views.append(((248.0, -38.0, np.pi / 2), {}, [], "stop sign 201"))
    rows = []
    for (x, y, yaw), lights, ws, label in views:
        out = r.render(x, y, yaw, [], skip_first=False, walkers=ws, lights=lights)
        rgb = out["rgb"][front["id"]][..., 2::-1]
        sem = semantic_rgb(out["semantic"][front["id"]][..., 2])
        rows.append(np.concatenate([_label(rgb, label), _label(sem, "semantic")], 1))
    r.close()
    return np.concatenate(rows, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--routes", default="routes/sandbox/bench.xml")
    parser.add_argument("--out", default="docs/img/cameras")
    parser.add_argument("--tick", type=int, default=120)
    parser.add_argument("--presets", nargs="+", default=["clear_noon", "cloudy_noon", "clear_sunset", "wet_cloudy", "dusk"])
    args = parser.parse_args(argv)
    routes = parse_routes_file(args.routes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for town in TOWN_NAMES:
        route = next((r for r in routes if r.town == town), None)
        if route is None:
            continue
        sheet = town_sheet(route, args.tick, list(args.presets))
        path = out / f"{town}.jpg"
        cv2.imwrite(str(path), sheet[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
        print(path)
    path = out / "traffic_rules.jpg"
    cv2.imwrite(str(path), traffic_rules_sheet()[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Save one camera frame per sandbox town (the expert's sandbox-bev view) as PNG files.

    python -m carla_eval.sandbox.sample_frames --out docs/img [--size 128]

For each town the expert drives a route of the bench suite and the frame taken when it reaches the
route's first scenario trigger (plus ``--after`` metres) is written as ``<town>.png`` (RGB, the
camera's native size unless ``--size`` asks for another camera size).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2

from carla_eval.routes import parse_routes_file
from carla_eval.sandbox.backend import SandboxBackend
from carla_eval.sandbox.expert import DEFAULT_EXPERT_SENSORS, ExpertAgent, ExpertConfig
from carla_eval.sandbox.towns import TOWN_NAMES

# Which bench route to film per town, and how far past the trigger (m).
SHOTS: dict[str, tuple[str, float]] = {
    "highway": ("HardBrake", 25.0),
    "merge": ("HighwayMerge", 20.0),
    "intersection": ("JunctionLeftTurn", 6.0),
    "roundabout": ("RoundaboutEntry", 12.0),
    "racetrack": ("CutIn", 60.0),
    "signals": ("PedestrianCrossing", 25.0),
}


def capture(routes_file: str, out_dir: Path, size: int) -> list[Path]:
    routes = parse_routes_file(routes_file)
    backend = SandboxBackend()
    sensors = [dict(s) for s in DEFAULT_EXPERT_SENSORS]
    sensors[0] = dict(sensors[0], width=size, height=size)
    cfg = replace(ExpertConfig(), sensors=tuple(sensors))
    written = []
    for town in TOWN_NAMES:
        kind, after = SHOTS[town]
        route = next(r for r in routes if r.town == town and r.scenario_type == kind)
        expert = ExpertAgent(backend, cfg)
        shot: dict = {}

        def on_tick(info, route=route, after=after, expert=expert, shot=shot):
            session = backend.session
            if "img" not in shot and session.ego_progress_s >= session.scenarios[0].s_trigger + after:
                frame = expert.get_debug_frame()
                if frame is not None:
                    shot["img"] = frame.image

        backend.run_route(route, expert, "", seed=int(route.attributes.get("seed", 0)), on_tick=on_tick)
        if "img" not in shot:
            raise RuntimeError(f"no frame captured for town {town} (route {route.route_id})")
        path = out_dir / f"{town}.png"
        ok = cv2.imwrite(str(path), shot["img"][..., ::-1])  # RGB -> BGR for OpenCV
        if not ok:
            raise OSError(f"could not write {path}")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", default="routes/sandbox/bench.xml")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--size", type=int, default=128, help="camera width = height in pixels")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in capture(args.routes, out, args.size):
        print("wrote", p)


if __name__ == "__main__":
    main()

"""Render cost of the sandbox's perspective cameras: ``python -m carla_eval.sandbox.camera.benchmark``.

Drives a straight line through a town with N background cars placed on its lanes ahead of and
around the ego, renders the rig's cameras every 20 Hz tick and prints the median / p90 time per
tick (RGB only, and RGB + depth + semantic ground truth), as wall-clock time and as the CPU time
of the rendering thread (``time.thread_time``: what the tick costs its core, whatever else the
machine runs; the renderer is single-threaded). Pin it to one core with ``taskset -c 0``.
"""

from __future__ import annotations

import argparse
import math
import time
from types import SimpleNamespace

import numpy as np

from agent.rigs import get_rig
from carla_eval.sandbox.camera.appearance import route_appearance
from carla_eval.sandbox.camera.renderer import PerspectiveRenderer
from carla_eval.sandbox.map_index import get_map_index
from carla_eval.sandbox.towns import TOWN_NAMES, get_town


def _scene_vehicles(index, n: int, rng: np.random.Generator, centre: np.ndarray) -> list:
    lanes = [l for l in index.lanes.values()]
    out = []
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        lane = lanes[int(rng.integers(len(lanes)))]
        s = float(rng.uniform(0.0, lane.length))
        p = np.asarray(lane.position(s, 0.0))
        if np.hypot(*(p - centre)) > 120.0:
            continue
        out.append(SimpleNamespace(position=p, heading=float(lane.heading_at(s)), actor_id=100 + len(out), LENGTH=5.0, WIDTH=2.0))
    return out


def run(town: str, rig: str, vehicles: int, ticks: int, ground_truth: bool) -> dict[str, float]:
    index = get_map_index(get_town(town))
    specs = [c.to_sensor() for c in get_rig(rig).cameras]
    t0 = time.perf_counter()
    renderer = PerspectiveRenderer(specs, index, route_appearance([], 0, town), ground_truth=ground_truth)
    build_s = time.perf_counter() - t0
    lane = max(index.lanes.values(), key=lambda l: l.length)
    rng = np.random.default_rng(0)
    start = np.asarray(lane.position(min(50.0, lane.length / 4), 0.0))
    others = _scene_vehicles(index, vehicles, rng, start)
    ego = SimpleNamespace(position=start, heading=0.0, actor_id=1, LENGTH=5.0, WIDTH=2.0)
    times, cpu = [], []
    for k in range(ticks):
        s = min(50.0 + 1.0 * k, lane.length - 1.0)
        p = np.asarray(lane.position(s, 0.0))
        h = float(lane.heading_at(s))
        for v in others:  # the traffic moves too
            v.position = v.position + 0.8 * np.array([math.cos(v.heading), math.sin(v.heading)])
        t, c = time.perf_counter(), time.thread_time()
        renderer.render(float(p[0]), float(p[1]), h, [ego, *others])
        times.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    renderer.close()
    ms = np.array(times[5:]) * 1e3
    cpu_ms = np.array(cpu[5:]) * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "cpu_median_ms": float(np.median(cpu_ms)), "build_s": build_s, "triangles": float(renderer.scene.triangles)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--towns", nargs="+", default=list(TOWN_NAMES))
    parser.add_argument("--rig", default="carla-3cam")
    parser.add_argument("--vehicles", type=int, default=24)
    parser.add_argument("--ticks", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"rig {args.rig}, {args.vehicles} vehicles, {args.ticks} ticks per town")
    print(f"{'town':<13} {'triangles':>9} {'rgb median':>11} {'rgb p90':>8} {'rgb cpu':>8} {'+gt median':>11} {'+gt cpu':>8}")
    for town in args.towns:
        a = run(town, args.rig, args.vehicles, args.ticks, False)
        b = run(town, args.rig, args.vehicles, max(20, args.ticks // 4), True)
        print(f"{town:<13} {int(a['triangles']):>9} {a['median_ms']:>9.2f}ms {a['p90_ms']:>6.2f}ms {a['cpu_median_ms']:>6.2f}ms "
              f"{b['median_ms']:>9.2f}ms {b['cpu_median_ms']:>6.2f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

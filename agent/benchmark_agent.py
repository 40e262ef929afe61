"""Per-tick latency of the IKAgent (decode + plan + control) on synthetic leaderboard input_data.

    python -m agent.benchmark_agent                      # tiny preset, CPU, 200 ticks
    python -m agent.benchmark_agent --rig carla-3cam --cameras 3 --image-size 160 288

A random checkpoint of the chosen preset is written to a temporary folder and driven through the
full agent (``set_global_plan`` -> ``setup`` -> ``run_step`` x N -> ``destroy``), batch 1. The
input_data of every tick is built before timing starts, so the numbers are the agent's own: the
wall time of ``run_step`` (decode, route, model when due, controller, ``carla.VehicleControl``).
It runs twice: planning every tick (the worst case) and at the given planning rate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.geo import GeoReference
from agent.rigs import get_rig
from agent.route_planner import LANEFOLLOW
from agent.synthetic import gps_plan, make_input_data, straight_route, world_plan

TICK_S = 0.05


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def build_checkpoint(preset: str, folder: Path, cameras: int | None, image_size: tuple[int, int] | None) -> Path:
    from agent.model import build_preset

    overrides = {}
    if cameras is not None:
        overrides["num_cameras"] = cameras
    if image_size is not None:
        overrides["image_size"] = image_size
    path = folder / f"{preset}-random"
    build_preset(preset, **overrides).save_pretrained(path)
    return path


def time_agent(model: Path, rig_name: str, planning_hz: float, ticks: int, warmup: int, device: str,
               threads: int, steps: int | None, folder: Path) -> dict[str, float]:
    """Median / p90 / mean ms per ``run_step`` and the median of each stage."""
    from agent.ik_agent import IKAgent

    config = folder / f"agent_{planning_hz:g}hz.yaml"
    lines = [f"model: {model}", f"rig: {rig_name}", f"device: {device}", f"num_threads: {threads}",
             f"planning_hz: {planning_hz}"]
    if steps is not None:
        lines.append(f"num_inference_steps: {steps}")
    config.write_text("\n".join(lines) + "\n")

    rig, geo = get_rig(rig_name), GeoReference()
    speed = 8.0
    route = straight_route(speed * TICK_S * (ticks + warmup) + 200.0)
    commands = [LANEFOLLOW] * len(route)
    agent = IKAgent("localhost", 2000, False)
    agent.set_global_plan(gps_plan(route, commands, geo), world_plan(route, commands))
    agent.setup(str(config))
    rng = np.random.default_rng(0)
    inputs = [make_input_data(rig, geo, (speed * k * TICK_S, 0.0), 0.0, speed, k, rng=rng)
              for k in range(ticks + warmup)]
    totals: list[float] = []
    planning: list[float] = []
    stages: dict[str, list[float]] = {"decode": [], "plan": [], "control": []}
    for k, data in enumerate(inputs):
        t0 = time.perf_counter()
        agent.run_step(data, k * TICK_S)
        elapsed = (time.perf_counter() - t0) * 1e3
        if k < warmup:
            continue
        totals.append(elapsed)
        timings = agent.last_tick.timings
        if timings.get("plan", 0.0) > 0.0:
            planning.append(elapsed)
            for name in stages:
                stages[name].append(timings[name])
    failures = agent._loop.failures
    agent.destroy()
    if failures:
        raise RuntimeError(f"{failures} ticks failed during the benchmark")
    return {
        "median_ms": statistics.median(totals),
        "p90_ms": percentile(totals, 90),
        "mean_ms": statistics.fmean(totals),
        "max_ms": max(totals),
        "planning_tick_median_ms": statistics.median(planning),
        **{f"{name}_median_ms": statistics.median(values) for name, values in stages.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--rig", default="sandbox-bev")
    parser.add_argument("--cameras", type=int, default=None, help="override the preset's camera count")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--planning-hz", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="diffusion steps (default: the model's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = tuple(args.image_size) if args.image_size else None
        model = build_checkpoint(args.preset, folder, args.cameras, size)
        for hz in sorted({20.0, args.planning_hz}, reverse=True):
            label = "every tick (20 Hz)" if hz >= 20.0 else f"planning at {hz:g} Hz"
            stats = time_agent(model, args.rig, hz, args.ticks, args.warmup, args.device, args.threads,
                               args.steps, folder)
            results[label] = stats
            print(f"{args.preset} / {args.rig} / {args.device} x{args.threads} thread(s), {label}: "
                  f"median {stats['median_ms']:.2f} ms, p90 {stats['p90_ms']:.2f} ms, mean {stats['mean_ms']:.2f} ms, "
                  f"max {stats['max_ms']:.2f} ms over {args.ticks} ticks "
                  f"(planning ticks: median {stats['planning_tick_median_ms']:.2f} ms = decode {stats['decode_median_ms']:.2f}, "
                  f"plan {stats['plan_median_ms']:.2f}, control {stats['control_median_ms']:.2f} ms)")
    if args.json is not None:
        from agent.metric_info import write_json_atomic

        write_json_atomic(args.json, results)
    return results


if __name__ == "__main__":
    main()

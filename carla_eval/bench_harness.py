"""Harness benchmark: wall time of a suite at 1 and N workers, and the harness overhead per route.

    python -m carla_eval.bench_harness --routes routes/sandbox/bench.xml [--backend sandbox] \
        [--workers 1 2] [--video none] [--out runs/bench-harness]

1. *direct*: one process builds the backend and calls ``backend.run_route`` for every route with
   a fresh expert agent, same seeds as the harness, no callbacks, no files (the floor).
2. *harness*: ``carla-eval run --agent expert`` at each worker count (spawned workers, queue,
   results, metric_info, traces, videos as asked), wall time measured around the whole call.

"Routes in flight" = the routes' own wall times summed / the run's wall time (how busy the
workers were kept). Overhead per route = (harness at 1 worker - direct) / routes, in wall time and in CPU time (the
process's own CPU plus its reaped children's, i.e. the workers'; CPU time is far less disturbed
by other load on a shared machine). The 1-minute load average is recorded before and after each
phase. Results are printed and written to ``<out>/bench.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from carla_eval.atomic_io import atomic_write_json
from carla_eval.backend_factory import create_backend
from carla_eval.results import read_results_file
from carla_eval.routes import parse_routes_file, select_routes
from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig, route_file_seed, route_seed
from carla_eval.runner import run


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children that have been waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def direct_run(backend_spec: BackendSpec, routes_file: Path, subset: str | None, seed: int) -> dict[str, Any]:
    backend = create_backend(backend_spec)
    routes = [r for r in select_routes(parse_routes_file(routes_file), subset) if not r.error]
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), _cpu_s()
    ds = []
    ticks = 0
    for route in routes:
        outcome = backend.run_route(route, backend.create_expert_agent(), "", repetition=0,
                                    seed=route_seed(seed, route.route_id, 0, route_file_seed(route.attributes)))
        ds.append(outcome.scores["score_composed"])
        ticks += 0 if outcome.trace is None else len(outcome.trace.controls)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    backend.close()
    return {"routes": len(routes), "wall_s": wall, "cpu_s": cpu, "ticks": ticks, "mean_ds": sum(ds) / max(len(ds), 1),
            "load_before": load0, "load_after": os.getloadavg()[0]}


def harness_run(backend_spec: BackendSpec, routes_file: Path, subset: str | None, seed: int, workers: int,
                video: str, out: Path) -> dict[str, Any]:
    cfg = RunConfig(backend=backend_spec, routes_file=routes_file, agent=AgentSpec("expert"), out_dir=out,
                    workers=workers, routes_subset=subset, seed=seed, video=VideoConfig(mode=video), show_progress=False)
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), _cpu_s()
    summary = run(cfg, Console(file=io.StringIO()))
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    m = summary.metrics
    route_wall = sum(r["meta"]["duration_system"] for r in read_results_file(summary.results_path)["_checkpoint"]["records"])
    return {"workers": workers, "wall_s": wall, "cpu_s": cpu, "load_before": load0, "load_after": os.getloadavg()[0],
            "routes_in_flight": route_wall / wall, "routes": summary.recorded,
            "driving_score": None if m is None else m.driving_score,
            "videos": len(summary.videos)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--routes", type=Path, required=True)
    p.add_argument("--routes-subset", default=None)
    p.add_argument("--backend", default="sandbox")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--video", choices=["failures", "all", "none"], default="failures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs") / f"bench-harness-{time.strftime('%Y%m%d-%H%M%S')}")
    args = p.parse_args(argv)
    spec = BackendSpec(args.backend)
    args.out.mkdir(parents=True, exist_ok=False)
    console = Console()
    direct = direct_run(spec, args.routes, args.routes_subset, args.seed)
    console.print(f"direct (1 process, no harness): {direct['routes']} routes, {direct['ticks']} ticks, "
                  f"{direct['wall_s']:.1f} s wall, {direct['cpu_s']:.1f} s CPU, mean DS {direct['mean_ds']:.2f}")
    runs = []
    for w in args.workers:
        r = harness_run(spec, args.routes, args.routes_subset, args.seed, w, args.video, args.out / f"w{w}")
        runs.append(r)
        console.print(f"harness, {w} worker(s): {r['routes']} routes, {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
                      f"DS {r['driving_score']:.2f}, {r['videos']} videos, {r['routes_in_flight']:.2f} routes in flight on average")
    base = next((r for r in runs if r["workers"] == 1), None)
    result: dict[str, Any] = {
        "routes_file": str(args.routes), "subset": args.routes_subset, "backend": args.backend, "video": args.video,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "direct": direct, "harness": runs,
    }
    if base is not None and direct["routes"]:
        result["overhead_per_route_s"] = (base["wall_s"] - direct["wall_s"]) / direct["routes"]
        result["overhead_per_route_cpu_s"] = (base["cpu_s"] - direct["cpu_s"]) / direct["routes"]
        console.print(f"harness overhead per route (1 worker vs direct): {result['overhead_per_route_s']:.2f} s wall, "
                      f"{result['overhead_per_route_cpu_s']:.2f} s CPU")
        for r in runs:
            r["speedup_vs_1_worker"] = base["wall_s"] / r["wall_s"]
            console.print(f"speed-up at {r['workers']} worker(s): {r['speedup_vs_1_worker']:.2f}x")
    keys = ("route_id", "status", "infractions", "scores", "seed")
    record_sets = []
    for r in runs:
        data = read_results_file(args.out / f"w{r['workers']}" / "results.json")
        record_sets.append([{k: rec[k] for k in keys} for rec in data["_checkpoint"]["records"]])
    result["records_identical_across_worker_counts"] = all(rs == record_sets[0] for rs in record_sets)
    console.print(f"records identical across worker counts: {result['records_identical_across_worker_counts']}")
    atomic_write_json(args.out / "bench.json", result)
    console.print(f"written: {args.out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

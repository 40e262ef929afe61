"""Drive a sandbox route suite with the privileged expert and report its scores and the sim speed.

    python -m carla_eval.sandbox.bench_expert --routes routes/sandbox/bench.xml [--subset 0-9] [--json out.json]

One process, rendering on (the expert asks for the carla-3cam cameras like the agent). Reports
per route: status, driving score (DS = RC x IP), route completion, infractions; overall: mean DS
and RC, success rate, vehicle / layout collisions per km driven, and the simulation speed
(simulated seconds per wall-clock second, sensors + expert + world included) and the same per
second of the process's CPU time (``time.process_time``: the speed on a core of its own, whatever
else the machine runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from carla_eval import scoring
from carla_eval.routes import parse_routes_file, select_routes
from carla_eval.sandbox.backend import SandboxBackend


def route_seed(route, default: int) -> int:
    raw = route.attributes.get("seed")
    return int(raw) if raw is not None else default


def run_suite(routes_path: str, subset: str | None = None, default_seed: int = 0, verbose: bool = True) -> dict:
    routes = select_routes(parse_routes_file(routes_path), subset)
    backend = SandboxBackend()
    rows = []
    wall0 = time.perf_counter()
    for route in routes:
        expert = backend.create_expert_agent()
        cpu0 = time.process_time()
        out = backend.run_route(route, expert, "", seed=route_seed(route, default_seed))
        cpu_s = time.process_time() - cpu0
        driven_m = out.route_length * out.scores["score_route"] / 100.0
        row = {
            "route_id": route.route_id,
            "town": route.town,
            "scenario": route.scenario_type,
            "ability": out.ability,
            "status": out.status,
            "ds": out.scores["score_composed"],
            "rc": out.scores["score_route"],
            "ip": out.scores["score_penalty"],
            "length_m": out.route_length,
            "driven_m": driven_m,
            "game_s": out.duration_game,
            "wall_s": out.duration_system,
            "cpu_s": cpu_s,
            "collisions_vehicle": len(out.infractions["collisions_vehicle"]),
            "collisions_layout": len(out.infractions["collisions_layout"]),
            "infractions": {k: v for k, v in out.infractions.items() if v and k != "min_speed_infractions"},
            "success": scoring.is_success(out.status, out.infractions),
            "ticks": backend.last_stats.ticks,
            "sensor_s": backend.last_stats.sensor_time,
            "agent_s": backend.last_stats.agent_time,
            "world_s": backend.last_stats.world_time,
            "max_vehicles": backend.last_stats.max_vehicles,
        }
        rows.append(row)
        if verbose:
            print(f"{route.route_id:>3} {route.town:<12} {route.scenario_type:<17} {out.status:<34} DS {row['ds']:6.1f} "
                  f"RC {row['rc']:6.1f} game {row['game_s']:6.1f}s wall {row['wall_s']:5.1f}s {row['infractions'] or ''}", flush=True)
    wall = time.perf_counter() - wall0
    km = sum(r["driven_m"] for r in rows) / 1000.0
    game = sum(r["game_s"] for r in rows)
    summary = {
        "routes": len(rows),
        "driving_score": sum(r["ds"] for r in rows) / max(len(rows), 1),
        "route_completion": sum(r["rc"] for r in rows) / max(len(rows), 1),
        "success_rate": 100.0 * sum(r["success"] for r in rows) / max(len(rows), 1),
        "collisions_vehicle_per_km": sum(r["collisions_vehicle"] for r in rows) / max(km, 1e-9),
        "collisions_layout_per_km": sum(r["collisions_layout"] for r in rows) / max(km, 1e-9),
        "km_driven": km,
        "game_seconds": game,
        "wall_seconds": wall,
        "sim_speed": game / max(sum(r["wall_s"] for r in rows), 1e-9),
        "sim_speed_cpu": game / max(sum(r["cpu_s"] for r in rows), 1e-9),
        "ms_per_tick": {k: 1e3 * sum(r[f"{k}_s"] for r in rows) / max(sum(r["ticks"] for r in rows), 1) for k in ("sensor", "agent", "world")},
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, Python {platform.python_version()}".strip(),
    }
    return {"summary": summary, "routes": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", default="routes/sandbox/bench.xml")
    ap.add_argument("--subset", default=None, help='route ids, leaderboard syntax ("0-4,7")')
    ap.add_argument("--seed", type=int, default=0, help="seed for routes without a seed attribute")
    ap.add_argument("--json", default=None, help="write per-route rows and the summary here")
    args = ap.parse_args(argv)
    result = run_suite(args.routes, args.subset, args.seed)
    s = result["summary"]
    print(
        f"\nroutes {s['routes']}  DS {s['driving_score']:.2f}  RC {s['route_completion']:.2f}  SR {s['success_rate']:.1f}%  "
        f"vehicle collisions/km {s['collisions_vehicle_per_km']:.3f}  layout/km {s['collisions_layout_per_km']:.3f}  "
        f"km {s['km_driven']:.2f}  sim {s['game_seconds']:.0f}s in {s['wall_seconds']:.0f}s wall -> {s['sim_speed']:.1f}x real time "
        f"({s['sim_speed_cpu']:.1f}x per CPU second)\n"
        f"ms per tick: sensors {s['ms_per_tick']['sensor']:.2f}, expert {s['ms_per_tick']['agent']:.2f}, world {s['ms_per_tick']['world']:.2f}"
    )
    if args.json:
        path = Path(args.json)
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(result, fh, indent=1)
        os.replace(tmp, path)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

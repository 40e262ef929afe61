"""``RUN_DIR/traces/<save_name>.npz``: what a replay needs to re-run a route without the model.

Arrays (one row per tick, 20 Hz; world frame x east, y south, yaw clockwise, radians):

    seed         int64 []        the route's simulator seed
    controls     float64 [N, 3]  throttle, steer, brake applied at each tick
    ego          float64 [N, 4]  x m, y m, yaw rad, speed m/s AFTER each tick
    sensors      str []          JSON list of the agent's sensor specs (replay agent declares the same)
    record_id    str []          RouteScenario_<id>_rep<k>
    plan_traj    float32 [N, T, 2]  the agent's plan per tick, ego frame m (NaN: none)   (optional)
    plan_target  float32 [N, 2]     route target point per tick, ego frame m (NaN: none) (optional)
    plan_command int64 [N]          RoadOption per tick (-1: unknown)                    (optional)

Loaded with ``allow_pickle=False``: a trace file can never execute code.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carla_eval.atomic_io import atomic_write_bytes
from carla_eval.backend import RouteTrace
from carla_eval.route_job import PlanLog


@dataclass
class StoredTrace:
    record_id: str
    trace: RouteTrace
    sensors: list[dict[str, Any]]
    plans: PlanLog | None


def trace_bytes(record_id: str, trace: RouteTrace, sensors: list[dict[str, Any]], plans: PlanLog | None) -> bytes:
    arrays: dict[str, np.ndarray] = {
        "seed": np.asarray(trace.seed, dtype=np.int64),
        "controls": np.asarray(trace.controls, dtype=np.float64).reshape(-1, 3),
        "ego": np.asarray(trace.ego, dtype=np.float64).reshape(-1, 4),
        "sensors": np.asarray(json.dumps(sensors)),
        "record_id": np.asarray(record_id),
    }
    if plans is not None:
        arrays["plan_traj"] = plans.trajectory
        arrays["plan_target"] = plans.target_point
        arrays["plan_command"] = plans.command
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def save_trace(path: str | Path, record_id: str, trace: RouteTrace, sensors: list[dict[str, Any]], plans: PlanLog | None) -> None:
    """Write a trace file atomically."""
    atomic_write_bytes(path, trace_bytes(record_id, trace, sensors, plans))


def load_trace(path: str | Path) -> StoredTrace:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trace file not found: {path} (was the run made with traces on?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            plans = None
            if "plan_traj" in z.files:
                plans = PlanLog(z["plan_traj"], z["plan_target"], z["plan_command"])
            return StoredTrace(
                record_id=str(z["record_id"]),
                trace=RouteTrace(seed=int(z["seed"]), controls=z["controls"], ego=z["ego"]),
                sensors=json.loads(str(z["sensors"])),
                plans=plans,
            )
    except (KeyError, ValueError, OSError) as exc:
        raise ValueError(f"trace file {path} is unreadable or incomplete: {exc}") from exc

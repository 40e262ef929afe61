"""Drives agent/ik_agent.py through one route the way leaderboard_evaluator.py does, in whatever
Python runs this file (the tests run it under 3.7 and 3.8 with numpy, carla, pyzmq and PyYAML only,
the project root on PYTHONPATH and nothing installed).

The evaluator's steps: the agent's folder on sys.path, import by module name, ``get_entry_point``,
``get_ros_version`` on the class, ``Cls(host, port, debug)``, ``set_global_plan``, ``setup(config)``,
``sensors()``, the agent called once per 20 Hz tick, ``destroy``. The world is a straight road with
synthetic leaderboard-format sensors and a point-mass ego moved by the controls.

``--kill-server-at K`` sends SIGKILL to the model server at tick K (a crash mid-route); ticks then
run in real time (one per 50 ms) until the route's ticks are done or ``--deadline-s`` passes.
Writes a JSON report to ``--out``.
"""

import argparse
import importlib
import json
import math
import os
import signal
import sys
import time

DT = 0.05


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--ticks", type=int, default=40)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kill-server-at", type=int, default=None)
    parser.add_argument("--recovered-ticks", type=int, default=20, help="good ticks wanted after a crash")
    parser.add_argument("--deadline-s", type=float, default=240.0)
    parser.add_argument("--route-seed", type=int, default=0)
    args = parser.parse_args()
    started = time.monotonic()

    module_name = os.path.basename(args.agent).split(".")[0]
    sys.path.insert(0, os.path.dirname(args.agent))
    module = importlib.import_module(module_name)
    cls = getattr(module, getattr(module, "get_entry_point")())
    ros = cls.get_ros_version()
    agent = cls("localhost", 2000, False)

    import numpy as np

    from agent.geo import GeoReference
    from agent.rigs import validate_sensor_suite
    from agent.synthetic import gps_plan, make_input_data, straight_route, world_plan

    points = straight_route(400.0)
    agent.set_global_plan(gps_plan(points, [4] * len(points), GeoReference()), world_plan(points, [4] * len(points)))
    agent.setup(args.config + "+RouteScenario_0_rep0")
    sensors = agent.sensors()
    validate_sensor_suite(sensors, max_mount_radius_m=None)
    rig = agent._rig

    x, y, yaw, speed = 0.0, 0.0, 0.0, 0.0
    ticks = []
    backend = agent._planner.backend
    pid_before = getattr(backend, "server_info", {}).get("pid")
    killed_at = None
    good_after_crash = 0
    k = 0
    while True:
        if args.kill_server_at is None and k >= args.ticks:
            break
        if killed_at is not None and good_after_crash >= args.recovered_ticks:
            break
        if time.monotonic() - started > args.deadline_s:
            break
        if k == args.kill_server_at:
            os.kill(backend.server_info["pid"], signal.SIGKILL)
            killed_at = k
        rng = np.random.default_rng(args.route_seed * 100003 + k)
        data = make_input_data(rig, GeoReference(), (x, y), yaw, speed, k, rng=rng)
        tick_start = time.monotonic()
        control = agent(data, k * DT)
        out = agent.last_tick
        values = [control.throttle, control.steer, control.brake]
        assert all(math.isfinite(v) for v in values) and not control.manual_gear_shift
        ticks.append({
            "ok": bool(out.ok), "control": values, "mode": out.mode, "plan_ms": out.timings.get("plan", 0.0),
            "trajectory": None if out.trajectory is None else np.asarray(out.trajectory).tolist(),
        })
        if killed_at is not None:
            good_after_crash = good_after_crash + 1 if out.ok else 0
            time.sleep(max(0.0, DT - (time.monotonic() - tick_start)))  # real time while the server is away
        accel = 3.0 * control.throttle - 8.0 * control.brake
        speed = max(0.0, speed + accel * DT)
        yaw += 0.5 * control.steer * speed * DT / 2.9
        x += speed * math.cos(yaw) * DT
        y += speed * math.sin(yaw) * DT
        k += 1

    info = {
        "python": list(sys.version_info[:3]), "module": module.__name__, "cls": cls.__name__, "ros": ros,
        "sensor_ids": [s["id"] for s in sensors], "ticks": ticks, "final_x": x, "killed_at": killed_at,
        "pid_before": pid_before, "pid_after": getattr(backend, "server_info", {}).get("pid"),
        "restarts": getattr(backend, "restarts", None), "outages": getattr(backend, "outages", None),
        "plans_made": agent._loop.plans_made, "failures": agent._loop.failures,
        "server_pid_started": None if getattr(backend, "process", None) is None else backend.process.pid,
    }
    agent.destroy()
    process = getattr(backend, "process", None)
    info["server_running_after_destroy"] = bool(process is not None and process.running)
    info["agent_modules"] = sorted(m for m in sys.modules if m == "agent" or m.startswith("agent."))
    info["heavy"] = sorted(m for m in ("torch", "transformers", "diffusers", "cv2", "agent.model") if m in sys.modules)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(info, handle)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()

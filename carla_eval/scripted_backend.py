"""A deterministic, scripted simulator backend: the harness's test double and dry-run engine.

It implements the :class:`~carla_eval.backend.Backend` protocol without any rendering engine: a
kinematic vehicle follows the controls returned by the agent; route progress, infractions and
faults come from the route file, so tests can script every outcome. It lives in the package (not
in tests/) because spawned worker processes and Ray actors must import it by name
(``--backend scripted``).

Route script: parameters of the route's first ``<scenario>`` (all optional)::

    <collision_tick value="40"/>       a vehicle collision at that tick (route goes on)
    <outside_lanes_pct value="12.5"/>  one outside-route-lanes event at the end
    <min_speed_pct value="80"/>        one min-speed message at the end
    <blocked_at_pct value="60"/>       "Agent got blocked" once route completion reaches it
    <fault value="kill_once"/>         kill_once | kill_always | raise_once | raise_always
    <fault_tick value="5"/>            tick at which the fault strikes

``kill_*`` SIGKILLs the worker process (a simulator segfault); ``raise_*`` raises from
``run_route`` (a simulator exception). ``*_once`` strikes only on the first attempt of a route:
it leaves a marker file ``<marker_dir>/<RouteScenario_id_repK>.<fault>`` and needs ``marker_dir``.

Dynamics (20 Hz, world frame x east, y south, yaw clockwise): ``a = 4 throttle - 8 brake - 0.05 v``,
``v <- max(0, v + a dt)``, ``yaw <- yaw + v / 2.7 tan(0.6 steer) dt``, then the position moves
along the new heading. The seed shifts the start laterally (normal, sigma 5 cm), so replays must
use the recorded seed.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from agent.debug_frame import DebugFrame
from agent.geo import GeoReference
from carla_eval import scoring
from carla_eval.backend import RouteOutcome, RouteTrace, TickInfo
from carla_eval.projection import PinholeCamera
from carla_eval.routes import RouteConfig
from carla_eval.vehicle_control import make_control

DT = 0.05
WHEELBASE = 2.7
LANE_FOLLOW = 4
SCRIPTED_ABILITIES = {
    "HardBrake": "Emergency_Brake",
    "CutIn": "Merging",
    "SlowLeadOvertake": "Overtaking",
    "YieldAtJunction": "Give_Way",
    "StopSign": "Traffic_Signs",
}
EXPERT_CAMERA = {
    "type": "sensor.camera.rgb", "id": "bev", "x": 8.0, "y": 0.0, "z": 20.0,
    "roll": 0.0, "pitch": -90.0, "yaw": 0.0, "width": 64, "height": 64, "fov": 90.0,
}


class _Polyline:
    def __init__(self, pts: np.ndarray) -> None:
        self.pts = pts  # [M, 2]
        seg = np.diff(pts, axis=0)
        self.seg_len = np.linalg.norm(seg, axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        self.length = float(self.cum[-1])

    def project(self, xy: np.ndarray) -> tuple[float, float]:
        """(arc length of the closest point, distance to the polyline)."""
        a, b = self.pts[:-1], self.pts[1:]
        ab = b - a
        denom = np.maximum((ab**2).sum(axis=1), 1e-12)
        t = np.clip(((xy - a) * ab).sum(axis=1) / denom, 0.0, 1.0)
        closest = a + ab * t[:, None]
        d = np.linalg.norm(closest - xy, axis=1)
        i = int(np.argmin(d))
        return float(self.cum[i] + t[i] * self.seg_len[i]), float(d[i])

    def point_at(self, s: float) -> np.ndarray:
        s = min(max(s, 0.0), self.length)
        i = int(np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.seg_len) - 1))
        t = (s - self.cum[i]) / max(self.seg_len[i], 1e-12)
        return self.pts[i] + (self.pts[i + 1] - self.pts[i]) * t


class ScriptedExpert:
    """Privileged pure-pursuit expert of the scripted backend (reads the true pose)."""

    def __init__(self, backend: "ScriptedBackend", target_speed: float = 8.0) -> None:
        self._backend = backend
        self.target_speed = target_speed
        self._debug = False
        self._frame: DebugFrame | None = None
        self._plan: np.ndarray | None = None

    # leaderboard contract
    def set_global_plan(self, gps: list, world: list) -> None:
        self._plan = np.array([[e[0].location.x, e[0].location.y] for e in world], dtype=np.float64)

    def setup(self, path_to_conf_file: str) -> None:
        if self._plan is None:
            raise RuntimeError("set_global_plan must come before setup")

    def sensors(self) -> list[dict[str, Any]]:
        return [dict(EXPERT_CAMERA), {"type": "sensor.speedometer", "id": "speed", "reading_frequency": 20}]

    def enable_debug_frames(self, enabled: bool) -> None:
        self._debug = bool(enabled)

    def get_debug_frame(self) -> DebugFrame | None:
        return self._frame if self._debug else None

    def __call__(self, input_data: dict, timestamp: float) -> Any:
        return self.run_step(input_data, timestamp)

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        x, y, yaw, v = self._backend.true_state()
        line = self._backend.current_polyline()
        s, _ = line.project(np.array([[x, y]]))
        aim = line.point_at(s + max(4.0, 0.8 * v))
        dx, dy = aim[0] - x, aim[1] - y
        fwd = math.cos(yaw) * dx + math.sin(yaw) * dy
        right = -math.sin(yaw) * dx + math.cos(yaw) * dy
        alpha = math.atan2(right, max(fwd, 1e-3))
        steer = float(np.clip(2.0 * alpha, -1.0, 1.0))
        speed_err = self.target_speed - v
        throttle = float(np.clip(0.3 * speed_err + 0.05 * v, 0.0, 0.75))
        brake = float(np.clip(-0.5 * speed_err, 0.0, 1.0)) if speed_err < -0.5 else 0.0
        if self._debug:
            pts = np.array([line.point_at(s + 2.0 * max(v, 2.0) * k * 0.5) for k in range(1, 7)])
            c, sn = math.cos(yaw), math.sin(yaw)
            rel = pts - np.array([x, y])
            traj = np.stack([c * rel[:, 0] + sn * rel[:, 1], -sn * rel[:, 0] + c * rel[:, 1]], axis=1)
            target = np.array([fwd, right])
            bgra = input_data["bev"][1]
            self._frame = DebugFrame(
                image=np.ascontiguousarray(bgra[:, :, 2::-1]), camera=dict(EXPERT_CAMERA), trajectory=traj.astype(np.float32),
                target_point=target.astype(np.float32), command=LANE_FOLLOW, speed=v,
                throttle=throttle, steer=steer, brake=brake, extras={"aim_m": float(math.hypot(dx, dy))},
            )
        return make_control(throttle, steer, brake)

    def destroy(self) -> None:
        self._frame = None


class ScriptedBackend:
    """See the module docstring. ``max_ticks`` ends a route with "Failed - Agent timed out"."""

    name = "scripted"

    def __init__(self, tick_sleep_s: float = 0.0, marker_dir: str | None = None, max_ticks: int = 2000) -> None:
        self.tick_sleep_s = float(tick_sleep_s)
        self.marker_dir = Path(marker_dir) if marker_dir else None
        self.max_ticks = int(max_ticks)
        self._state = (0.0, 0.0, 0.0, 0.0)
        self._line: _Polyline | None = None
        self._closed = False
        self.geo = GeoReference()

    # ---------------------------------------------------------------- privileged access
    def true_state(self) -> tuple[float, float, float, float]:
        return self._state

    def current_polyline(self) -> _Polyline:
        assert self._line is not None
        return self._line

    def create_expert_agent(self) -> ScriptedExpert:
        return ScriptedExpert(self)

    def close(self) -> None:
        self._closed = True

    # ---------------------------------------------------------------------- the route
    def _fault(self, route: RouteConfig, repetition: int, step: int) -> None:
        sc = route.scenarios[0] if route.scenarios else None
        fault = sc.param("fault") if sc else None
        if not fault or step != int(sc.param("fault_tick", "5")):
            return
        if fault.endswith("_once"):
            if self.marker_dir is None:
                raise ValueError(f"fault {fault!r} of route {route.route_id} needs the backend option marker_dir")
            marker = self.marker_dir / f"{route.record_id(repetition)}.{fault}"
            if marker.exists():
                return
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(os.getpid()))
        if fault.startswith("kill"):
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10)  # SIGKILL is asynchronous on some systems; never go on
        if fault.startswith("raise"):
            raise RuntimeError(f"scripted simulator failure on route {route.route_id} at tick {step}")
        raise ValueError(f"route {route.route_id}: unknown scripted fault {fault!r}")

    def _camera_image(self, spec: dict, x: float, y: float, yaw: float) -> np.ndarray:
        w, h = int(spec["width"]), int(spec["height"])
        img = np.full((h, w, 4), (70, 70, 70, 255), dtype=np.uint8)  # BGRA
        assert self._line is not None
        c, s = math.cos(yaw), math.sin(yaw)
        rel = self._line.pts - np.array([x, y])
        ego = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]], axis=1)
        dense = np.concatenate([np.linspace(a, b, 20) for a, b in zip(ego[:-1], ego[1:])])
        uv, valid = PinholeCamera.from_spec(spec).project(dense)
        pts = uv[valid & (np.abs(uv).max(axis=1) < 4 * max(w, h))].round().astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, (200, 200, 200, 255), 1)
        return img

    def _inputs(self, sensors: list[dict], step: int, x: float, y: float, yaw: float, v: float, yaw_rate: float) -> dict:
        data: dict[str, tuple[int, Any]] = {}
        for spec in sensors:
            kind, sid = spec.get("type"), spec.get("id")
            if kind == "sensor.camera.rgb":
                data[sid] = (step, self._camera_image(spec, x, y, yaw))
            elif kind == "sensor.speedometer":
                data[sid] = (step, {"speed": v})
            elif kind == "sensor.other.gnss":
                data[sid] = (step, np.array(self.geo.world_to_gnss(x, y, 0.0)))
            elif kind == "sensor.other.imu":
                compass = (yaw + math.pi / 2) % (2 * math.pi)
                data[sid] = (step, np.array([0.0, 0.0, 9.81, 0.0, 0.0, yaw_rate, compass]))
        return data

    def run_route(
        self,
        route: RouteConfig,
        agent: Any,
        agent_config: str,
        *,
        repetition: int = 0,
        seed: int = 0,
        on_tick: Callable[[TickInfo], None] | None = None,
    ) -> RouteOutcome:
        if self._closed:
            raise RuntimeError("ScriptedBackend is closed")
        if route.error:
            raise ValueError(f"route {route.route_id} is malformed: {route.error}")
        t_start = time.monotonic()
        import carla

        pts = np.array([[p[0], p[1]] for p in route.waypoints], dtype=np.float64)
        self._line = line = _Polyline(pts)
        sc = route.scenarios[0] if route.scenarios else None
        param = (lambda k: sc.param(k)) if sc else (lambda k: None)
        heading = math.atan2(pts[1, 1] - pts[0, 1], pts[1, 0] - pts[0, 0])
        rng = np.random.default_rng(seed)
        offset = float(rng.normal(0.0, 0.05))
        x = pts[0, 0] - math.sin(heading) * offset
        y = pts[0, 1] + math.cos(heading) * offset
        yaw, v = heading, 0.0
        self._state = (x, y, yaw, v)
        infractions = scoring.empty_infractions()
        steps: list[tuple[int, str, str]] = []
        failure: str | None = None
        error: str | None = None
        gps = [(dict(zip(("lat", "lon", "z"), self.geo.world_to_gnss(px, py))), LANE_FOLLOW) for px, py in pts]
        world = [(carla.Transform(carla.Location(x=float(px), y=float(py), z=0.0)), LANE_FOLLOW) for px, py in pts]
        controls: list[tuple[float, float, float]] = []
        ego: list[tuple[float, float, float, float]] = []
        metric_info: dict[str, dict[str, list[float]]] = {}
        progress = 0.0
        sensors: list[dict] = []
        try:
            agent.set_global_plan(gps, world)
            agent.setup(agent_config)
        except Exception as exc:
            failure, error = scoring.STATUS_AGENT_SETUP, f"agent setup failed: {exc!r}"
        if failure is None:
            try:
                sensors = list(agent.sensors())
                if any("type" not in s or "id" not in s for s in sensors):
                    raise ValueError("every sensor needs 'type' and 'id'")
            except Exception as exc:
                failure, error = scoring.STATUS_SENSORS_INVALID, f"agent sensors are invalid: {exc!r}"
        collision_tick = int(param("collision_tick")) if param("collision_tick") else None
        blocked_at = float(param("blocked_at_pct")) if param("blocked_at_pct") else None
        step = 0
        yaw_rate = 0.0
        while failure is None:
            self._fault(route, repetition, step)
            data = self._inputs(sensors, step, x, y, yaw, v, yaw_rate)
            try:
                control = agent(data, step * DT) if callable(agent) else agent.run_step(data, step * DT)
                thr = float(np.clip(control.throttle, 0.0, 1.0))
                st = float(np.clip(control.steer, -1.0, 1.0))
                br = float(np.clip(control.brake, 0.0, 1.0))
            except Exception as exc:
                failure, error = scoring.STATUS_AGENT_CRASH, f"agent crashed at tick {step}: {exc!r}"
                break
            v_old, yaw_old = v, yaw
            acc = 4.0 * thr - 8.0 * br - 0.05 * v
            v = max(0.0, v + acc * DT)
            yaw_rate = v / WHEELBASE * math.tan(0.6 * st)
            yaw = yaw + yaw_rate * DT
            x += v * math.cos(yaw) * DT
            y += v * math.sin(yaw) * DT
            self._state = (x, y, yaw, v)
            controls.append((thr, st, br))
            ego.append((x, y, yaw, v))
            c, s = math.cos(yaw), math.sin(yaw)
            a_lon, a_lat = (v - v_old) / DT, v * yaw_rate
            metric_info[str(step)] = {
                "acceleration": [a_lon * c - a_lat * s, a_lon * s + a_lat * c, 0.0],
                "angular_velocity": [0.0, 0.0, math.degrees((yaw - yaw_old) / DT)],
                "forward_vector": [c, s, 0.0],
                "right_vector": [-s, c, 0.0],
                "location": [x, y, 0.0],
                "rotation": [0.0, 0.0, math.degrees(yaw)],
            }
            s_along, dist = line.project(np.array([[x, y]]))
            progress = max(progress, s_along)
            rc = 100.0 * progress / line.length
            if line.length - progress < 1.0:
                rc = 100.0
            new: list[tuple[str, str]] = []
            if collision_tick is not None and step == collision_tick:
                new.append(("collisions_vehicle", scoring.msg_collision("vehicle.scripted.car", 7, x, y)))
            if dist > 30.0:
                new.append(("route_dev", scoring.msg_route_deviation(x, y)))
                failure = scoring.STATUS_DEVIATED
            elif blocked_at is not None and rc >= blocked_at:
                new.append(("vehicle_blocked", scoring.msg_blocked(x, y)))
                failure = scoring.STATUS_BLOCKED
            elif rc < 100.0 and step + 1 >= self.max_ticks:
                new.append(("route_timeout", scoring.msg_route_timeout()))
                failure = scoring.STATUS_AGENT_TIMEOUT
            for key, msg in new:
                infractions[key].append(msg)
                steps.append((step, key, msg))
            if on_tick is not None:
                on_tick(TickInfo(step, (step + 1) * DT, (x, y), yaw, v, thr, st, br, rc, new))
            step += 1
            if self.tick_sleep_s:
                time.sleep(self.tick_sleep_s)
            if rc >= 100.0:
                break
        try:
            agent.destroy()
        except Exception:
            pass
        rc = 100.0 * progress / line.length if line.length > 0 else 0.0
        rc = 100.0 if line.length - progress < 1.0 else rc
        if failure is None:
            for key, pname, msg_fn in (
                ("outside_route_lanes", "outside_lanes_pct", lambda p: scoring.msg_outside_lanes(line.length * p / 100.0, p)),
                ("min_speed_infractions", "min_speed_pct", scoring.msg_min_speed),
            ):
                if param(pname):
                    msg = msg_fn(float(param(pname)))
                    infractions[key].append(msg)
                    steps.append((max(step - 1, 0), key, msg))
        scores = scoring.route_scores(rc, infractions)
        scenario = route.scenario_type
        return RouteOutcome(
            route=route,
            repetition=repetition,
            status=scoring.final_status(rc, infractions, failure),
            infractions=infractions,
            scores=scores,
            route_length=line.length,
            duration_game=step * DT,
            duration_system=time.monotonic() - t_start,
            scenario_name=scenario,
            town_name=route.town,
            ability=SCRIPTED_ABILITIES.get(scenario, ""),
            save_name=f"{route.record_id(repetition)}_{route.town}_{scenario or 'NoScenario'}_0",
            metric_info=metric_info,
            trace=RouteTrace(
                seed=seed,
                controls=np.array(controls, dtype=np.float64).reshape(-1, 3),
                ego=np.array(ego, dtype=np.float64).reshape(-1, 4),
            ),
            infraction_steps=steps,
            error=error,
        )


def scripted_routes_xml(routes: list[dict[str, Any]]) -> str:
    """A route file for this backend. Each dict: ``id``; ``waypoints`` [(x, y), ...] (default a
    straight 60 m east); ``type`` (scenario type, default "HardBrake"; None for no scenario);
    ``params`` {name: value} (the route script, see the module docstring); ``town`` (default
    "scripted")."""
    from xml.sax.saxutils import quoteattr

    lines = ['<?xml version="1.0"?>', "<routes>"]
    for r in routes:
        wps = r.get("waypoints", [(0.0, 0.0), (60.0, 0.0)])
        lines.append(f'  <route id={quoteattr(str(r["id"]))} town={quoteattr(r.get("town", "scripted"))}>')
        lines.append("    <waypoints>" + "".join(f'<position x="{x}" y="{y}" z="0"/>' for x, y in wps) + "</waypoints>")
        sc_type = r.get("type", "HardBrake")
        if sc_type:
            x0, y0 = wps[0]
            params = "".join(f"<{k} value={quoteattr(str(v))}/>" for k, v in r.get("params", {}).items())
            lines.append(f'    <scenarios><scenario name={quoteattr(sc_type + "_" + str(r["id"]))} type={quoteattr(sc_type)}>'
                         f'<trigger_point x="{x0}" y="{y0}" z="0" yaw="0"/>{params}</scenario></scenarios>')
        lines.append("  </route>")
    lines.append("</routes>")
    return "\n".join(lines) + "\n"

"""Closed-loop tests of the trajectory PID on the sandbox vehicle model (used to tune its gains).

    python -m carla_eval.sandbox.tune_pid            # the named gain sets, one table
    python -m carla_eval.sandbox.tune_pid --grid     # also a small grid search around the defaults

Each manoeuvre feeds the controller an ideal 2 Hz plan (6 waypoints) along a reference path at a
reference speed, re-planned every tick from the car's projection on the path (no lateral
correction in the plan: the controller alone closes the gap), and measures:

- ``speed``: 0 -> 10 m/s: time to 9 m/s, overshoot (m/s), speed error in the last 5 s;
- ``slow``: 20 -> 8 m/s plan: time to 8.5 m/s, undershoot (m/s);
- ``offset10`` / ``offset20``: start 1.5 m beside a straight lane at 10 / 20 m/s: overshoot (m) and
  time until |offset| < 0.2 m for good;
- ``curve``: a 45 m radius circle at 10 m/s: mean / max cross-track error (m), steer reversals per
  second (oscillation);
- ``change``: a 4 m lane change over 40 m at 18 m/s: max cross-track error (m).
"""

from __future__ import annotations

import argparse
import itertools
import math
from dataclasses import replace

import numpy as np

from agent.controller import ControllerConfig, TrajectoryController
from carla_eval.sandbox.vehicle_model import AppliedControl, VehicleModel, VehicleState

DT = 0.05

# Per-tick derivative gains of the references divided by the 0.05 s tick (our kd multiplies de/dt).
GAIN_SETS: dict[str, ControllerConfig] = {
    "bench2drivezoo": ControllerConfig(turn_kp=0.75, turn_ki=0.75, turn_kd=0.3 * DT, turn_window=40, speed_kp=5.0, speed_ki=0.5,
                                       speed_kd=1.0 * DT, speed_window=40, max_throttle=0.75, speed_error_clip=0.25,
                                       aim_time=0.0, aim_min=4.0, aim_max=4.0),
    "transfuser++": ControllerConfig(turn_kp=1.25, turn_ki=0.75, turn_kd=0.3 * DT, turn_window=20, speed_kp=5.0, speed_ki=0.5,
                                     speed_kd=1.0 * DT, speed_window=20, max_throttle=0.75, speed_error_clip=0.25,
                                     aim_time=0.41, aim_min=2.25, aim_max=3.0),
    "sandbox first guess": ControllerConfig(turn_kp=3.0, turn_ki=0.3, aim_time=0.5, speed_kp=1.0, speed_error_clip=2.0),
    "sandbox (default)": ControllerConfig(),
}


def _path_circle(radius: float, n: int = 4000) -> np.ndarray:
    a = np.linspace(-math.pi / 2, 3 * math.pi / 2, n)
    return np.stack([radius * np.cos(a), radius * np.sin(a) + radius], axis=1)  # starts at (0, 0) heading +x, turning right


def _path_lane_change(length: float = 40.0, shift: float = 4.0) -> np.ndarray:
    x = np.arange(-50.0, 600.0, 0.25)
    t = np.clip((x - 100.0) / length, 0.0, 1.0)
    return np.stack([x, shift * t * t * (3 - 2 * t)], axis=1)


def _straight() -> np.ndarray:
    x = np.arange(-50.0, 2000.0, 0.5)
    return np.stack([x, np.zeros_like(x)], axis=1)


class _Ref:
    def __init__(self, xy: np.ndarray) -> None:
        self.xy = xy
        seg = np.hypot(*np.diff(xy, axis=0).T)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])

    def project(self, p: np.ndarray) -> tuple[float, float]:
        d = np.hypot(self.xy[:, 0] - p[0], self.xy[:, 1] - p[1])
        k = int(np.argmin(d))
        return float(self.s[k]), float(d[k])

    def at(self, s: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1])], axis=1)


def simulate(cfg: ControllerConfig, ref: _Ref, state: VehicleState, speed_fn, seconds: float) -> np.ndarray:
    """Rows: t, x, y, yaw, speed, steer, cross-track error."""
    ctrl = TrajectoryController(cfg)
    model = VehicleModel()
    out = []
    st = state
    for k in range(int(seconds / DT)):
        t = k * DT
        s0, cte = ref.project(np.array([st.x, st.y]))
        v_ref = speed_fn(t)
        pts = ref.at(s0 + v_ref * 0.5 * np.arange(1, 7))
        c, sn = math.cos(st.yaw), math.sin(st.yaw)
        d = pts - np.array([st.x, st.y])
        traj = np.stack([c * d[:, 0] + sn * d[:, 1], -sn * d[:, 0] + c * d[:, 1]], axis=1)
        cmd = ctrl.step(traj, st.speed, DT)
        st = model.step(st, AppliedControl(cmd.throttle, cmd.steer, cmd.brake), DT)
        out.append((t + DT, st.x, st.y, st.yaw, st.speed, cmd.steer, cte))
    return np.array(out)


def evaluate(cfg: ControllerConfig) -> dict[str, float]:
    m: dict[str, float] = {}
    straight = _Ref(_straight())
    log = simulate(cfg, straight, VehicleState(0.0, 0.0, 0.0), lambda t: 10.0, 20.0)
    v = log[:, 4]
    m["speed_t90"] = float(log[np.argmax(v >= 9.0), 0]) if np.any(v >= 9.0) else math.inf
    m["speed_overshoot"] = float(max(0.0, v.max() - 10.0))
    m["speed_err"] = float(np.abs(v[-100:] - 10.0).mean())
    log = simulate(cfg, straight, VehicleState(0.0, 0.0, 0.0, speed=20.0), lambda t: 8.0, 15.0)
    v = log[:, 4]
    m["slow_t"] = float(log[np.argmax(v <= 8.5), 0]) if np.any(v <= 8.5) else math.inf
    m["slow_undershoot"] = float(max(0.0, 8.0 - v.min()))
    for speed in (10.0, 20.0):
        log = simulate(cfg, straight, VehicleState(0.0, -1.5, 0.0, speed=speed), lambda t, s=speed: s, 15.0)
        y = log[:, 2]
        m[f"offset{int(speed)}_overshoot"] = float(max(0.0, y.max()))
        bad = np.nonzero(np.abs(y) >= 0.2)[0]
        m[f"offset{int(speed)}_settle"] = float(log[bad[-1], 0]) if bad.size else 0.0
    log = simulate(cfg, _Ref(_path_circle(45.0)), VehicleState(0.0, 0.0, 0.0, speed=10.0), lambda t: 10.0, 25.0)
    cte = log[40:, 6]
    steer = log[40:, 5]
    m["curve_cte_mean"] = float(cte.mean())
    m["curve_cte_max"] = float(cte.max())
    dsteer = np.diff(steer)
    m["curve_reversals_per_s"] = float(np.sum(np.diff(np.sign(dsteer[np.abs(dsteer) > 1e-4])) != 0) / (len(steer) * DT))
    log = simulate(cfg, _Ref(_path_lane_change()), VehicleState(0.0, 0.0, 0.0, speed=18.0), lambda t: 18.0, 15.0)
    m["change_cte_max"] = float(log[:, 6].max())
    return m


def score(m: dict[str, float]) -> float:
    """Lower is better: a weighted sum of the metrics (seconds and metres)."""
    return (
        0.2 * m["speed_t90"] + 2.0 * m["speed_overshoot"] + 5.0 * m["speed_err"] + 0.2 * m["slow_t"] + 1.0 * m["slow_undershoot"]
        + 2.0 * (m["offset10_overshoot"] + m["offset20_overshoot"]) + 0.3 * (m["offset10_settle"] + m["offset20_settle"])
        + 10.0 * m["curve_cte_mean"] + 2.0 * m["curve_cte_max"] + 0.5 * m["curve_reversals_per_s"] + 3.0 * m["change_cte_max"]
    )


COLUMNS = ("speed_t90", "speed_overshoot", "speed_err", "slow_t", "slow_undershoot", "offset10_overshoot", "offset10_settle",
           "offset20_overshoot", "offset20_settle", "curve_cte_mean", "curve_cte_max", "curve_reversals_per_s", "change_cte_max")


def table(rows: dict[str, dict[str, float]]) -> str:
    head = "| gains | " + " | ".join(COLUMNS) + " | score |\n|" + "---|" * (len(COLUMNS) + 2)
    lines = [head]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.2f}" for c in COLUMNS) + f" | {score(m):.2f} |")
    return "\n".join(lines)


def grid() -> list[tuple[float, ControllerConfig]]:
    base = ControllerConfig()
    out = []
    for kp, ki, aim_time, aim_min in itertools.product((1.5, 2.0, 3.0, 4.0), (0.0, 0.3, 0.75), (0.4, 0.5, 0.7), (2.5, 3.0, 4.0)):
        cfg = replace(base, turn_kp=kp, turn_ki=ki, aim_time=aim_time, aim_min=aim_min)
        out.append((score(evaluate(cfg)), cfg))
    for skp, ski, clip in itertools.product((0.5, 1.0, 2.0, 5.0), (0.2, 0.4, 0.5), (0.25, 1.0, 2.0)):
        cfg = replace(base, speed_kp=skp, speed_ki=ski, speed_error_clip=clip)
        out.append((score(evaluate(cfg)), cfg))
    return sorted(out, key=lambda r: r[0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", action="store_true", help="also run a small grid search around the defaults")
    args = ap.parse_args(argv)
    rows = {name: evaluate(cfg) for name, cfg in GAIN_SETS.items()}
    print(table(rows))
    if args.grid:
        print("\nbest of the grid (score, changed fields):")
        base = ControllerConfig()
        for sc, cfg in grid()[:8]:
            changed = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if getattr(cfg, k) != getattr(base, k)}
            print(f"  {sc:7.2f}  {changed}")


if __name__ == "__main__":
    main()

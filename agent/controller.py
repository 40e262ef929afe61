"""Lateral + longitudinal PID control that tracks a planned trajectory.

Used by the IK agent and by the sandbox's privileged expert alike, so both drive through the same
controller. Input: a trajectory of T waypoints in the ego frame (agent/ego_frame.py: x forward,
y RIGHT, metres), ``waypoint_dt`` seconds apart with the first one ``waypoint_dt`` after now.
Output: throttle in [0, 1], steer in [-1, 1] (positive = right, as carla.VehicleControl), brake in
[0, 1], plus every intermediate term for inspection.

The structure is the one Bench2Drive's agents (UniAD / VAD / TCP) and TransFuser++ use:

- aim point: the point at arc length ``aim_distance(speed)`` along the trajectory (with the ego
  origin prepended); heading error ``alpha = atan2(y, x)`` (rad, + = target to the right), fed to the
  turn PID normalised as ``alpha / (pi/2)`` (the references use degrees / 90, the same number);
- desired speed: length of one trajectory segment / ``waypoint_dt`` (``speed_segment`` picks it; 1 =
  waypoint 0 -> waypoint 1, as TCP does);
- brake when the desired speed is below ``brake_speed`` or ``speed / desired > brake_ratio``;
  otherwise throttle from the speed PID on ``clip(desired - speed, 0, speed_error_clip)``.

Differences from the references, on purpose: the PID takes an explicit ``dt`` (derivative in 1/s,
so ``kd`` here is the per-tick reference gain divided by the 0.05 s tick); it integrates the MEAN of
the last ``window`` errors like the references but skips errors that would push a saturated output
further (anti-windup); and brake is a number in [0, 1] that grows with the speed excess, with a full
brake to stop, instead of an on/off flag. The gains below were tuned on the sandbox vehicle model
(docs/sandbox.md, "PID tuning").
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ControllerConfig:
    """Gains and limits of :class:`TrajectoryController`.

    Attributes:
        turn_kp, turn_ki, turn_kd: lateral PID gains on the normalised heading error
            ``alpha / (pi/2)``; ``turn_kd`` multiplies d(error)/dt in 1/s.
        turn_window: number of past errors (ticks) averaged by the lateral integral term.
        speed_kp, speed_ki, speed_kd, speed_window: the same for the longitudinal PID, whose error is
            the speed deficit in m/s, clipped to [0, ``speed_error_clip``].
        max_throttle: upper bound of the throttle output.
        speed_error_clip: largest speed deficit (m/s) passed to the speed PID.
        brake_speed: a desired speed below this (m/s) means stop: full brake.
        brake_ratio: brake when ``speed / desired_speed`` exceeds this.
        brake_gain: brake per m/s of speed above the desired speed when braking (not stopping).
        min_brake: smallest brake applied when the brake rule fires.
        aim_time, aim_min, aim_max: aim distance = clip(aim_time * speed, aim_min, aim_max), metres.
        waypoint_dt: time between trajectory waypoints, s (0.5 s: 2 Hz plans).
        speed_segment: which segment sets the desired speed: 0 = origin -> waypoint 0,
            k = waypoint k-1 -> waypoint k.
    """

    turn_kp: float = 1.5
    turn_ki: float = 0.0
    turn_kd: float = 0.015
    turn_window: int = 20
    speed_kp: float = 2.0
    speed_ki: float = 0.4
    speed_kd: float = 0.0
    speed_window: int = 40
    max_throttle: float = 0.9
    speed_error_clip: float = 1.0
    brake_speed: float = 0.4
    brake_ratio: float = 1.1
    brake_gain: float = 0.25
    min_brake: float = 0.15
    aim_time: float = 0.7
    aim_min: float = 3.0
    aim_max: float = 12.0
    waypoint_dt: float = 0.5
    speed_segment: int = 1

    def __post_init__(self) -> None:
        for name in ("turn_window", "speed_window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ControllerConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_throttle", "min_brake"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ControllerConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("waypoint_dt", "brake_ratio", "aim_min", "aim_max", "speed_error_clip"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"ControllerConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.aim_max < self.aim_min:
            raise ValueError(f"ControllerConfig.aim_max ({self.aim_max}) < aim_min ({self.aim_min})")
        if self.speed_segment < 0:
            raise ValueError(f"ControllerConfig.speed_segment must be >= 0, got {self.speed_segment}")


class PIDController:
    """PID with an explicit time step, a windowed integral, anti-windup and output limits.

    ``output = kp * e + ki * mean(last `window` errors) + kd * (e - e_prev) / dt``, clipped to
    ``output_limits``. When the unclipped output is saturated and the new error would push it
    further out, that error is left out of the integral window (conditional integration), so the
    integral cannot wind up against a limit. The terms of the last step are kept in ``p_term``,
    ``i_term``, ``d_term`` and ``output``.
    """

    def __init__(
        self,
        kp: float,
        ki: float,
        kd: float,
        window: int,
        output_limits: tuple[float, float] = (-math.inf, math.inf),
    ) -> None:
        if window < 1:
            raise ValueError(f"PID window must be >= 1, got {window}")
        lo, hi = output_limits
        if not lo < hi:
            raise ValueError(f"PID output_limits must satisfy low < high, got {output_limits}")
        self.kp, self.ki, self.kd = float(kp), float(ki), float(kd)
        self.window = int(window)
        self.output_limits = (float(lo), float(hi))
        self._errors: deque[float] = deque(maxlen=self.window)
        self._prev_error: float | None = None
        self.p_term = self.i_term = self.d_term = self.output = 0.0

    def reset(self) -> None:
        """Forget the integral window and the previous error."""
        self._errors.clear()
        self._prev_error = None
        self.p_term = self.i_term = self.d_term = self.output = 0.0

    @property
    def integral(self) -> float:
        """Mean of the errors in the window (0 when empty)."""
        return float(sum(self._errors) / len(self._errors)) if self._errors else 0.0

    def step(self, error: float, dt: float) -> float:
        """One update with ``error`` measured ``dt`` seconds after the previous one."""
        if not dt > 0.0:
            raise ValueError(f"PID step needs dt > 0, got {dt}")
        error = float(error)
        if not math.isfinite(error):
            raise ValueError(f"PID error must be finite, got {error}")
        lo, hi = self.output_limits
        p = self.kp * error
        d = 0.0 if self._prev_error is None else self.kd * (error - self._prev_error) / dt
        trial = list(self._errors)[-(self.window - 1):] if self.window > 1 else []
        trial.append(error)
        i_trial = self.ki * sum(trial) / len(trial)
        raw = p + i_trial + d
        pushes_out = (raw > hi and error * self.ki > 0) or (raw < lo and error * self.ki < 0)
        if not pushes_out:
            self._errors.append(error)
        self.p_term, self.i_term, self.d_term = p, self.ki * self.integral, d
        self.output = float(min(hi, max(lo, p + self.i_term + d)))
        self._prev_error = error
        return self.output


@dataclass
class ControlCommand:
    """One control decision.

    Attributes:
        throttle: [0, 1].
        steer: [-1, 1], positive steers right (carla.VehicleControl convention).
        brake: [0, 1].
        terms: intermediate values: ``aim_x``/``aim_y`` (ego m), ``alpha`` (rad), ``aim_distance`` (m),
            ``desired_speed`` (m/s), ``speed`` (m/s), ``braking`` (0/1), ``turn_p/i/d``,
            ``speed_p/i/d``, ``invalid`` (1 when the input was not finite and a full brake was given).
    """

    throttle: float
    steer: float
    brake: float
    terms: dict[str, float] = field(default_factory=dict)


def polyline_point_at(points: np.ndarray, distance: float) -> np.ndarray:
    """The point at arc length ``distance`` along ``points`` [N, 2]; past the end, the last segment
    is extended; a polyline of zero length gives its first point."""
    seg = np.diff(points, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    if cum[-1] <= 1e-9:
        return points[0].copy()
    if distance >= cum[-1]:
        k = int(np.nonzero(seg_len > 1e-9)[0][-1])
        return points[k] + seg[k] / seg_len[k] * (distance - cum[k])
    k = int(np.searchsorted(cum, distance, side="right") - 1)
    k = min(max(k, 0), len(seg) - 1)
    frac = 0.0 if seg_len[k] <= 1e-9 else (distance - cum[k]) / seg_len[k]
    return points[k] + frac * seg[k]


class TrajectoryController:
    """Tracks an ego-frame trajectory with a lateral and a longitudinal PID (see module docstring)."""

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig()
        c = self.config
        self.turn_pid = PIDController(c.turn_kp, c.turn_ki, c.turn_kd, c.turn_window, (-1.0, 1.0))
        self.speed_pid = PIDController(c.speed_kp, c.speed_ki, c.speed_kd, c.speed_window, (0.0, c.max_throttle))

    def reset(self) -> None:
        self.turn_pid.reset()
        self.speed_pid.reset()

    def aim_distance(self, speed: float) -> float:
        c = self.config
        return float(min(c.aim_max, max(c.aim_min, c.aim_time * speed)))

    def desired_speed(self, trajectory_ego: np.ndarray) -> float:
        """Speed (m/s) implied by the chosen trajectory segment."""
        pts = np.vstack([np.zeros((1, 2)), trajectory_ego])
        k = min(self.config.speed_segment, len(pts) - 2)
        return float(np.linalg.norm(pts[k + 1] - pts[k]) / self.config.waypoint_dt)

    def step(self, trajectory_ego: np.ndarray, speed: float, dt: float) -> ControlCommand:
        """Control for this tick.

        Args:
            trajectory_ego: [T, 2] waypoints (T >= 1), ego frame metres, ``waypoint_dt`` apart.
            speed: current forward speed, m/s.
            dt: time since the previous call, s (the simulator tick, 0.05 s at 20 Hz).
        Raises:
            ValueError: the trajectory is not [T, 2] or dt <= 0.
        """
        traj = np.asarray(trajectory_ego, dtype=np.float64)
        if traj.ndim != 2 or traj.shape[1] != 2 or traj.shape[0] < 1:
            raise ValueError(f"trajectory_ego must be [T, 2] with T >= 1, got shape {traj.shape}")
        if not dt > 0.0:
            raise ValueError(f"dt must be > 0, got {dt}")
        if not (np.all(np.isfinite(traj)) and math.isfinite(float(speed))):
            self.reset()
            return ControlCommand(0.0, 0.0, 1.0, {"invalid": 1.0})
        c = self.config
        speed = float(speed)

        # Longitudinal.
        desired = self.desired_speed(traj)
        braking = desired < c.brake_speed or (desired > 0.0 and speed / desired > c.brake_ratio)
        speed_error = min(max(desired - speed, 0.0), c.speed_error_clip)
        throttle = self.speed_pid.step(speed_error, dt)
        if braking:
            throttle = 0.0
            brake = 1.0 if desired < c.brake_speed else min(1.0, max(c.min_brake, c.brake_gain * (speed - desired)))
        else:
            brake = 0.0

        # Lateral.
        path = np.vstack([np.zeros((1, 2)), traj])
        aim_d = self.aim_distance(speed)
        total = float(np.sum(np.hypot(*np.diff(path, axis=0).T)))
        if total < 0.5:
            aim = np.array([aim_d, 0.0])
            alpha = 0.0
        else:
            aim = polyline_point_at(path, aim_d)
            alpha = math.atan2(aim[1], aim[0])
        steer = self.turn_pid.step(alpha / (math.pi / 2.0), dt)

        throttle = float(min(max(throttle, 0.0), c.max_throttle))
        steer = float(min(max(steer, -1.0), 1.0))
        brake = float(min(max(brake, 0.0), 1.0))
        terms = {
            "aim_x": float(aim[0]),
            "aim_y": float(aim[1]),
            "alpha": float(alpha),
            "aim_distance": aim_d,
            "desired_speed": desired,
            "speed": speed,
            "braking": float(braking),
            "turn_p": self.turn_pid.p_term,
            "turn_i": self.turn_pid.i_term,
            "turn_d": self.turn_pid.d_term,
            "speed_p": self.speed_pid.p_term,
            "speed_i": self.speed_pid.i_term,
            "speed_d": self.speed_pid.d_term,
            "invalid": 0.0,
        }
        return ControlCommand(throttle, steer, brake, terms)

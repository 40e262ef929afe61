"""The ego vehicle's response to ``carla.VehicleControl``: a kinematic bicycle with a simple
powertrain, chosen so that a controller tuned here behaves sensibly in CARLA too.

Mapping (defaults of :class:`VehicleModelConfig`):

- steering: front-wheel angle ``delta = steer * 35 deg`` (steer in [-1, 1], + = right), reached at
  most at ``max_steer_rate`` (120 deg/s at the wheel); kinematic bicycle about the vehicle centre
  (wheelbase 2.9 m, slip angle ``beta = atan(tan(delta) / 2)``), yaw rate ``v cos(beta) tan(delta) / L``,
  with the path curvature capped so that the lateral acceleration stays below 8 m/s^2 (tyre limit).
- drive: ``a = throttle * 3.5 * max(0, 1 - |v| / 45)`` m/s^2 forward (3.5 at standstill, 1.6 at
  25 m/s); with ``reverse`` set, ``throttle * 1.75`` backwards up to 5 m/s.
- brake: ``brake * 8`` m/s^2 against the motion; ``hand_brake`` adds 6 m/s^2; a stopped vehicle
  stays put unless the drive force beats the brakes.
- drag: 0.1 m/s^2 rolling + 0.00035 v^2 aerodynamic, against the motion.
- braking never reverses the motion: the speed stops at zero.

Full brake from 20 m/s stops in about 25 m (v^2 / (2 * 8.1) plus one tick).
Controls are sanitised first (:func:`sanitize_control`): non-finite values mean a full brake with no
throttle and straight wheels; finite values are clipped to their ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VehicleModelConfig:
    """Ego vehicle parameters (SI units; angles in degrees where the name says so)."""

    length: float = 5.0
    width: float = 2.0
    wheelbase: float = 2.9
    max_steer_deg: float = 35.0
    max_steer_rate_deg: float | None = 120.0  # front-wheel deg/s; None: no rate limit
    max_accel: float = 3.5
    accel_fade_speed: float = 45.0
    max_brake_decel: float = 8.0
    handbrake_decel: float = 6.0
    rolling_drag: float = 0.1
    aero_drag: float = 0.00035
    max_lateral_accel: float = 8.0
    reverse_accel_ratio: float = 0.5
    max_reverse_speed: float = 5.0


@dataclass(frozen=True)
class AppliedControl:
    """A sanitised control: throttle, brake in [0, 1], steer in [-1, 1]; ``fixed`` is True when the
    input had to be changed (non-finite or out of range)."""

    throttle: float
    steer: float
    brake: float
    hand_brake: bool = False
    reverse: bool = False
    fixed: bool = False


def _num(value, default: float = math.nan) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def sanitize_control(control) -> AppliedControl:
    """Read a ``carla.VehicleControl``-like object; never raises.

    Missing or non-finite throttle/steer/brake -> full brake, zero throttle, zero steer. Finite
    values outside their range are clipped. ``fixed`` records either case.
    """
    t, s, b = (_num(getattr(control, k, math.nan)) for k in ("throttle", "steer", "brake"))
    hand = bool(getattr(control, "hand_brake", False))
    rev = bool(getattr(control, "reverse", False))
    if not (math.isfinite(t) and math.isfinite(s) and math.isfinite(b)):
        return AppliedControl(0.0, 0.0, 1.0, hand, rev, fixed=True)
    tc, sc, bc = min(max(t, 0.0), 1.0), min(max(s, -1.0), 1.0), min(max(b, 0.0), 1.0)
    return AppliedControl(tc, sc, bc, hand, rev, fixed=(tc, sc, bc) != (t, s, b))


@dataclass
class VehicleState:
    """Ego state in the world frame: centre (m), yaw (rad, clockwise), signed forward speed (m/s),
    front-wheel angle (rad), and the last tick's yaw rate (rad/s) and longitudinal accel (m/s^2)."""

    x: float
    y: float
    yaw: float
    speed: float = 0.0
    steer_angle: float = 0.0
    yaw_rate: float = 0.0
    accel: float = 0.0


class VehicleModel:
    """Integrates :class:`VehicleState` under :class:`AppliedControl` (see the module docstring)."""

    def __init__(self, config: VehicleModelConfig | None = None) -> None:
        self.config = config or VehicleModelConfig()

    def longitudinal_accel(self, speed: float, control: AppliedControl) -> tuple[float, float]:
        """(drive accel, resisting decel magnitude) in m/s^2 for the current speed."""
        c = self.config
        if control.reverse:
            fade = max(0.0, 1.0 - abs(speed) / c.max_reverse_speed) if speed <= 0.0 else 1.0
            drive = -control.throttle * c.max_accel * c.reverse_accel_ratio * fade
        else:
            drive = control.throttle * c.max_accel * max(0.0, 1.0 - abs(speed) / c.accel_fade_speed)
        resist = control.brake * c.max_brake_decel + (c.handbrake_decel if control.hand_brake else 0.0)
        if abs(speed) > 1e-6:
            resist += c.rolling_drag + c.aero_drag * speed * speed
        return drive, resist

    def step(self, state: VehicleState, control: AppliedControl, dt: float) -> VehicleState:
        c = self.config
        # Steering with rate limit.
        target = control.steer * math.radians(c.max_steer_deg)
        delta = state.steer_angle
        if c.max_steer_rate_deg is None:
            delta = target
        else:
            step = math.radians(c.max_steer_rate_deg) * dt
            delta += min(max(target - delta, -step), step)
        # Longitudinal.
        v = state.speed
        drive, resist = self.longitudinal_accel(v, control)
        if abs(v) > 1e-6:
            v_new = v + (drive - math.copysign(resist, v)) * dt
            if v_new * v < 0.0:  # resistance cannot reverse the motion
                v_new = 0.0
        elif abs(drive) > resist:
            v_new = (drive - math.copysign(resist, drive)) * dt
        else:
            v_new = 0.0
        v_mid = 0.5 * (v + v_new)
        # Lateral: kinematic bicycle about the centre, curvature capped by the tyre limit.
        tan_d = math.tan(delta)
        curvature = tan_d / c.wheelbase
        if abs(v_mid) > 0.5:
            k_max = c.max_lateral_accel / (v_mid * v_mid)
            curvature = max(-k_max, min(k_max, curvature))
        tan_eff = curvature * c.wheelbase
        beta = math.atan(0.5 * tan_eff)
        yaw_rate = v_mid * math.cos(beta) * curvature
        x = state.x + v_mid * math.cos(state.yaw + beta) * dt
        y = state.y + v_mid * math.sin(state.yaw + beta) * dt
        yaw = state.yaw + yaw_rate * dt
        yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
        return VehicleState(x, y, yaw, v_new, delta, yaw_rate, (v_new - v) / dt)

"""Sandbox vehicle model: the documented throttle / brake / steer mapping."""

from __future__ import annotations

import math

import pytest

from carla_eval.sandbox.vehicle_model import AppliedControl, VehicleModel, VehicleModelConfig, VehicleState, sanitize_control

DT = 0.05


def run(model: VehicleModel, state: VehicleState, control: AppliedControl, seconds: float) -> VehicleState:
    for _ in range(int(round(seconds / DT))):
        state = model.step(state, control, DT)
    return state


def test_full_throttle_accelerates_and_fades_with_speed():
    model = VehicleModel()
    st = model.step(VehicleState(0, 0, 0), AppliedControl(1.0, 0.0, 0.0), DT)
    assert st.accel == pytest.approx(3.5, rel=0.02)
    st = run(model, VehicleState(0, 0, 0), AppliedControl(1.0, 0.0, 0.0), 5.0)
    assert 12.0 < st.speed < 17.5  # below 3.5 * 5 because of the fade and drag
    fast = model.step(VehicleState(0, 0, 0, speed=25.0), AppliedControl(1.0, 0.0, 0.0), DT)
    assert 0.5 < fast.accel < 2.0  # accel falls with speed
    assert st.x > 0 and abs(st.y) < 1e-9  # yaw 0 drives along +x


def test_brake_stops_within_documented_distance():
    model = VehicleModel()
    st = VehicleState(0, 0, 0, speed=20.0)
    ticks = 0
    while st.speed > 0.0 and ticks < 1000:
        st = model.step(st, AppliedControl(0.0, 0.0, 1.0), DT)
        ticks += 1
    assert st.speed == 0.0
    assert 20.0 < st.x <= 26.0  # v^2 / (2 * 8.1) = 24.7 m plus discretisation
    assert ticks * DT == pytest.approx(20.0 / 8.1, abs=0.15)
    # Braking never reverses the car.
    st = run(model, st, AppliedControl(0.0, 0.0, 1.0), 1.0)
    assert st.speed == 0.0


def test_coasting_slows_down_by_drag():
    model = VehicleModel()
    st = run(model, VehicleState(0, 0, 0, speed=20.0), AppliedControl(0.0, 0.0, 0.0), 2.0)
    assert 19.0 < st.speed < 20.0


@pytest.mark.parametrize("steer,sign", [(0.5, 1.0), (-0.5, -1.0)])
def test_positive_steer_turns_right_clockwise(steer, sign):
    model = VehicleModel()
    st = run(model, VehicleState(0, 0, 0, speed=5.0), AppliedControl(0.3, steer, 0.0), 1.0)
    assert math.copysign(1.0, st.yaw) == sign  # yaw grows = clockwise seen from above
    assert math.copysign(1.0, st.y) == sign  # right of +x is +y (south)


def test_steering_limits_and_rate():
    c = VehicleModelConfig()
    model = VehicleModel(c)
    st = model.step(VehicleState(0, 0, 0), AppliedControl(0.0, 1.0, 0.0), DT)
    assert st.steer_angle == pytest.approx(math.radians(c.max_steer_rate_deg) * DT)
    st = run(model, st, AppliedControl(0.0, 1.0, 0.0), 1.0)
    assert st.steer_angle == pytest.approx(math.radians(c.max_steer_deg))
    # Turning circle at low speed: R = L / tan(35 deg).
    st = VehicleState(0, 0, 0, speed=3.0, steer_angle=math.radians(35))
    st2 = model.step(st, AppliedControl(0.1, 1.0, 0.0), DT)
    beta = math.atan(0.5 * math.tan(math.radians(35)))
    v_mid = 0.5 * (3.0 + st2.speed)
    assert st2.yaw_rate == pytest.approx(v_mid * math.cos(beta) * math.tan(math.radians(35)) / c.wheelbase, rel=1e-6)


def test_lateral_acceleration_is_capped():
    model = VehicleModel()
    st = VehicleState(0, 0, 0, speed=25.0, steer_angle=math.radians(35))
    st = model.step(st, AppliedControl(0.0, 1.0, 0.0), DT)
    v = st.speed
    assert abs(st.yaw_rate * v) <= 8.0 * 1.05


def test_reverse_and_hand_brake():
    model = VehicleModel()
    st = run(model, VehicleState(0, 0, 0), AppliedControl(1.0, 0.0, 0.0, reverse=True), 3.0)
    assert st.speed < 0.0 and st.x < 0.0 and st.speed >= -5.0
    st = run(model, VehicleState(0, 0, 0, speed=10.0), AppliedControl(0.0, 0.0, 0.0, hand_brake=True), 1.0)
    assert st.speed < 10.0 - 5.0
    # A stopped car held by the brake does not creep under light throttle.
    st = run(model, VehicleState(0, 0, 0), AppliedControl(0.3, 0.0, 1.0), 1.0)
    assert st.speed == 0.0 and st.x == 0.0


class _Ctl:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_sanitize_control():
    ok = sanitize_control(_Ctl(throttle=0.5, steer=-0.2, brake=0.0))
    assert (ok.throttle, ok.steer, ok.brake, ok.fixed) == (0.5, -0.2, 0.0, False)
    clipped = sanitize_control(_Ctl(throttle=2.0, steer=-3.0, brake=-1.0))
    assert (clipped.throttle, clipped.steer, clipped.brake, clipped.fixed) == (1.0, -1.0, 0.0, True)
    for bad in (float("nan"), float("inf"), "x", None):
        fixed = sanitize_control(_Ctl(throttle=bad, steer=0.3, brake=0.0))
        assert (fixed.throttle, fixed.steer, fixed.brake, fixed.fixed) == (0.0, 0.0, 1.0, True)
    assert sanitize_control(object()).brake == 1.0  # not a control at all


def test_sandbox_config_round_trip_and_errors():
    from carla_eval.sandbox.config import CriteriaConfig, SandboxConfig

    cfg = SandboxConfig(plan_sample_distance=None, criteria=CriteriaConfig(blocked_time=5.0))
    assert SandboxConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        SandboxConfig.from_dict({"criteria": {"bogus": 1}})
    with pytest.raises(ValueError, match="dt"):
        SandboxConfig(dt=0.0)

"""The per-tick driving loop with a stand-in planner: plan rate, plan reuse, creep, and every failure
path ending in a safe brake."""

import math

import numpy as np
import pytest

from agent.controller import ControllerConfig, TrajectoryController
from agent.creep import CreepConfig
from agent.driving_loop import DrivingLoop
from agent.geo import GeoReference
from agent.odometry import move_plan
from agent.rigs import get_rig
from agent.route_planner import LANEFOLLOW, RoutePlanner, RoutePlannerConfig
from agent.safety import SAFE_CONTROL, SafetyConfig
from agent.sensor_io import SensorDecoder
from agent.synthetic import make_input_data, straight_route

GEO = GeoReference()
RIG = get_rig("sandbox-bev")
DT = 0.05


class StandInPlanner:
    """Plans straight ahead at ``cruise`` m/s (or a stop when ``stop_below`` is set and the given speed
    is below it); records its calls."""

    def __init__(self, cruise=6.0, lateral=0.0, stop_below=None, fail=None):
        self.cruise, self.lateral, self.stop_below, self.fail = cruise, lateral, stop_below, fail
        self.calls = []

    def plan(self, images, command, speed, acceleration, target_point):
        self.calls.append(dict(images=images, command=command, speed=speed, acceleration=acceleration,
                               target=np.array(target_point)))
        if self.fail == "raise":
            raise RuntimeError("model exploded")
        if self.fail == "server" and len(self.calls) in (2, 3):
            from agent.planning import PlannerUnavailable

            raise PlannerUnavailable("no answer from the model server")
        t = 0.5 * np.arange(1, 7)
        v = 0.0 if self.stop_below is not None and speed < self.stop_below else self.cruise
        traj = np.stack([v * t, self.lateral * t / t[-1]], axis=-1)
        if self.fail == "nan":
            traj[2, 0] = np.nan
        if self.fail == "shape":
            traj = traj[:, :1]

        class Out:
            trajectory = traj
            timings = {"total": 1.0}

        return Out()


def make_loop(planner, planning_hz=10.0, creep=None, route_len=300.0):
    route = RoutePlanner(RoutePlannerConfig(min_spacing_m=20.0))
    pts = straight_route(route_len)
    route.set_route(pts, [LANEFOLLOW] * len(pts))
    return DrivingLoop(
        decoder=SensorDecoder(RIG, GEO, RIG.image_size),
        route=route,
        planner=planner,
        controller=TrajectoryController(ControllerConfig()),
        planning_hz=planning_hz,
        creep=creep or CreepConfig(),
        safety=SafetyConfig(),
    )


class Car:
    """A crude kinematic car so the loop can run closed loop."""

    def __init__(self, x=0.0, y=0.0, yaw=0.0, speed=0.0):
        self.x, self.y, self.yaw, self.speed = x, y, yaw, speed

    def apply(self, control):
        accel = 4.0 * control.throttle - 8.0 * control.brake
        self.speed = max(0.0, self.speed + accel * DT)
        self.yaw += self.speed * math.tan(0.6 * control.steer) / 2.8 * DT
        self.x += self.speed * math.cos(self.yaw) * DT
        self.y += self.speed * math.sin(self.yaw) * DT

    def inputs(self, frame):
        return make_input_data(RIG, GEO, (self.x, self.y), self.yaw, self.speed, frame)


def assert_in_range(control):
    assert all(math.isfinite(v) for v in control)
    assert 0.0 <= control.throttle <= 1.0 and 0.0 <= control.brake <= 1.0 and -1.0 <= control.steer <= 1.0


def test_closed_loop_accelerates_along_the_route_and_plans_at_10_hz():
    planner = StandInPlanner(cruise=6.0)
    loop, car = make_loop(planner), Car()
    outs = []
    for k in range(200):
        out = loop.step(car.inputs(k), k * DT)
        assert out.ok, out
        assert_in_range(out.control)
        car.apply(out.control)
        outs.append(out)
    assert len(planner.calls) == 100  # every other 20 Hz tick
    assert 4.5 < car.speed < 7.5  # tracks the planned 6 m/s
    assert abs(car.y) < 0.5 and car.x > 50.0
    assert all(call["command"] == LANEFOLLOW for call in planner.calls)
    assert all(call["target"][0] > 0 for call in planner.calls)
    assert planner.calls[0]["images"].shape == (1, 128, 128, 3)
    assert max(o.plan_age_s for o in outs) == pytest.approx(DT)


def test_planning_every_tick_when_planning_hz_is_high():
    planner = StandInPlanner()
    loop, car = make_loop(planner, planning_hz=20.0), Car()
    for k in range(20):
        car.apply(loop.step(car.inputs(k), k * DT).control)
    assert len(planner.calls) == 20


def test_reused_plan_is_moved_into_the_current_ego_frame():
    planner = StandInPlanner(cruise=6.0, lateral=1.5)
    loop = make_loop(planner, planning_hz=2.0)  # plan every 10 ticks
    car = Car(speed=6.0)
    first = loop.step(car.inputs(0), 0.0)
    made_at = loop.odometry.pose
    assert np.allclose(first.trajectory, loop._plan.trajectory)
    for k in range(1, 6):
        car.x += 6.0 * DT  # drive straight at 6 m/s, ignoring the controller
        out = loop.step(car.inputs(k), k * DT)
        assert len(planner.calls) == 1
        expected = move_plan(first.trajectory, made_at, loop.odometry.pose)
        assert np.allclose(out.trajectory, expected)
        assert out.trajectory[0, 0] == pytest.approx(first.trajectory[0, 0] - 6.0 * DT * k, abs=1e-6)
        assert out.plan_age_s == pytest.approx(k * DT)


def _corruptions():
    def drop(key):
        return lambda d: d.pop(key)

    def put(key, value):
        return lambda d: d.__setitem__(key, value)

    yield "missing camera", drop("bev")
    yield "missing gnss", drop("gnss")
    yield "missing imu", drop("imu")
    yield "missing speed", drop("speed")
    yield "camera wrong shape", put("bev", (0, np.zeros((128, 128, 3), np.uint8)))
    yield "camera wrong dtype", put("bev", (0, np.zeros((128, 128, 4), np.float64)))
    yield "camera None", put("bev", (0, None))
    yield "gnss nan", put("gnss", (0, np.array([np.nan, 0.0, 0.0])))
    yield "gnss inf", put("gnss", (0, np.array([0.0, np.inf, 0.0])))
    yield "imu nan compass", put("imu", (0, np.array([0, 0, 9.8, 0, 0, 0, np.nan])))
    yield "imu short", put("imu", (0, np.zeros(3)))
    yield "speed nan", put("speed", (0, {"speed": np.nan}))
    yield "speed missing key", put("speed", (0, {}))
    yield "entry not a pair", put("speed", {"speed": 1.0})
    yield "input_data None", None


@pytest.mark.parametrize("name,corrupt", list(_corruptions()), ids=[c[0] for c in _corruptions()])
def test_bad_inputs_give_a_safe_brake_and_recover(name, corrupt):
    planner = StandInPlanner()
    loop, car = make_loop(planner), Car(speed=5.0)
    assert loop.step(car.inputs(0), 0.0).ok
    data = car.inputs(1)
    if corrupt is None:
        data = None
    else:
        corrupt(data)
    out = loop.step(data, DT)
    assert not out.ok and out.control == SAFE_CONTROL and out.mode == "failed"
    assert loop.failures == 1
    recovered = loop.step(car.inputs(2), 2 * DT)
    assert recovered.ok and recovered.control != SAFE_CONTROL


@pytest.mark.parametrize("fail", ["raise", "nan", "shape"])
def test_model_failures_give_a_safe_brake(fail):
    loop, car = make_loop(StandInPlanner(fail=fail)), Car(speed=5.0)
    for k in range(3):
        out = loop.step(car.inputs(k), k * DT)
        assert not out.ok and out.control == SAFE_CONTROL
    assert loop.failures == 3 and loop.plans_made == 0


def test_a_model_server_outage_brakes_logs_without_traceback_and_recovers(caplog):
    loop, car = make_loop(StandInPlanner(fail="server"), planning_hz=20.0), Car(speed=5.0)
    with caplog.at_level("WARNING", logger="agent.ik_agent"):
        outs = [loop.step(car.inputs(k), k * DT) for k in range(5)]
    assert [o.ok for o in outs] == [True, False, False, True, True]
    assert outs[1].control == SAFE_CONTROL and outs[2].control == SAFE_CONTROL
    warnings = [r for r in caplog.records if "model server unavailable" in r.getMessage()]
    assert len(warnings) == 1 and not warnings[0].exc_info  # rate-limited, no traceback


def test_controller_exception_and_nan_command_give_a_safe_brake():
    class Broken:
        def __init__(self, mode):
            self.mode = mode

        def step(self, trajectory, speed, dt):
            if self.mode == "raise":
                raise ZeroDivisionError("boom")

            class Cmd:
                throttle, steer, brake = 0.5, float("nan"), 0.0

            return Cmd()

        def reset(self):
            pass

    for mode in ("raise", "nan"):
        loop = make_loop(StandInPlanner())
        loop.controller = Broken(mode)
        out = loop.step(Car(speed=3.0).inputs(0), 0.0)
        assert not out.ok and out.control == SAFE_CONTROL


def test_random_garbage_never_raises_and_controls_stay_in_range():
    rng = np.random.default_rng(0)
    loop, car = make_loop(StandInPlanner()), Car(speed=3.0)
    garbage = [None, np.nan, -1e30, 1e30, "x", [], {}, (1,), np.zeros((2, 2)), object()]
    for k in range(300):
        data = car.inputs(k)
        if rng.random() < 0.5:
            key = rng.choice(sorted(data))
            choice = garbage[rng.integers(len(garbage))]
            data[key] = (k, choice) if rng.random() < 0.7 else choice
        out = loop.step(data, k * DT if rng.random() < 0.9 else float(rng.choice([np.nan, -5.0, 1e9])))
        assert_in_range(out.control)
        car.apply(out.control)


def test_creep_after_a_long_stop_when_the_probe_plans_to_move():
    # A "shortcut" planner: it keeps a stopped car stopped, but plans to move when told it moves.
    planner = StandInPlanner(cruise=4.0, stop_below=1.0)
    creep = CreepConfig(stuck_ticks=40, creep_ticks=20, recheck_ticks=10, creep_throttle=0.35, probe_speed_mps=2.0)
    loop, car = make_loop(planner, creep=creep), Car()
    modes = []
    for k in range(120):
        out = loop.step(car.inputs(k), k * DT)
        modes.append(out.mode)
        if out.mode == "creep":
            assert out.control.throttle in (0.35, 0.0) and out.control.brake == 0.0
        car.apply(out.control)
    assert modes[:39] == ["normal"] * 39 and modes[39] == "creep"
    assert loop.creep.creeps >= 1 and any(call["speed"] == 2.0 for call in planner.calls)
    assert car.speed > 1.0  # the creep got the car rolling; the planner then keeps it moving


def test_no_creep_when_the_probe_still_stops():
    planner = StandInPlanner(cruise=0.0)  # a hard stop whatever the speed
    creep = CreepConfig(stuck_ticks=40, recheck_ticks=10)
    loop, car = make_loop(planner, creep=creep), Car()
    for k in range(100):
        out = loop.step(car.inputs(k), k * DT)
        assert out.mode != "creep" and out.control.throttle == 0.0 and out.control.brake == 1.0
        car.apply(out.control)
    assert loop.creep.creeps == 0 and loop.creep.vetoes >= 5
    assert car.speed == 0.0

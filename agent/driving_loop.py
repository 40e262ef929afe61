"""One control tick of the IK agent, apart from the leaderboard plumbing.

Per tick (20 Hz in the leaderboard):

1. decode ``input_data`` (agent/sensor_io.py) into camera images and the ego state;
2. advance the dead-reckoned pose (agent/odometry.py) and the route target (agent/route_planner.py);
3. plan with the model when a plan is due (``planning_hz``), else reuse the last plan moved into
   the current ego frame;
4. track the plan with the PID controller (agent/controller.py);
5. creep out of a long stand-still when the safety probe allows it (agent/creep.py);
6. apply the speed limits and sanitise the command (agent/safety.py).

Any failure (unusable sensor input, model exception, NaN in a plan or a command) gives the safe
control (full brake) and a rate-limited warning; :meth:`DrivingLoop.step` never raises.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.creep import CREEP, PROBE, CreepConfig, CreepGovernor
from agent.odometry import Odometry, Pose2D, move_plan
from agent.planning import PlannerUnavailable
from agent.route_planner import RoutePlanner, RouteTarget
from agent.safety import (SAFE_CONTROL, Control, RateLimitedWarner, SafetyConfig, apply_speed_limit,
                          sanitize_control)
from agent.sensor_io import SensorDecoder, SensorFrame, SensorInputError

logger = logging.getLogger("agent.ik_agent")

NOMINAL_DT_S = 0.05  # leaderboard tick (20 Hz): used when the timestamps give no usable dt


class Planner:
    """What the loop needs from the model side (agent/planning.py's Planner); duck-typed, documentation
    only (``typing.Protocol`` needs Python 3.8 and this module runs on 3.7)."""

    def plan(self, images: np.ndarray, command: int, speed: float, acceleration: float,
             target_point: np.ndarray) -> Any:  # -> object with .trajectory [T, 2] and .timings
        raise NotImplementedError


class TrajectoryTracker:
    """What the loop needs from the controller (agent/controller.py's TrajectoryController); duck-typed."""

    def step(self, trajectory: np.ndarray, speed: float, dt: float) -> Any:  # .throttle .steer .brake
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


def _checked_trajectory(trajectory: Any) -> np.ndarray:
    """A plan as float64 [T, 2] (T >= 1); ValueError when the shape is wrong or a value is not finite."""
    array = np.asarray(trajectory, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1:
        raise ValueError(f"plan trajectory must be [T, 2], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("plan trajectory contains NaN or inf")
    return array


@dataclass
class _StoredPlan:
    trajectory: np.ndarray  # [T, 2] ego frame of ``pose``
    pose: Pose2D
    timestamp: float


@dataclass
class TickOutput:
    """Result of one tick.

    Attributes:
        control: the command to send (always finite, in range).
        ok: False when the safe control replaced a failed tick.
        frame: the decoded sensors (None when decoding failed).
        target: the route target (None when the tick failed before it).
        trajectory: [T, 2] the plan tracked this tick, current ego frame (m), or None.
        mode: "normal", "probe", "creep", or "failed".
        plan_age_s: time since the tracked plan was made (s).
        timings: ms per stage: "decode", "plan" (0 when reused), "control", "total".
    """

    control: Control
    ok: bool
    frame: SensorFrame | None = None
    target: RouteTarget | None = None
    trajectory: np.ndarray | None = None
    mode: str = "normal"
    plan_age_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


class DrivingLoop:
    """Decode -> route -> plan (or reuse) -> control -> creep -> limits, for one route."""

    def __init__(
        self,
        decoder: SensorDecoder,
        route: RoutePlanner,
        planner: Planner,
        controller: TrajectoryTracker,
        planning_hz: float,
        creep: CreepConfig,
        safety: SafetyConfig,
        warner: RateLimitedWarner | None = None,
    ) -> None:
        self.decoder = decoder
        self.route = route
        self.planner = planner
        self.controller = controller
        self.plan_period_s = 1.0 / planning_hz
        self.creep = CreepGovernor(creep)
        self.creep_config = creep
        self.safety = safety
        self.warner = warner or RateLimitedWarner(logger, safety.warn_interval_s)
        self.odometry = Odometry()
        self._plan: _StoredPlan | None = None
        self._creep_plan: _StoredPlan | None = None
        self._last_timestamp: float | None = None
        self.failures = 0
        self.plans_made = 0

    # ------------------------------------------------------------------ helpers
    def _dt(self, timestamp: float) -> float:
        previous, self._last_timestamp = self._last_timestamp, timestamp
        if previous is None:
            return NOMINAL_DT_S
        dt = timestamp - previous
        return dt if math.isfinite(dt) and 0.0 < dt <= 1.0 else NOMINAL_DT_S

    def _plan_due(self, timestamp: float) -> bool:
        if self._plan is None:
            return True
        elapsed = timestamp - self._plan.timestamp
        return elapsed < 0.0 or elapsed >= self.plan_period_s - 1e-6

    def _fail(self, key: str, message: str, *args: object, exc_info: bool = False, **out: Any) -> TickOutput:
        self.failures += 1
        self.warner.warn(key, message + " -> safe stop", *args, exc_info=exc_info)
        self.controller.reset()
        return TickOutput(control=SAFE_CONTROL, ok=False, mode="failed", **out)

    # --------------------------------------------------------------------- tick
    def step(self, input_data: dict[str, Any], timestamp: float) -> TickOutput:
        """One tick; never raises."""
        try:
            return self._step(input_data, float(timestamp))
        except Exception as exc:  # the last line of defence: the evaluator must never see it
            return self._fail("unexpected", "agent tick failed: %r", exc, exc_info=True)

    def _step(self, input_data: dict[str, Any], timestamp: float) -> TickOutput:
        t0 = time.perf_counter()
        dt = self._dt(timestamp)
        try:
            frame = self.decoder.decode(input_data, timestamp)
        except SensorInputError as exc:
            return self._fail(f"sensor:{exc.sensor_id}", "unusable sensor input: %s", exc)
        t_decode = time.perf_counter()
        ego = frame.ego
        pose = self.odometry.update(ego.speed, ego.yaw, ego.timestamp)
        target = self.route.step(ego.position, ego.yaw)

        plan_ms = 0.0
        if self._plan_due(timestamp):
            try:
                plan = self.planner.plan(frame.images, target.command, ego.speed, ego.acceleration, target.target_ego)
                trajectory = _checked_trajectory(plan.trajectory)
            except PlannerUnavailable as exc:  # the model server is away: logged by its client, no traceback
                self._plan = None
                return self._fail("planner", "model server unavailable: %s", exc, frame=frame, target=target)
            except Exception as exc:
                self._plan = None
                return self._fail("model", "model failed: %r", exc, exc_info=True, frame=frame, target=target)
            self._plan = _StoredPlan(trajectory, pose, timestamp)
            self.plans_made += 1
            plan_ms = (time.perf_counter() - t_decode) * 1e3
        assert self._plan is not None
        t_plan = time.perf_counter()

        mode = self.creep.tick(ego.speed)
        if mode == PROBE:
            mode = self._probe(frame, target, pose, timestamp)
        tracked = self._creep_plan if mode == CREEP and self._creep_plan is not None else self._plan
        trajectory = move_plan(tracked.trajectory, tracked.pose, pose)

        command = self.controller.step(trajectory, ego.speed, dt)
        control = Control(float(command.throttle), float(command.steer), float(command.brake))
        if mode == CREEP:
            control = self.creep.creep_control(control.steer, ego.speed)
        control = apply_speed_limit(control, ego.speed, self.safety)
        control, finite = sanitize_control(control)
        if not finite:
            return self._fail("control", "controller gave a non-finite command %r", command,
                              frame=frame, target=target, trajectory=trajectory)
        t_end = time.perf_counter()
        return TickOutput(
            control=control,
            ok=True,
            frame=frame,
            target=target,
            trajectory=trajectory,
            mode=mode,
            plan_age_s=timestamp - tracked.timestamp,
            timings={
                "decode": (t_decode - t0) * 1e3,
                "plan": plan_ms,
                "control": (t_end - t_plan) * 1e3,
                "total": (t_end - t0) * 1e3,
            },
        )

    def _probe(self, frame: SensorFrame, target: RouteTarget, pose: Pose2D, timestamp: float) -> str:
        """Ask the model with a moving ego speed whether it would still stop; start a creep if not."""
        try:
            probe = self.planner.plan(frame.images, target.command, self.creep_config.probe_speed_mps, 0.0,
                                      target.target_ego)
            trajectory = _checked_trajectory(probe.trajectory)
        except Exception as exc:
            self.warner.warn("probe", "creep safety probe failed: %r", exc)
            trajectory = None
        if self.creep.decide(trajectory):
            logger.info("stuck for %d ticks and the probe plan moves on: creeping", self.creep_config.stuck_ticks)
            self._creep_plan = _StoredPlan(trajectory, pose, timestamp)
            return CREEP
        self._creep_plan = None
        return "normal"

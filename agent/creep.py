"""Creeping out of a stand-still that would otherwise end the route as "Agent got blocked".

A model can learn to keep a stopped car stopped (low speed in the prompt predicts a stop). After
``stuck_ticks`` ticks below ``stuck_speed_mps`` the agent asks the model once more, with the same
images, route and command but a moving ego speed (``probe_speed_mps``): the safety probe.

- If the probe plan still ends within ``hard_stop_distance_m`` of the ego, the model sees a reason
  to stop in the images (a hard stop): no creep; the probe is repeated ``recheck_ticks`` later.
- Otherwise the agent creeps for ``creep_ticks`` ticks: throttle ``creep_throttle`` while slower
  than ``creep_max_speed_mps`` (0 above), no brake, steering from the controller tracking the
  probe plan. Then the stuck counter starts again from 0.

With 800 stuck ticks (40 s at 20 Hz) the first probe comes well before the leaderboard's blocked
limits (180 s in Leaderboard 2.0, 60 s in Bench2Drive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.safety import Control

NORMAL, PROBE, CREEP = "normal", "probe", "creep"


@dataclass(frozen=True)
class CreepConfig:
    """Creep settings (ticks are control ticks, 20 Hz in the leaderboard)."""

    enabled: bool = True
    stuck_speed_mps: float = 0.1
    stuck_ticks: int = 800
    creep_ticks: int = 30
    creep_throttle: float = 0.4
    creep_max_speed_mps: float = 2.0
    probe_speed_mps: float = 2.0
    hard_stop_distance_m: float = 1.0
    recheck_ticks: int = 40

    def __post_init__(self) -> None:
        for name in ("stuck_ticks", "creep_ticks", "recheck_ticks"):
            if getattr(self, name) < 1:
                raise ValueError(f"creep.{name} must be >= 1, got {getattr(self, name)}")
        if self.recheck_ticks > self.stuck_ticks:
            raise ValueError("creep.recheck_ticks must be <= creep.stuck_ticks")
        if not 0.0 <= self.creep_throttle <= 1.0:
            raise ValueError(f"creep.creep_throttle must be in [0, 1], got {self.creep_throttle}")
        for name in ("stuck_speed_mps", "creep_max_speed_mps", "probe_speed_mps", "hard_stop_distance_m"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"creep.{name} must be >= 0, got {getattr(self, name)}")


def plan_reach(trajectory: np.ndarray) -> float:
    """Distance (m) from the ego to the plan's last waypoint."""
    return float(np.hypot(*np.asarray(trajectory, dtype=np.float64)[-1]))


class CreepGovernor:
    """State machine: NORMAL -> PROBE (after stuck_ticks) -> CREEP (creep_ticks) or back to waiting."""

    def __init__(self, config: CreepConfig) -> None:
        self.config = config
        self.stuck = 0  # consecutive ticks below stuck_speed_mps
        self.creep_left = 0
        self.vetoes = 0  # probes that found a hard stop
        self.creeps = 0  # creeps started

    def reset(self) -> None:
        self.stuck = 0
        self.creep_left = 0

    def tick(self, speed_mps: float) -> str:
        """Update with this tick's speed; NORMAL, PROBE (the agent must call :meth:`decide`) or CREEP."""
        if not self.config.enabled:
            return NORMAL
        if self.creep_left > 0:
            self.creep_left -= 1
            return CREEP
        self.stuck = self.stuck + 1 if abs(speed_mps) < self.config.stuck_speed_mps else 0
        return PROBE if self.stuck >= self.config.stuck_ticks else NORMAL

    def decide(self, probe_trajectory: np.ndarray | None) -> bool:
        """Judge the probe plan (None: the probe failed); True when a creep starts this tick."""
        self.stuck = 0
        if probe_trajectory is None or plan_reach(probe_trajectory) < self.config.hard_stop_distance_m:
            self.vetoes += 1
            self.stuck = self.config.stuck_ticks - self.config.recheck_ticks
            return False
        self.creeps += 1
        self.creep_left = self.config.creep_ticks - 1  # this tick is the first creep tick
        return True

    def creep_control(self, steer: float, speed_mps: float) -> Control:
        """The command while creeping: fixed throttle below the creep speed, no brake."""
        throttle = self.config.creep_throttle if speed_mps < self.config.creep_max_speed_mps else 0.0
        return Control(throttle=throttle, steer=steer, brake=0.0)

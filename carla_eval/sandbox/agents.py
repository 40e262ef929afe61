"""Minimal agents for the sandbox: replay recorded controls, or drive a fixed control sequence.

They follow the leaderboard contract (set_global_plan / setup / sensors / run_step / destroy) and
ask for no camera, so they cost nothing to run; tests and replays use them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def _control(throttle: float, steer: float, brake: float):
    import carla

    return carla.VehicleControl(throttle=float(throttle), steer=float(steer), brake=float(brake))


class ScriptedAgent:
    """Returns ``controls[i]`` = (throttle, steer, brake) at tick i, then ``after`` (full brake by
    default), or the result of ``policy(tick, input_data)`` when given instead."""

    def __init__(self, controls: Sequence[Sequence[float]] | np.ndarray | None = None,
                 policy: Callable[[int, dict], tuple[float, float, float]] | None = None,
                 after: tuple[float, float, float] = (0.0, 0.0, 1.0),
                 sensors: list[dict[str, Any]] | None = None) -> None:
        if (controls is None) == (policy is None):
            raise ValueError("give exactly one of controls or policy")
        self.controls = None if controls is None else np.asarray(controls, dtype=np.float64).reshape(-1, 3)
        self.policy = policy
        self.after = after
        self._sensors = sensors if sensors is not None else [{"type": "sensor.speedometer", "id": "speed"}]
        self.tick = 0
        self.global_plan = None
        self.destroyed = False

    def set_global_plan(self, gps, world) -> None:
        self.global_plan = (gps, world)

    def setup(self, path_to_conf_file: str) -> None:
        return

    def sensors(self) -> list[dict[str, Any]]:
        return self._sensors

    def run_step(self, input_data: dict, timestamp: float):
        if self.policy is not None:
            t, s, b = self.policy(self.tick, input_data)
        elif self.tick < len(self.controls):
            t, s, b = self.controls[self.tick]
        else:
            t, s, b = self.after
        self.tick += 1
        return _control(t, s, b)

    def destroy(self) -> None:
        self.destroyed = True


def replay_agent(controls: np.ndarray) -> ScriptedAgent:
    """An agent that replays a RouteTrace's ``controls`` [N, 3] (throttle, steer, brake)."""
    return ScriptedAgent(controls=controls)

"""Safety net of the agent: the safe control, control sanitising, limits, rate-limited warnings.

Whatever goes wrong inside ``run_step`` (a missing or malformed sensor, NaN/inf in the inputs or in
the plan, an exception in the model) ends in a logged warning and :data:`SAFE_CONTROL`
(full brake, no throttle, straight wheels), never in an exception to the evaluator.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple


class Control(NamedTuple):
    """A vehicle command: throttle and brake in [0, 1], steer in [-1, 1] (positive = right)."""

    throttle: float
    steer: float
    brake: float


SAFE_CONTROL = Control(throttle=0.0, steer=0.0, brake=1.0)


@dataclass(frozen=True)
class SafetyConfig:
    """Limits applied after the controller.

    Attributes:
        max_speed_mps: above this ego speed the throttle is cut to 0 (m/s).
        overspeed_brake: brake applied when the speed exceeds ``max_speed_mps`` by more than
            ``overspeed_margin_mps`` (0 disables it).
        overspeed_margin_mps: see ``overspeed_brake`` (m/s).
        max_throttle: upper bound of the throttle sent to the vehicle.
        warn_interval_s: the same warning is logged at most once per this many seconds.
    """

    max_speed_mps: float = 20.0
    overspeed_brake: float = 0.3
    overspeed_margin_mps: float = 2.0
    max_throttle: float = 1.0
    warn_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.max_speed_mps > 0:
            raise ValueError(f"safety.max_speed_mps must be > 0, got {self.max_speed_mps}")
        if not 0.0 <= self.overspeed_brake <= 1.0:
            raise ValueError(f"safety.overspeed_brake must be in [0, 1], got {self.overspeed_brake}")
        if not self.overspeed_margin_mps >= 0:
            raise ValueError(f"safety.overspeed_margin_mps must be >= 0, got {self.overspeed_margin_mps}")
        if not 0.0 <= self.max_throttle <= 1.0:
            raise ValueError(f"safety.max_throttle must be in [0, 1], got {self.max_throttle}")
        if not self.warn_interval_s >= 0:
            raise ValueError(f"safety.warn_interval_s must be >= 0, got {self.warn_interval_s}")


def _unit(value: float, low: float, high: float) -> float | None:
    value = float(value)
    if not math.isfinite(value):
        return None
    return min(max(value, low), high)


def sanitize_control(control: Control) -> tuple[Control, bool]:
    """Clip to the valid ranges; a non-finite field turns the whole command into :data:`SAFE_CONTROL`.

    Returns ``(control, ok)`` where ``ok`` is False when the safe control was substituted.
    """
    throttle = _unit(control.throttle, 0.0, 1.0)
    steer = _unit(control.steer, -1.0, 1.0)
    brake = _unit(control.brake, 0.0, 1.0)
    if throttle is None or steer is None or brake is None:
        return SAFE_CONTROL, False
    if brake > 0.0 and throttle > 0.0:  # never press both: braking wins
        throttle = 0.0
    return Control(throttle=throttle, steer=steer, brake=brake), True


def apply_speed_limit(control: Control, speed_mps: float, config: SafetyConfig) -> Control:
    """Cap the throttle, cut it above ``max_speed_mps`` and brake well above it."""
    throttle = min(control.throttle, config.max_throttle)
    brake = control.brake
    if speed_mps > config.max_speed_mps:
        throttle = 0.0
        if speed_mps > config.max_speed_mps + config.overspeed_margin_mps:
            brake = max(brake, config.overspeed_brake)
    return Control(throttle=throttle, steer=control.steer, brake=brake)


class RateLimitedWarner:
    """Logs a warning per ``key`` at most once per ``interval_s``; counts what it held back.

    ``clock`` is injectable for tests (defaults to ``time.monotonic``).
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self.total = 0  # every warning raised, logged or not

    def warn(self, key: str, message: str, *args: object, exc_info: bool = False) -> bool:
        """Log ``message % args`` under ``key`` unless logged less than ``interval_s`` ago; True if logged."""
        self.total += 1
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        suffix = f" ({held} similar warnings held back)" if held else ""
        self.logger.warning(message + suffix, *args, exc_info=exc_info)
        self._last[key] = now
        return True

"""Leaderboard scoring vocabulary: infraction keys, penalties, statuses, messages, route score.

Numbers are those of CARLA Leaderboard 2.0 (``statistics_manager.py``) and Bench2Drive; messages are
the leaderboard's sentences, so tools that parse them (Bench2Drive's efficiency tool) work on ours.
"""

from __future__ import annotations

import math
import re
from typing import Literal, Mapping, Sequence

# Keys of a record's "infractions" dict, in the leaderboard's order.
INFRACTION_KEYS: tuple[str, ...] = (
    "collisions_layout",
    "collisions_pedestrian",
    "collisions_vehicle",
    "red_light",
    "stop_infraction",
    "outside_route_lanes",
    "min_speed_infractions",
    "yield_emergency_vehicle_infractions",
    "scenario_timeouts",
    "route_dev",
    "vehicle_blocked",
    "route_timeout",
)

# Multiplicative penalty per event (leaderboard 2.0).
PENALTY_PER_EVENT: dict[str, float] = {
    "collisions_pedestrian": 0.50,
    "collisions_vehicle": 0.60,
    "collisions_layout": 0.65,
    "red_light": 0.70,
    "stop_infraction": 0.80,
    "scenario_timeouts": 0.70,
    "yield_emergency_vehicle_infractions": 0.70,
}
MIN_SPEED_PENALTY_SCALE = 0.3  # x (1 - 0.3 (1 - pct/100)) per min-speed event (off in Bench2Drive)

# Route statuses.
STATUS_PERFECT = "Perfect"
STATUS_COMPLETED = "Completed"
STATUS_FAILED = "Failed"
STATUS_AGENT_TIMEOUT = "Failed - Agent timed out"
STATUS_DEVIATED = "Failed - Agent deviated from the route"
STATUS_BLOCKED = "Failed - Agent got blocked"
STATUS_SIM_CRASH = "Failed - Simulation crashed"
STATUS_SENSORS_INVALID = "Failed - Agent's sensors were invalid"
STATUS_AGENT_SETUP = "Failed - Agent couldn't be set up"
STATUS_AGENT_CRASH = "Failed - Agent crashed"
STATUS_TICK_RUNTIME = "Failed - TickRuntime"
SUCCESS_STATUSES = (STATUS_PERFECT, STATUS_COMPLETED)

# Infractions that do not stop a route counting as a success (Bench2Drive rule).
SUCCESS_ALLOWED_INFRACTIONS = ("min_speed_infractions",)


def msg_collision(type_id: str, actor_id: int | str, x: float, y: float, z: float = 0.0) -> str:
    return f"Agent collided against object with type={type_id} and id={actor_id} at (x={x:.3f}, y={y:.3f}, z={z:.3f})"


def msg_outside_lanes(meters: float, pct: float) -> str:
    return f"Agent went outside its route lanes for about {meters:.3f} meters ({pct:.2f}% of the completed route)"


def msg_route_deviation(x: float, y: float, z: float = 0.0) -> str:
    return f"Agent deviated from the route at (x={x:.3f}, y={y:.3f}, z={z:.3f})"


def msg_blocked(x: float, y: float, z: float = 0.0) -> str:
    return f"Agent got blocked at (x={x:.3f}, y={y:.3f}, z={z:.3f})"


def msg_min_speed(pct: float) -> str:
    return f"Average speed is {pct:.2f}% of the surrounding traffic's one"


def msg_scenario_timeout() -> str:
    return "Agent timed out a scenario"


def msg_route_timeout() -> str:
    return "Route timeout."


_PCT_RE = re.compile(r"([-+]?\d+(?:\.\d+)?)%")


def message_percentage(message: str) -> float:
    """The number before the first '%' of a message (outside-lanes or min-speed). Raises on none."""
    m = _PCT_RE.search(message)
    if m is None:
        raise ValueError(f"no percentage in infraction message: {message!r}")
    return float(m.group(1))


def empty_infractions() -> dict[str, list[str]]:
    return {k: [] for k in INFRACTION_KEYS}


def penalty_factor(
    infractions: Mapping[str, Sequence[str]],
    formula: Literal["2.0", "2.1"] = "2.0",
    apply_min_speed: bool = False,
) -> float:
    """Infraction penalty IP in (0, 1] for one route.

    - "2.0": product over events of PENALTY_PER_EVENT; outside route lanes multiplies by
      (1 - pct/100); min speed (only if ``apply_min_speed``) by (1 - 0.3 (1 - pct/100)).
    - "2.1": IP = 1 / (1 + sum of weights), weight of an event w = 1/p - 1 for its 2.0 factor p, so
      one infraction costs the same under both formulas and several add up instead of multiplying.
    Unknown keys raise (a typo must not silently score 100%).
    """
    unknown = set(infractions) - set(INFRACTION_KEYS)
    if unknown:
        raise KeyError(f"unknown infraction keys: {sorted(unknown)}")
    factors: list[float] = []
    for key, messages in infractions.items():
        for msg in messages:
            if key in PENALTY_PER_EVENT:
                factors.append(PENALTY_PER_EVENT[key])
            elif key == "outside_route_lanes":
                factors.append(max(0.0, 1.0 - message_percentage(msg) / 100.0))
            elif key == "min_speed_infractions" and apply_min_speed:
                pct = min(100.0, message_percentage(msg))
                factors.append(1.0 - MIN_SPEED_PENALTY_SCALE * (1.0 - pct / 100.0))
    if formula == "2.0":
        return float(math.prod(factors)) if factors else 1.0
    if formula == "2.1":
        weights = [(1.0 / f - 1.0) if f > 0 else math.inf for f in factors]
        total = sum(weights)
        return 0.0 if math.isinf(total) else 1.0 / (1.0 + total)
    raise ValueError(f"unknown penalty formula {formula!r}; use '2.0' or '2.1'")


def route_scores(
    route_completion_pct: float,
    infractions: Mapping[str, Sequence[str]],
    formula: Literal["2.0", "2.1"] = "2.0",
    apply_min_speed: bool = False,
) -> dict[str, float]:
    """Record "scores" dict: score_route = RC (%), score_penalty = IP, score_composed = RC x IP."""
    if not (0.0 <= route_completion_pct <= 100.0 + 1e-6) or math.isnan(route_completion_pct):
        raise ValueError(f"route completion must be in [0, 100], got {route_completion_pct}")
    rc = min(100.0, route_completion_pct)
    ip = penalty_factor(infractions, formula, apply_min_speed)
    return {"score_route": rc, "score_penalty": ip, "score_composed": max(0.0, rc * ip)}


def is_success(status: str, infractions: Mapping[str, Sequence[str]]) -> bool:
    """Bench2Drive success: Completed/Perfect and no infraction other than min speed."""
    if status not in SUCCESS_STATUSES:
        return False
    return all(not msgs for key, msgs in infractions.items() if key not in SUCCESS_ALLOWED_INFRACTIONS)


def final_status(route_completion_pct: float, infractions: Mapping[str, Sequence[str]], failure: str | None) -> str:
    """Leaderboard status: a failure reason wins; else Perfect (100% and no infraction) or Completed
    (100% with infractions other than min speed); a route that ended short of 100% without a reason is 'Failed'."""
    if failure:
        return failure
    if route_completion_pct >= 100.0 - 1e-6:
        clean = all(not m for k, m in infractions.items() if k not in SUCCESS_ALLOWED_INFRACTIONS)
        return STATUS_PERFECT if clean else STATUS_COMPLETED
    return STATUS_FAILED

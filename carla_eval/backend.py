"""The contract between the harness and a simulator backend (sandbox now, CARLA next).

The harness owns the queue, the workers, the results files, metrics and videos. A backend owns one
simulator and runs ONE route at a time with ONE agent, playing the leaderboard evaluator's part of
the agent contract: ``set_global_plan`` -> ``setup(agent_config)`` -> ``sensors()`` validated ->
per tick ``agent(input_data, timestamp)`` (``__call__``, which calls ``run_step``) -> ``destroy``.
It turns every failure of the agent into a recorded status (never an exception to the harness);
an exception out of ``run_route`` means the SIMULATOR failed, and the harness records it as
"Failed - Simulation crashed" after its retries, except :class:`RouteInvalidError` (the route
itself cannot be run: an unknown town, waypoints off every lane), which is recorded at once as an
invalid route, without retries.

A backend class may also offer ``route_error(route, options) -> str | None`` (a classmethod, run in
the main process before the run folder is written, with the run's backend options): the reason a
route can never run on it, or None. Such routes are recorded as invalid routes and never sent to
a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from carla_eval.routes import RouteConfig


class RouteInvalidError(ValueError):
    """The route cannot run on this backend whatever the attempt (unknown town, waypoints off the
    lanes, a malformed scenario): not a simulator crash, never retried."""


@dataclass
class TickInfo:
    """What the backend reports to the harness after each tick (for progress and videos)."""

    step: int  # tick index from 0
    game_time: float  # s since route start
    ego_xy: tuple[float, float]  # world m
    ego_yaw: float  # world rad
    speed: float  # m/s
    throttle: float
    steer: float
    brake: float
    route_completion: float  # % so far
    new_infractions: list[tuple[str, str]] = field(default_factory=list)  # (key, message) raised this tick


@dataclass
class RouteTrace:
    """Per-tick log of a route, enough to replay it without the agent.

    Arrays have one row per tick (20 Hz): ``controls`` [N, 3] (throttle, steer, brake),
    ``ego`` [N, 4] (x m, y m, yaw rad, speed m/s) in the world frame AFTER the tick was applied.
    """

    seed: int
    controls: np.ndarray
    ego: np.ndarray


@dataclass
class RouteOutcome:
    """One finished (or failed) route, everything a leaderboard record needs.

    ``infractions`` has every key of ``scoring.INFRACTION_KEYS``; ``scores`` is
    ``scoring.route_scores(...)``; ``metric_info`` is Bench2Drive's metric_info.json content (one entry
    per tick, keys "0", "1", ...); ``trace`` is None when the route never started.
    """

    route: RouteConfig
    repetition: int
    status: str
    infractions: dict[str, list[str]]
    scores: dict[str, float]
    route_length: float  # m
    duration_game: float  # s
    duration_system: float  # s
    scenario_name: str
    town_name: str
    ability: str  # Bench2Drive ability of the route's scenario type ("" if none)
    save_name: str
    metric_info: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    trace: RouteTrace | None = None
    infraction_steps: list[tuple[int, str, str]] = field(default_factory=list)  # (tick, key, message)
    error: str | None = None  # human-readable cause for a failed status
    weather_id: int | str | None = None  # when the backend knows it (Bench2Drive's evaluator writes it)
    sensor_icons: list[str] = field(default_factory=list)  # the leaderboard's "sensors" list, when the backend has it
    recording: str | None = None  # CARLA recorder file of the route (absolute path), when recorded


class Backend(Protocol):
    """A simulator that runs routes. One instance per worker process."""

    name: str

    def run_route(
        self,
        route: RouteConfig,
        agent: Any,
        agent_config: str,
        *,
        repetition: int = 0,
        seed: int = 0,
        on_tick: Callable[[TickInfo], None] | None = None,
    ) -> RouteOutcome:
        """Run ``route`` with ``agent`` (a fresh AutonomousAgent instance) to the end."""
        ...

    def create_expert_agent(self) -> Any:
        """A privileged expert agent for this backend (raises if the backend has none)."""
        ...

    def close(self) -> None:
        """Release the simulator (idempotent)."""
        ...

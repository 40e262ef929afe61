"""Typed configuration of one evaluation run, built by the CLI and passed explicitly everywhere.

Everything here is a plain, picklable dataclass: the same objects travel to local worker
processes (multiprocessing, spawn) and to Ray actors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

VideoMode = Literal["failures", "all", "none"]
PenaltyFormula = Literal["2.0", "2.1"]

TICK_HZ = 20.0  # leaderboard simulation rate (fixed_delta_seconds = 0.05)


@dataclass(frozen=True)
class BackendSpec:
    """Which simulator backend a worker builds, and its constructor options.

    ``name`` is ``sandbox``, ``carla``, ``scripted`` or an import path ``package.module:ClassName``;
    ``options`` are keyword arguments of that class's constructor (JSON-serialisable values).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentSpec:
    """The agent under test: ``expert`` (the backend's privileged expert) or a leaderboard agent file."""

    path: str  # "expert" or a path to a .py file with get_entry_point()
    config: str = ""  # --agent-config, passed to agent.setup()
    host: str = "localhost"  # Cls(host, port, debug), as the leaderboard evaluator builds agents
    port: int = 2000
    debug: bool = False

    @property
    def is_expert(self) -> bool:
        return self.path == "expert"


@dataclass(frozen=True)
class VideoConfig:
    """Failure videos. ``mode``: failures (failed or penalised routes), all, or none.

    ``last_seconds``: the failures mode keeps a ring buffer of this many seconds before the end.
    ``fps``: 20 (every tick) or 10 (every second tick). ``min_height``: the camera image is scaled
    up (nearest neighbour) to at least this many pixels before drawing.
    """

    mode: VideoMode = "failures"
    last_seconds: float = 10.0
    fps: int = 10
    min_height: int = 384
    crf: int = 23

    def __post_init__(self) -> None:
        if self.mode not in ("failures", "all", "none"):
            raise ValueError(f"video mode must be failures, all or none, got {self.mode!r}")
        if self.fps not in (10, 20):
            raise ValueError(f"video fps must be 10 or 20, got {self.fps}")
        if self.last_seconds <= 0:
            raise ValueError(f"video last_seconds must be > 0, got {self.last_seconds}")

    @property
    def tick_stride(self) -> int:
        """Ticks per video frame (20 Hz simulation)."""
        return int(round(TICK_HZ / self.fps))


@dataclass(frozen=True)
class WatchdogConfig:
    """Time limits that keep a hung agent or simulator from stalling a run (docs/harness.md).

    The wall-clock limit of one route attempt (:meth:`route_limit_s`) is ``RunConfig.route_timeout_s``
    when given (``0``: no limit), otherwise ``startup_s + game_limit_s / realtime_factor`` with the route's game-time limit
    ``game_limit_s = 60 s + L / (3 m/s)`` (L: waypoint polyline length in m, the sandbox's route
    timeout rule) and ``realtime_factor`` the slowest expected ratio of game time to wall time.

    ``agent_timeout_s``: per-call agent watchdog, as the leaderboard's: one ``setup()`` or
    ``run_step()`` call that takes longer ends the route as "Failed - Agent couldn't be set up" /
    "Failed - Agent crashed" ("Agent took longer than Ns to send its command"); ``0`` switches it
    off. The default is the leaderboard evaluator's ``--timeout`` (300 s).
    """

    realtime_factor: float = 0.1
    startup_s: float = 300.0
    agent_timeout_s: float = 300.0

    GAME_LIMIT_BASE_S = 60.0
    GAME_LIMIT_SPEED_MPS = 3.0

    def __post_init__(self) -> None:
        if not self.realtime_factor > 0:
            raise ValueError(f"realtime factor must be > 0, got {self.realtime_factor}")
        if self.startup_s < 0:
            raise ValueError(f"watchdog startup allowance must be >= 0 s, got {self.startup_s}")
        if self.agent_timeout_s < 0:
            raise ValueError(f"agent timeout must be >= 0 s (0 = no watchdog), got {self.agent_timeout_s}")

    @classmethod
    def game_limit_s(cls, route_length_m: float) -> float:
        """Game-time limit of a route of that length (s)."""
        return cls.GAME_LIMIT_BASE_S + max(route_length_m, 0.0) / cls.GAME_LIMIT_SPEED_MPS

    def route_limit_s(self, route_length_m: float, explicit_s: float | None = None) -> float | None:
        """Wall-clock limit of one attempt at a route of that length (s); None: no limit.
        ``explicit_s`` (``--route-timeout``) wins when given; 0 means no limit."""
        if explicit_s is not None:
            return explicit_s or None
        return self.startup_s + self.game_limit_s(route_length_m) / self.realtime_factor

    @property
    def agent_limit_s(self) -> float | None:
        return self.agent_timeout_s or None


@dataclass(frozen=True)
class RunConfig:
    """One ``carla-eval run``."""

    backend: BackendSpec
    routes_file: Path
    agent: AgentSpec
    out_dir: Path
    workers: int = 1
    ray_address: str | None = None  # None: local processes; "local", "auto" or a cluster address
    routes_subset: str | None = None
    repetitions: int = 1
    resume: bool = False
    seed: int = 0
    video: VideoConfig = field(default_factory=VideoConfig)
    retries: int = 2
    penalty_formula: PenaltyFormula = "2.0"
    route_timeout_s: float | None = None  # wall-clock limit per route attempt; None: derived (WatchdogConfig); 0: none
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    save_traces: bool = True
    show_progress: bool = True
    allow_code_change: bool = False  # --resume under another git revision (then every revision is recorded)
    ray_connect_timeout_s: float = 30.0  # joining --ray-address auto / HOST:PORT
    gpus: tuple[int, ...] = ()  # --gpus: worker slot i gets gpus[i // workers_per_gpu]
    workers_per_gpu: int = 1
    retry_statuses: tuple[str, ...] | None = None  # outcome statuses run again; None: the backend's default
    record: bool = False  # --record: a CARLA recorder file per route (RUN_DIR/recordings/)
    weather_table: Path | None = None  # weather.xml naming the weather of routes without a weather_id

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.repetitions < 1:
            raise ValueError(f"repetitions must be >= 1, got {self.repetitions}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.penalty_formula not in ("2.0", "2.1"):
            raise ValueError(f"penalty formula must be '2.0' or '2.1', got {self.penalty_formula!r}")
        if self.route_timeout_s is not None and self.route_timeout_s < 0:
            raise ValueError(f"route timeout must be >= 0 s (0 = no limit), got {self.route_timeout_s}")
        if not self.ray_connect_timeout_s > 0:
            raise ValueError(f"Ray connect timeout must be > 0 s, got {self.ray_connect_timeout_s}")
        if self.retry_statuses is not None and "Failed - TickRuntime" in self.retry_statuses:
            raise ValueError("'Failed - TickRuntime' (an agent that got stuck) is a result, not a crash: it is never retried")
        if self.workers_per_gpu < 1:
            raise ValueError(f"workers per GPU must be >= 1, got {self.workers_per_gpu}")
        if self.gpus and self.workers > len(self.gpus) * self.workers_per_gpu:
            raise ValueError(f"{self.workers} workers need more GPU slots than --gpus {','.join(map(str, self.gpus))} x "
                             f"--workers-per-gpu {self.workers_per_gpu} = {len(self.gpus) * self.workers_per_gpu}")


def route_seed(base_seed: int, route_id: str, repetition: int, route_file_seed: int | None = None) -> int:
    """Seed of one route x repetition: stable across runs, subsets, resumes and worker counts.

    A route that names its own seed (``<route seed="...">``, as the sandbox suites do) runs with
    exactly that seed at ``--seed 0``, repetition 0; other seeds / repetitions shift it. Otherwise
    the seed is a hash of (base seed, route id, repetition).
    """
    if route_file_seed is not None:
        return (route_file_seed + base_seed + 1_000_003 * repetition) & 0x7FFFFFFF
    digest = hashlib.sha256(f"{base_seed}:{route_id}:{repetition}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def route_file_seed(attributes: dict[str, str]) -> int | None:
    """The ``seed`` attribute of a ``<route>``, or None when absent or not an integer."""
    raw = attributes.get("seed")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None

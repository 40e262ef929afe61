"""Typed configuration of the sandbox backend (every knob in one serialisable dataclass).

This module imports nothing heavy (no highway-env, no pygame), so a harness can build and check a
configuration before any simulator code is loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from carla_eval.sandbox.vehicle_model import VehicleModelConfig


@dataclass(frozen=True)
class CriteriaConfig:
    """Route criteria (see carla_eval/sandbox/criteria.py): metres, seconds, m/s."""

    completion_radius: float = 10.0
    completion_window: int = 60
    deviation_distance: float = 30.0
    blocked_speed: float = 0.1
    blocked_time: float = 60.0
    timeout_base: float = 60.0
    timeout_speed: float = 3.0
    max_ticks: int | None = None
    # Vehicle collisions: scenario_runner's CollisionTest (leaderboard 2.0 values; 1.0 used an
    # ignore radius of 3 m and no speed check).
    collision_id_time: float = 5.0  # contacts with the last counted actor are ignored this long after its event
    collision_ignore_radius: float = 5.0  # contacts this close to a remembered event place are ignored
    collision_forget_radius: float = 5.0  # event places are forgotten once the ego is farther than this
    collision_min_speed: float = 0.1  # contacts while the ego is slower than this are not its fault
    min_speed_checkpoints: int = 20
    min_speed_radius: float = 50.0
    offroad_type_id: str = "static.sandbox.roadside"


@dataclass(frozen=True)
class GuardConfig:
    """Collision guard of background cars (see carla_eval/sandbox/guard.py): s, m, deg."""

    enabled: bool = True
    horizon: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    radius: float = 12.0  # candidates within radius + (both speeds) x the last horizon of a car's centre
    max_heading_diff: float = 100.0  # deg: merges into a ring meet at up to about 85 deg
    lateral_margin: float = 0.3
    lateral_tau: float = 1.0  # a lane-changing car's lateral offset fades with this time constant
    path_step: float = 2.0
    min_gap: float = 1.0  # IDM standstill gap towards a guard leader
    time_gap: float = 0.6  # IDM time gap towards a guard leader
    hold_time: float = 1.5  # after touching another car, the car that yields brakes to a stop this long


@dataclass(frozen=True)
class TrafficConfig:
    """Background traffic (see carla_eval/sandbox/traffic.py): metres, ticks."""

    enabled: bool = True
    active_radius: float = 230.0
    spawn_ahead: float = 160.0
    spawn_behind: float = 90.0
    min_spawn_distance: float = 50.0
    init_min_distance: float = 20.0
    init_clear_behind: float = 70.0
    max_vehicles: int = 26
    manage_every: int = 5
    density_scale: float = 1.0  # multiplies every stream's gaps (larger = sparser)
    approach_clear: float = 30.0  # no give-way car spawns closer than this before its first conflict zone
    guard: GuardConfig = field(default_factory=GuardConfig)


@dataclass(frozen=True)
class RoutePlanConfig:
    """Route planning (see carla_eval/sandbox/route_plan.py): metres, degrees."""

    spacing: float = 1.0
    lane_change_length: float = 35.0
    lane_change_penalty: float = 30.0
    straight_threshold_deg: float = 45.0


@dataclass(frozen=True)
class SandboxConfig:
    """Settings of :class:`~carla_eval.sandbox.backend.SandboxBackend`.

    Attributes:
        dt: simulation step, s (20 Hz like the leaderboard).
        plan_sample_distance: metres between global-plan points given to the agent (Bench2Drive:
            50; leaderboard 2.0: 200); None passes the dense 1 m route.
        penalty_formula: leaderboard penalty formula for the route score ("2.0" or "2.1").
        apply_min_speed_penalty: count min-speed messages in the penalty (off, as in Bench2Drive).
        max_mount_distance: SENSORS-track mount radius check in metres, 3.0 as in Leaderboard 2.0
            (None turns it off: needed by the ``sandbox-bev`` rig, whose camera is 20 m up).
        camera_ground_truth: render depth and semantic images of the perspective cameras every
            tick (training data; kept on the route session, never given to the agent).
        appearance_jitter: strength of the per-route brightness / colour jitter (0 = presets only).
        record_metric_info: fill RouteOutcome.metric_info (Bench2Drive's per-tick vehicle state).
        ambient_walkers: walkers pacing the sidewalks along a route, in towns with sidewalks.
    """

    dt: float = 0.05
    plan_sample_distance: float | None = 50.0
    penalty_formula: Literal["2.0", "2.1"] = "2.0"
    apply_min_speed_penalty: bool = False
    max_mount_distance: float | None = 3.0
    camera_ground_truth: bool = False
    appearance_jitter: float = 1.0
    record_metric_info: bool = True
    ambient_walkers: int = 10
    vehicle: VehicleModelConfig = field(default_factory=VehicleModelConfig)
    criteria: CriteriaConfig = field(default_factory=CriteriaConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    route_plan: RoutePlanConfig = field(default_factory=RoutePlanConfig)

    def __post_init__(self) -> None:
        if not self.dt > 0:
            raise ValueError(f"SandboxConfig.dt must be > 0, got {self.dt}")
        if self.plan_sample_distance is not None and not self.plan_sample_distance > 0:
            raise ValueError(f"SandboxConfig.plan_sample_distance must be > 0 or None, got {self.plan_sample_distance}")
        if self.penalty_formula not in ("2.0", "2.1"):
            raise ValueError(f"SandboxConfig.penalty_formula must be '2.0' or '2.1', got {self.penalty_formula!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SandboxConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError naming them."""
        nested = {"vehicle": VehicleModelConfig, "criteria": CriteriaConfig, "traffic": TrafficConfig, "route_plan": RoutePlanConfig}
        kwargs = {}
        for key, value in data.items():
            if key not in cls.__dataclass_fields__:
                raise ValueError(f"unknown sandbox config key {key!r}; known: {sorted(cls.__dataclass_fields__)}")
            if key in nested and isinstance(value, dict):
                sub = nested[key]
                bad = sorted(set(value) - set(sub.__dataclass_fields__))
                if bad:
                    raise ValueError(f"unknown keys in sandbox config {key!r}: {bad}")
                if key == "traffic" and isinstance(value.get("guard"), dict):
                    guard = value["guard"]
                    bad = sorted(set(guard) - set(GuardConfig.__dataclass_fields__))
                    if bad:
                        raise ValueError(f"unknown keys in sandbox config 'traffic.guard': {bad}")
                    if "horizon" in guard:
                        guard = dict(guard, horizon=tuple(guard["horizon"]))
                    value = dict(value, guard=GuardConfig(**guard))
                value = sub(**value)
            kwargs[key] = value
        return cls(**kwargs)

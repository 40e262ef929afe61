"""Benchmark metrics from leaderboard records: DS, RC, IS, success rate, abilities, efficiency,
comfort and infractions per km (docs/harness.md gives every formula).

All averages over routes divide by the number of EXPECTED routes x repetitions (the route file),
so missing routes count 0 and are listed, never averaged away. Formulas follow CARLA
leaderboard-2.0 (per-km rates) and Bench2Drive's tools (success, abilities, efficiency, comfort).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from carla_eval import scoring
from carla_eval.results import km_driven, outside_lanes_km

ABILITY_NAMES: tuple[str, ...] = ("Merging", "Overtaking", "Emergency_Brake", "Give_Way", "Traffic_Signs")

# Bench2Drive's scenario-type groups (tools/ability_benchmark.py); a type may be in two groups.
BENCH2DRIVE_ABILITIES: dict[str, tuple[str, ...]] = {
    "Overtaking": (
        "Accident", "AccidentTwoWays", "ConstructionObstacle", "ConstructionObstacleTwoWays",
        "HazardAtSideLaneTwoWays", "HazardAtSideLane", "ParkedObstacleTwoWays", "ParkedObstacle",
        "VehicleOpensDoorTwoWays",
    ),
    "Merging": (
        "CrossingBicycleFlow", "EnterActorFlow", "HighwayExit", "InterurbanActorFlow", "HighwayCutIn",
        "InterurbanAdvancedActorFlow", "MergerIntoSlowTrafficV2", "MergerIntoSlowTraffic",
        "NonSignalizedJunctionLeftTurn", "NonSignalizedJunctionRightTurn", "NonSignalizedJunctionLeftTurnEnterFlow",
        "ParkingExit", "SequentialLaneChange", "SignalizedJunctionLeftTurn", "SignalizedJunctionRightTurn",
        "SignalizedJunctionLeftTurnEnterFlow",
    ),
    "Emergency_Brake": (
        "BlockedIntersection", "DynamicObjectCrossing", "HardBreakRoute", "OppositeVehicleTakingPriority",
        "OppositeVehicleRunningRedLight", "ParkingCutIn", "PedestrianCrossing", "ParkingCrossingPedestrian",
        "StaticCutIn", "VehicleTurningRoute", "VehicleTurningRoutePedestrian", "ControlLoss",
    ),
    "Give_Way": ("InvadingTurn", "YieldToEmergencyVehicle"),
    "Traffic_Signs": (
        "BlockedIntersection", "OppositeVehicleTakingPriority", "OppositeVehicleRunningRedLight", "PedestrianCrossing",
        "VehicleTurningRoute", "VehicleTurningRoutePedestrian", "EnterActorFlow", "CrossingBicycleFlow",
        "NonSignalizedJunctionLeftTurn", "NonSignalizedJunctionRightTurn", "NonSignalizedJunctionLeftTurnEnterFlow",
        "SignalizedJunctionLeftTurn", "SignalizedJunctionRightTurn", "SignalizedJunctionLeftTurnEnterFlow",
        "T_Junction", "VanillaNonSignalizedTurn", "VanillaSignalizedTurnEncounterGreenLight",
        "VanillaSignalizedTurnEncounterRedLight", "VanillaNonSignalizedTurnEncounterStopsign",
    ),
}

EFFICIENCY_MAX_PCT = 1000.0  # min-speed percentages above this are dropped (Bench2Drive)


@dataclass(frozen=True)
class ExpectedRoute:
    """One route x repetition the run(s) should hold: its record id, scenario type and ability."""

    record_id: str
    scenario_type: str = ""
    ability: str = ""


@dataclass(frozen=True)
class ComfortConfig:
    """Bench2Drive's comfort (smoothness) test, per chunk of ``chunk`` metric_info entries.

    A chunk passes when, after Savitzky-Golay smoothing (``window``, ``order``; derivatives with
    spacing ``dt``), every sample has lon accel in (min_lon_accel, max_lon_accel), |lat accel| <
    max_abs_lat_accel, |jerk| < max_abs_jerk, |lon jerk| < max_abs_lon_jerk, |yaw accel| <
    max_abs_yaw_accel and |yaw rate| < max_abs_yaw_rate.

    ``bench2drive_compat`` (default) reproduces Bench2Drive's tool exactly so numbers compare with
    published ones: the yaw rate is metric_info's ``angular_velocity[2]`` as written (CARLA gives
    deg/s) and the "yaw acceleration" is the smoothed yaw rate (the tool does not differentiate it).
    With False, angular velocity is converted to rad/s and yaw acceleration is its derivative.
    """

    window: int = 7
    order: int = 2
    dt: float = 0.1
    chunk: int = 20
    min_lon_accel: float = -4.05
    max_lon_accel: float = 2.40
    max_abs_lat_accel: float = 4.89
    max_abs_jerk: float = 8.37
    max_abs_lon_jerk: float = 4.13
    max_abs_yaw_accel: float = 1.93
    max_abs_yaw_rate: float = 0.95
    bench2drive_compat: bool = True


# ------------------------------------------------------------------------------- per record
def record_abilities(record: Mapping[str, Any], scenario_type: str = "") -> set[str]:
    """Abilities of a record: Bench2Drive's groups of its scenario type, plus its own "ability".

    The type is ``scenario_type`` (from the route file) when given, else the record's
    ``scenario_name`` mapped to its type (Bench2Drive writes names such as ``ParkedObstacle_1``;
    Leaderboard 2.0 writes none).
    """
    from carla_eval.result_formats import scenario_type_of_name

    stype = scenario_type or scenario_type_of_name(record.get("scenario_name"))
    return abilities_of(stype, str(record.get("ability") or ""))


def abilities_of(scenario_type: str, ability: str = "") -> set[str]:
    out = {name for name, types in BENCH2DRIVE_ABILITIES.items() if scenario_type in types}
    if ability in ABILITY_NAMES:
        out.add(ability)
    return out


def is_success(record: Mapping[str, Any]) -> bool:
    """Bench2Drive success: status Completed/Perfect and no infraction other than min speed."""
    return scoring.is_success(record["status"], record["infractions"])


def route_efficiency(record: Mapping[str, Any]) -> float | None:
    """Mean of the min-speed percentages of one record (values > 1000% dropped); None if none."""
    pcts = [scoring.message_percentage(m) for m in record["infractions"].get("min_speed_infractions", [])]
    pcts = [p for p in pcts if p <= EFFICIENCY_MAX_PCT]
    return float(np.mean(pcts)) if pcts else None


def _phase_unwrap(angles: np.ndarray) -> np.ndarray:
    """Remove 2 pi jumps between successive samples."""
    two_pi = 2.0 * math.pi
    adjust = np.zeros_like(angles)
    adjust[1:] = np.cumsum(np.round(np.diff(angles) / two_pi))
    return angles - two_pi * adjust


def _chunk_passes(entries: Sequence[Mapping[str, Sequence[float]]], cfg: ComfortConfig) -> bool:
    from scipy.signal import savgol_filter

    n = len(entries)
    window = min(cfg.window, n)
    if cfg.order >= window:
        raise ValueError(f"comfort needs more than {cfg.order} samples, got {n}")
    acc = np.array([[e["acceleration"][0], e["acceleration"][1]] for e in entries], dtype=np.float64)  # [n, 2]
    fwd = np.array([[e["forward_vector"][0], e["forward_vector"][1]] for e in entries], dtype=np.float64)
    right = np.array([[e["right_vector"][0], e["right_vector"][1]] for e in entries], dtype=np.float64)
    yaw_rate = np.array([e["angular_velocity"][2] for e in entries], dtype=np.float64)  # [n]
    if not cfg.bench2drive_compat:
        yaw_rate = np.radians(yaw_rate)
    yaw_rate = _phase_unwrap(yaw_rate)

    def smooth(x: np.ndarray, deriv: int = 0) -> np.ndarray:
        return savgol_filter(x, window_length=window, polyorder=cfg.order, deriv=deriv, delta=cfg.dt, axis=-1)

    lon_acc = smooth(np.einsum("ij,ij->i", acc, fwd))
    lat_acc = smooth(np.einsum("ij,ij->i", acc, right))
    mag_acc = smooth(np.hypot(acc[:, 0], acc[:, 1]))
    jerk = smooth(mag_acc, deriv=1)
    lon_jerk = smooth(lon_acc, deriv=1)
    yaw_acc = smooth(yaw_rate) if cfg.bench2drive_compat else smooth(smooth(yaw_rate), deriv=1)
    yaw_rate = smooth(yaw_rate)
    checks = (
        (lon_acc > cfg.min_lon_accel) & (lon_acc < cfg.max_lon_accel),
        np.abs(lat_acc) < cfg.max_abs_lat_accel,
        np.abs(jerk) < cfg.max_abs_jerk,
        np.abs(lon_jerk) < cfg.max_abs_lon_jerk,
        np.abs(yaw_acc) < cfg.max_abs_yaw_accel,
        np.abs(yaw_rate) < cfg.max_abs_yaw_rate,
    )
    return bool(all(c.all() for c in checks))


def route_comfort(metric_info: Mapping[str, Mapping[str, Sequence[float]]], cfg: ComfortConfig = ComfortConfig()) -> float | None:
    """Share of passing ``cfg.chunk``-entry chunks of one route (entries ordered by step).

    Routes of at most one chunk are tested whole (1.0 or 0.0); a trailing partial chunk is dropped;
    None for a route with fewer than ``order + 1`` entries.
    """
    entries = [metric_info[k] for k in sorted(metric_info, key=int)]
    if len(entries) <= cfg.order:
        return None
    if len(entries) <= cfg.chunk:
        return 1.0 if _chunk_passes(entries, cfg) else 0.0
    chunks = [entries[i : i + cfg.chunk] for i in range(0, len(entries) - cfg.chunk + 1, cfg.chunk)]
    return sum(_chunk_passes(c, cfg) for c in chunks) / len(chunks)


def rescore(record: Mapping[str, Any], formula: Literal["2.0", "2.1"]) -> dict[str, float]:
    """The record's scores under ``formula`` (score_route kept; min speed carries no penalty)."""
    return scoring.route_scores(float(record["scores"]["score_route"]), record["infractions"], formula)


# ------------------------------------------------------------------------------------ metrics
@dataclass
class AbilityStat:
    success_rate: float | None  # %, None when no route of the ability is expected
    n_success: int
    n_routes: int
    n_missing: int


@dataclass
class Metrics:
    n_expected: int
    n_recorded: int
    missing: list[str]
    penalty_formula: str
    driving_score: float
    route_completion: float
    infraction_penalty: float
    success_rate: float  # %
    n_success: int
    abilities: dict[str, AbilityStat]
    ability_mean: float | None
    efficiency: float | None  # %
    efficiency_routes: int
    comfort: float | None  # %
    comfort_routes: int
    km_driven: float
    infractions_per_km: dict[str, float]
    status_counts: dict[str, int]
    duration_game_s: float
    duration_system_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["complete"] = self.complete
        return data


def compute_metrics(
    records: Sequence[Mapping[str, Any]],
    expected: Sequence[ExpectedRoute],
    metric_info_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] | None = None,
    penalty_formula: Literal["recorded", "2.0", "2.1"] = "recorded",
    comfort: ComfortConfig = ComfortConfig(),
    n_total: int | None = None,
) -> Metrics:
    """Metrics of ``records`` against the ``expected`` route x repetition list.

    ``n_total`` (routes x repetitions a bare results file says it covers, its ``progress[1]``)
    raises the denominator above ``len(expected)`` when routes are missing whose ids are unknown.
    Raises ValueError on a duplicate record or a record that is not expected (mixing runs of
    different route files must not pass silently).
    """
    if not expected:
        raise ValueError("no expected routes: cannot compute metrics")
    n = max(len(expected), int(n_total or 0))
    unknown_missing = n - len(expected)
    by_id: dict[str, Mapping[str, Any]] = {}
    for r in records:
        rid = r["route_id"]
        if rid in by_id:
            raise ValueError(f"route {rid} is recorded twice")
        by_id[rid] = r
    expected_ids = [e.record_id for e in expected]
    if len(set(expected_ids)) != len(expected_ids):
        raise ValueError("expected routes contain duplicates")
    unexpected = sorted(set(by_id) - set(expected_ids))
    if unexpected:
        raise ValueError(f"records not in the route file: {', '.join(unexpected[:10])}{' ...' if len(unexpected) > 10 else ''}")
    missing = [rid for rid in expected_ids if rid not in by_id]
    recs = [by_id[rid] for rid in expected_ids if rid in by_id]
    notes: list[str] = []

    def scores(r: Mapping[str, Any]) -> Mapping[str, float]:
        return r["scores"] if penalty_formula == "recorded" else rescore(r, penalty_formula)

    ds = sum(scores(r)["score_composed"] for r in recs) / n
    rc = sum(float(r["scores"]["score_route"]) for r in recs) / n
    ip = sum(scores(r)["score_penalty"] for r in recs) / n
    successes = {r["route_id"] for r in recs if is_success(r)}

    abilities: dict[str, AbilityStat] = {}
    for name in ABILITY_NAMES:
        members = []
        for e in expected:
            rec = by_id.get(e.record_id)
            groups = record_abilities(rec, e.scenario_type) if rec is not None else abilities_of(e.scenario_type, e.ability)
            if name in groups:
                members.append(e.record_id)
        ns = sum(1 for m in members if m in successes)
        nm = sum(1 for m in members if m not in by_id)
        abilities[name] = AbilityStat(100.0 * ns / len(members) if members else None, ns, len(members), nm)
    rated = [a.success_rate for a in abilities.values() if a.success_rate is not None]
    ability_mean = float(np.mean(rated)) if rated else None

    effs = [e for e in (route_efficiency(r) for r in recs) if e is not None]
    comforts: list[float] = []
    if metric_info_of is not None:
        no_info = 0
        for r in recs:
            info = metric_info_of(r)
            value = route_comfort(info, comfort) if info else None
            if value is None:
                no_info += 1
            else:
                comforts.append(value)
        if no_info:
            notes.append(f"comfort: {no_info} recorded route(s) have no usable metric_info and are left out")

    km = km_driven(recs)
    km_safe = max(km, 0.001)
    per_km = {}
    for key in scoring.INFRACTION_KEYS:
        if key == "outside_route_lanes":
            per_km[key] = sum(outside_lanes_km(r) for r in recs)  # km outside lanes (leaderboard)
        else:
            per_km[key] = sum(len(r["infractions"][key]) for r in recs) / km_safe
    status_counts: dict[str, int] = {}
    for r in recs:
        status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
    if unknown_missing:
        notes.insert(0, f"{unknown_missing} route(s) of the file's progress total are not recorded and their ids are "
                        f"unknown; pass --routes FILE to name them")
    if missing or unknown_missing:
        notes.insert(0, f"INCOMPLETE: {len(recs)} of {n} routes recorded; {len(missing) + unknown_missing} missing count as 0")
    return Metrics(
        n_expected=n,
        n_recorded=len(recs),
        missing=missing + [f"<unnamed route {k + 1} of the progress total>" for k in range(unknown_missing)],
        penalty_formula=penalty_formula,
        driving_score=ds,
        route_completion=rc,
        infraction_penalty=ip,
        success_rate=100.0 * len(successes) / n,
        n_success=len(successes),
        abilities=abilities,
        ability_mean=ability_mean,
        efficiency=float(np.mean(effs)) if effs else None,
        efficiency_routes=len(effs),
        comfort=100.0 * float(np.mean(comforts)) if comforts else None,
        comfort_routes=len(comforts),
        km_driven=km,
        infractions_per_km=per_km,
        status_counts=status_counts,
        duration_game_s=sum(float(r["meta"]["duration_game"]) for r in recs),
        duration_system_s=sum(float(r["meta"]["duration_system"]) for r in recs),
        notes=notes,
    )

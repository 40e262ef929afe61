"""The run's results file, ``RUN_DIR/results.json``, in the CARLA leaderboard results schema.

Layout (what ``statistics_manager.py`` of leaderboard-2.0 writes, so Bench2Drive's tools read ours)::

    {"_checkpoint": {"global_record": {...}, "progress": [done, total], "records": [record, ...]},
     "entry_status": "Started" | "Finished" | "Crashed" | "Rejected" | "Invalid",
     "eligible": bool, "sensors": ["carla_camera", ...], "values": [15 strings], "labels": [15 strings]}

A record holds index, route_id ("RouteScenario_<id>_rep<k>"), status, num_infractions, infractions
(all 12 keys, lists of messages), scores {score_route, score_penalty, score_composed}, meta
{route_length m, duration_game s, duration_system s}, save_name, scenario_name, town_name,
weather_id; and, ours, ability, seed, attempts and error (ignored by the leaderboard's tools).

The global record follows the leaderboard: ``scores_mean`` / ``scores_std_dev`` over the TOTAL
number of route x repetitions (missing and crashed routes count 0), ``infractions`` per km driven
(km driven = sum of route_length x score_route / 100; ``outside_route_lanes`` is the km driven
outside the route lanes, not divided), ``meta`` {total_length, duration_game, duration_system,
exceptions [[route_id, index, status], ...]}.

Only the harness's main process writes this file, atomically after every route.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from carla_eval import scoring
from carla_eval.atomic_io import atomic_write_json
from carla_eval.backend import RouteOutcome
from carla_eval.routes import RouteConfig

RESULTS_FILENAME = "results.json"
ROUND_DIGITS = 3
ROUND_DIGITS_SCORE = 6

ENTRY_STATUS_ELIGIBLE = {"Started": False, "Finished": True, "Rejected": False, "Crashed": False, "Invalid": False}

# Order of the leaderboard's "values"/"labels" arrays (leaderboard-2.0 statistics_manager).
GLOBAL_LABELS: tuple[tuple[str, str], ...] = (
    ("Avg. driving score", "score_composed"),
    ("Avg. route completion", "score_route"),
    ("Avg. infraction penalty", "score_penalty"),
    ("Collisions with pedestrians", "collisions_pedestrian"),
    ("Collisions with vehicles", "collisions_vehicle"),
    ("Collisions with layout", "collisions_layout"),
    ("Red lights infractions", "red_light"),
    ("Stop sign infractions", "stop_infraction"),
    ("Off-road infractions", "outside_route_lanes"),
    ("Route deviations", "route_dev"),
    ("Route timeouts", "route_timeout"),
    ("Agent blocked", "vehicle_blocked"),
    ("Yield emergency vehicles infractions", "yield_emergency_vehicle_infractions"),
    ("Scenario timeouts", "scenario_timeouts"),
    ("Min speed infractions", "min_speed_infractions"),
)

# Sensor type -> the leaderboard's icon name written in the top-level "sensors" list.
SENSOR_ICONS = {
    "sensor.camera.rgb": "carla_camera",
    "sensor.lidar.ray_cast": "carla_lidar",
    "sensor.other.radar": "carla_radar",
    "sensor.other.gnss": "carla_gnss",
    "sensor.other.imu": "carla_imu",
    "sensor.opendrive_map": "carla_opendrive_map",
    "sensor.speedometer": "carla_speedometer",
}

_OUTSIDE_METERS_RE = re.compile(r"for about\s+([-+]?\d+(?:\.\d+)?)\s+meters")
_RECORD_ID_RE = re.compile(r"^RouteScenario_(?P<route>.+)_rep(?P<rep>\d+)$")


class ResultsFileError(ValueError):
    """A results file cannot be used: unreadable, not JSON, not the schema, or inconsistent."""


# ------------------------------------------------------------------------------------ records
def parse_record_id(record_id: str) -> tuple[str, int]:
    """``"RouteScenario_3_rep1"`` -> ("3", 1). Raises ValueError on another shape."""
    m = _RECORD_ID_RE.match(record_id)
    if m is None:
        raise ValueError(f"not a leaderboard record id (RouteScenario_<id>_rep<k>): {record_id!r}")
    return m.group("route"), int(m.group("rep"))


def route_length(route: RouteConfig) -> float:
    """Length of the polyline through the route's waypoints (m); 0 for a malformed route."""
    pts = route.waypoints
    return float(sum(math.dist(a[:2], b[:2]) for a, b in zip(pts[:-1], pts[1:])))


def weather_id(route: RouteConfig) -> int | str | None:
    """Bench2Drive's weather id of a route: its ``weather_id`` attribute, else None (unknown).

    The harness matches routes without one against a weather table (``carla_eval.weather``)."""
    from carla_eval.weather import route_weather_id

    return route_weather_id(route)


def default_save_name(route: RouteConfig, repetition: int) -> str:
    """save_name for a route the backend never ran (harness-level failure)."""
    scenario = route.scenario_type or "NoScenario"
    town = route.town or "unknown"
    return f"{route.record_id(repetition)}_{town}_{scenario}_{weather_id(route)}"


def _rounded_scores(scores: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(scores[k]), ROUND_DIGITS_SCORE) for k in ("score_route", "score_penalty", "score_composed")}


def _num_infractions(infractions: Mapping[str, Sequence[str]]) -> int:
    return int(sum(len(v) for v in infractions.values()))


def record_from_outcome(
    outcome: RouteOutcome,
    index: int,
    *,
    penalty_formula: str = "2.0",
    seed: int,
    attempts: int,
    keep_backend_scores: bool = False,
) -> dict[str, Any]:
    """Leaderboard record of a route the backend ran to an outcome.

    Scores are recomputed from ``score_route`` and the infractions with ``penalty_formula``
    ("2.0" product, "2.1" 1/(1+sum)); min-speed events carry no penalty (Bench2Drive).
    ``keep_backend_scores`` keeps the backend's own scores instead (the CARLA leaderboard's,
    which may apply its min-speed penalty).
    """
    infractions = {k: [str(m) for m in outcome.infractions.get(k, [])] for k in scoring.INFRACTION_KEYS}
    unknown = set(outcome.infractions) - set(scoring.INFRACTION_KEYS)
    if unknown:
        raise ValueError(f"route {outcome.route.route_id}: unknown infraction keys from the backend: {sorted(unknown)}")
    rc = float(outcome.scores.get("score_route", 0.0))
    if keep_backend_scores:
        scores = {k: float(outcome.scores[k]) for k in ("score_route", "score_penalty", "score_composed")}
    else:
        scores = scoring.route_scores(min(max(rc, 0.0), 100.0), infractions, penalty_formula)  # type: ignore[arg-type]
    return {
        "index": int(index),
        "route_id": outcome.route.record_id(outcome.repetition),
        "status": outcome.status,
        "num_infractions": _num_infractions(infractions),
        "infractions": infractions,
        "scores": _rounded_scores(scores),
        "meta": {
            "route_length": round(float(outcome.route_length), ROUND_DIGITS),
            "duration_game": round(float(outcome.duration_game), ROUND_DIGITS),
            "duration_system": round(float(outcome.duration_system), ROUND_DIGITS),
        },
        "save_name": outcome.save_name,
        "scenario_name": outcome.scenario_name,
        "town_name": outcome.town_name,
        "weather_id": outcome.weather_id if outcome.weather_id is not None else weather_id(outcome.route),
        "ability": outcome.ability,
        "seed": int(seed),
        "attempts": int(attempts),
        "error": outcome.error,
        **({"recording": outcome.recording} if outcome.recording else {}),
    }


def failure_record(
    route: RouteConfig,
    repetition: int,
    index: int,
    *,
    status: str,
    error: str,
    seed: int,
    attempts: int,
    duration_system: float = 0.0,
    weather: int | str | None = None,
) -> dict[str, Any]:
    """Record of a route the harness could not get an outcome for (simulator crash, worker death,
    agent that cannot be loaded, malformed route): no completion, no infraction, DS 0."""
    return {
        "index": int(index),
        "route_id": route.record_id(repetition),
        "status": status,
        "num_infractions": 0,
        "infractions": scoring.empty_infractions(),
        "scores": {"score_route": 0.0, "score_penalty": 1.0, "score_composed": 0.0},
        "meta": {
            "route_length": round(route_length(route), ROUND_DIGITS),
            "duration_game": 0.0,
            "duration_system": round(float(duration_system), ROUND_DIGITS),
        },
        "save_name": default_save_name(route, repetition),
        "scenario_name": route.scenario_type,
        "town_name": route.town,
        "weather_id": weather if weather is not None else weather_id(route),
        "ability": "",
        "seed": int(seed),
        "attempts": int(attempts),
        "error": error,
    }


# ------------------------------------------------------------------------------ global record
def outside_lanes_km(record: Mapping[str, Any]) -> float:
    """Km driven outside the route lanes, read from the record's outside-lanes messages."""
    total_m = 0.0
    for msg in record["infractions"].get("outside_route_lanes", []):
        m = _OUTSIDE_METERS_RE.search(msg)
        if m is None:
            raise ValueError(f"{record.get('route_id')}: outside-lanes message without metres: {msg!r}")
        total_m += float(m.group(1))
    return total_m / 1000.0


def km_driven(records: Iterable[Mapping[str, Any]]) -> float:
    """Sum over records of route_length x route completion, in km (the leaderboard's denominator)."""
    return sum(r["meta"]["route_length"] / 1000.0 * r["scores"]["score_route"] / 100.0 for r in records)


def global_record(records: Sequence[Mapping[str, Any]], total: int) -> dict[str, Any]:
    """The leaderboard's global record over ``records`` with ``total`` routes x repetitions expected."""
    if total < 1:
        raise ValueError(f"total routes must be >= 1, got {total}")
    keys = ("score_composed", "score_route", "score_penalty")
    means = {k: sum(float(r["scores"][k]) for r in records) / total for k in keys}
    means = {k: round(v, ROUND_DIGITS_SCORE) for k, v in means.items()}
    if total == 1:
        std = {k: 0.0 for k in keys}
    else:
        std = {
            k: round(math.sqrt(sum((float(r["scores"][k]) - means[k]) ** 2 for r in records) / (total - 1)), ROUND_DIGITS)
            for k in keys
        }
    km = max(km_driven(records), 0.001)
    infractions: dict[str, float] = {}
    for key in scoring.INFRACTION_KEYS:
        if key == "outside_route_lanes":
            infractions[key] = round(sum(outside_lanes_km(r) for r in records), ROUND_DIGITS)
        else:
            infractions[key] = round(sum(len(r["infractions"][key]) for r in records) / km, ROUND_DIGITS)
    status = "Perfect"
    exceptions: list[list[Any]] = []
    for r in sorted(records, key=lambda r: r["index"]):
        if "Failed" in r["status"]:
            status = "Failed"
            exceptions.append([r["route_id"], r["index"], r["status"]])
        elif status == "Perfect" and r["status"] != "Perfect":
            status = r["status"]
    return {
        "index": -1,
        "route_id": -1,
        "status": status,
        "infractions": infractions,
        "scores_mean": means,
        "scores_std_dev": std,
        "meta": {
            "total_length": round(sum(r["meta"]["route_length"] for r in records), ROUND_DIGITS),
            "duration_game": round(sum(r["meta"]["duration_game"] for r in records), ROUND_DIGITS),
            "duration_system": round(sum(r["meta"]["duration_system"] for r in records), ROUND_DIGITS),
            "exceptions": exceptions,
        },
    }


def global_values(global_rec: Mapping[str, Any]) -> list[str]:
    """The leaderboard's top-level "values" (strings, same order as ``GLOBAL_LABELS``)."""
    out = []
    for _, key in GLOBAL_LABELS:
        if key.startswith("score_"):
            out.append(str(global_rec["scores_mean"][key]))
        else:
            out.append(str(global_rec["infractions"][key]))
    return out


def entry_status(records: Sequence[Mapping[str, Any]], total: int) -> str:
    """Started until every route is recorded; then Crashed if a simulation crashed, Rejected if the
    agent's sensors were invalid, else Finished (the leaderboard's rule)."""
    if len(records) < total:
        return "Started"
    status = "Finished"
    for r in records:
        if scoring.STATUS_SIM_CRASH in r["status"]:
            status = "Crashed"
        elif "Agent's sensors were invalid" in r["status"]:
            status = "Rejected"
    return status


def sensor_icons(sensors: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The leaderboard's "sensors" list for an agent's ``sensors()`` specs."""
    return [SENSOR_ICONS.get(str(s.get("type")), str(s.get("type"))) for s in (sensors or [])]


# ------------------------------------------------------------------------------------ schema
def results_schema() -> dict[str, Any]:
    """The JSON schema of a results file (carla_eval/schemas/results.schema.json)."""
    text = resources.files("carla_eval.schemas").joinpath("results.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def validate_results(data: Any, where: str = "results") -> None:
    """Raise ResultsFileError when ``data`` does not follow the results schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(results_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = "/".join(str(p) for p in first.absolute_path) or "<root>"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ResultsFileError(f"{where}: does not follow the results schema at {path}: {first.message}{more}")


# ------------------------------------------------------------------------------------- store
def read_json_results(path: str | Path) -> Any:
    """The JSON of a results-like file; a missing, empty or broken file is a ResultsFileError."""
    path = Path(path)
    if not path.is_file():
        raise ResultsFileError(f"results file not found: {path}")
    raw = path.read_bytes()
    if not raw.strip():
        raise ResultsFileError(f"results file {path} is empty (half-written or truncated)")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"results file {path} is not valid JSON ({exc}); it may be half-written") from exc


def read_results_file(path: str | Path) -> dict[str, Any]:
    """Load and validate a results file; every problem is a ResultsFileError naming the file."""
    data = read_json_results(path)
    validate_results(data, where=str(path))
    seen: set[str] = set()
    for rec in data["_checkpoint"]["records"]:
        if rec["route_id"] in seen:
            raise ResultsFileError(f"results file {path} holds route {rec['route_id']} twice")
        seen.add(rec["route_id"])
    return data


@dataclass
class ResultsStore:
    """The records of one run, keyed by record id, and the file they live in.

    ``expected`` is the ordered list of record ids of the run (route file order, repetitions
    inner); a record's ``index`` is its position there.
    """

    path: Path
    expected: list[str]
    records: dict[str, dict[str, Any]]
    sensors: list[str]
    index_repairs: list[dict[str, Any]] = field(default_factory=list)  # set by load()

    @classmethod
    def create(cls, path: str | Path, expected: Sequence[str]) -> "ResultsStore":
        if len(set(expected)) != len(expected):
            raise ValueError("expected record ids must be unique")
        return cls(Path(path), list(expected), {}, [])

    @classmethod
    def load(cls, path: str | Path, expected: Sequence[str]) -> "ResultsStore":
        """Read an existing results file of a run that expects ``expected`` record ids.

        A record whose ``index`` is not its route's position in the run is repaired in memory (the
        route id decides); ``index_repairs`` lists them ({route_id, recorded, repaired})."""
        data = read_results_file(path)
        store = cls.create(path, expected)
        position = {rid: i for i, rid in enumerate(store.expected)}
        for rec in data["_checkpoint"]["records"]:
            if rec["route_id"] not in position:
                raise ResultsFileError(
                    f"results file {path} holds {rec['route_id']}, which is not part of this run "
                    f"(route file, subset or repetitions differ)"
                )
            want = position[rec["route_id"]]
            if rec["index"] != want:
                store.index_repairs.append({"route_id": rec["route_id"], "recorded": rec["index"], "repaired": want})
                rec = {**rec, "index": want}
            store.records[rec["route_id"]] = rec
        store.sensors = list(data.get("sensors", []))
        return store

    @property
    def total(self) -> int:
        return len(self.expected)

    def index_of(self, record_id: str) -> int:
        return self.expected.index(record_id)

    def pending(self) -> list[str]:
        """Record ids not recorded yet, in run order."""
        return [rid for rid in self.expected if rid not in self.records]

    def add(self, record: Mapping[str, Any]) -> None:
        """Add one record; a second record for the same route is a programming error."""
        rid = record["route_id"]
        if rid not in set(self.expected):
            raise ValueError(f"record {rid} is not part of this run")
        if rid in self.records:
            raise ValueError(f"route {rid} is already recorded (each route x repetition is recorded once)")
        self.records[rid] = dict(record)

    def ordered_records(self) -> list[dict[str, Any]]:
        return sorted(self.records.values(), key=lambda r: r["index"])

    def to_json(self) -> dict[str, Any]:
        records = self.ordered_records()
        g = global_record(records, self.total)
        status = entry_status(records, self.total)
        return {
            "_checkpoint": {"global_record": g, "progress": [len(records), self.total], "records": records},
            "entry_status": status,
            "eligible": ENTRY_STATUS_ELIGIBLE[status],
            "sensors": list(self.sensors),
            "values": global_values(g),
            "labels": [label for label, _ in GLOBAL_LABELS],
        }

    def save(self) -> None:
        """Write the whole file atomically (temp file in the same folder, fsync, rename)."""
        atomic_write_json(self.path, self.to_json())

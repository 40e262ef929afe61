"""Results files written by other tools, read as carla-eval records (``carla-eval metrics FILE``).

Three formats besides our own ``results.json`` (docs/leaderboard.md gives the upstream sources):

- **Leaderboard 2.0 checkpoint** (``leaderboard/utils/statistics_manager.py``, branch
  leaderboard-2.0): ``_checkpoint.records[]`` with index, route_id, status, num_infractions,
  infractions (12 keys), scores, meta, and no save_name / scenario_name / town_name / weather_id.
  ``_checkpoint.progress`` is ``[routes done, total routes x repetitions]``.
- **Bench2Drive checkpoint** (Bench2Drive's copy of that file): the same, plus ``scenario_name``
  (the scenario's *name*, e.g. ``ParkedObstacle_1``, not its type), ``weather_id`` (a STRING read
  from ``leaderboard/data/weather.xml``, or null when no case matches), ``save_name`` and
  ``town_name``.
- **Bench2Drive merged file** (``tools/merge_route_json.py``): ``{"_checkpoint": {"records": [...]},
  "driving score", "success rate", "eval num"}``; records lose their ``index`` and are sorted by
  route_id, descending; no entry_status, progress, sensors, values or labels.

:func:`load_results_any` turns any of them into a results dict that follows our schema: weather ids
that are numbers become integers, records get their position as ``index`` when they have none,
and the missing top-level fields are filled in (``entry_status`` from the records). ``total`` is
the number of routes x repetitions the file says it covers (``progress[1]``), when it says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from carla_eval.results import (
    ENTRY_STATUS_ELIGIBLE,
    GLOBAL_LABELS,
    ResultsFileError,
    entry_status,
    read_json_results,
    validate_results,
)

FORMAT_CARLA_EVAL = "carla-eval"
FORMAT_LEADERBOARD = "leaderboard-2.0"
FORMAT_BENCH2DRIVE = "bench2drive"
FORMAT_B2D_MERGED = "bench2drive-merged"

_SCENARIO_INDEX_RE = re.compile(r"^(?P<type>.+?)_\d+$")


@dataclass
class LoadedResults:
    data: dict[str, Any]  # follows carla_eval/schemas/results.schema.json
    format: str
    total: int | None  # routes x repetitions the file covers (progress[1]), None when unknown


def scenario_type_of_name(name: str | None) -> str:
    """Scenario type of a Bench2Drive scenario *name*: ``ParkedObstacle_1`` -> ``ParkedObstacle``.

    Bench2Drive names a route's scenario ``<type>_<n>``; a name without that suffix is returned as is.
    """
    if not name:
        return ""
    m = _SCENARIO_INDEX_RE.match(str(name))
    return m.group("type") if m else str(name)


def normalise_weather_id(value: Any) -> int | str | None:
    """Bench2Drive writes weather ids as strings ("15"); numbers become ints, None stays None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text in ("", "None", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        return text


def detect_format(data: Mapping[str, Any]) -> str:
    records = data["_checkpoint"]["records"]
    if "entry_status" not in data and ("eval num" in data or "driving score" in data
                                       or any("index" not in r for r in records)):
        return FORMAT_B2D_MERGED
    if any("attempts" in r or "seed" in r for r in records):
        return FORMAT_CARLA_EVAL
    if any("save_name" in r for r in records):
        return FORMAT_BENCH2DRIVE
    return FORMAT_LEADERBOARD


def normalise_results(data: Any, where: str = "results") -> LoadedResults:
    """See the module docstring. Raises ResultsFileError naming what does not fit."""
    if not isinstance(data, dict):
        raise ResultsFileError(f"{where}: top level is a {type(data).__name__}, not an object")
    checkpoint = data.get("_checkpoint")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("records"), list):
        raise ResultsFileError(f"{where}: no _checkpoint.records list (not a leaderboard / Bench2Drive results file)")
    for i, rec in enumerate(checkpoint["records"]):
        if not isinstance(rec, dict):
            raise ResultsFileError(f"{where}: _checkpoint.records[{i}] is not an object")
    fmt = detect_format(data)
    records = []
    for position, rec in enumerate(checkpoint["records"]):
        out = dict(rec)
        if "index" not in out:
            out["index"] = position
        if "weather_id" in out:
            out["weather_id"] = normalise_weather_id(out["weather_id"])
        records.append(out)
    progress = checkpoint.get("progress")
    total = None
    if isinstance(progress, list) and len(progress) == 2 and all(isinstance(p, int) for p in progress):
        total = int(progress[1])
    else:
        progress = [len(records), len(records)]
    status = data.get("entry_status")
    if status not in ENTRY_STATUS_ELIGIBLE:
        status = entry_status(records, len(records))
    normalised = {
        "_checkpoint": {"global_record": checkpoint.get("global_record") or {}, "progress": progress, "records": records},
        "entry_status": status,
        "eligible": bool(data.get("eligible", ENTRY_STATUS_ELIGIBLE[status])),
        "sensors": list(data.get("sensors") or []),
        "values": [str(v) for v in data.get("values") or []],
        "labels": [str(v) for v in data.get("labels") or [label for label, _ in GLOBAL_LABELS]],
    }
    validate_results(normalised, where=f"{where} ({fmt} format)")
    seen: set[str] = set()
    for rec in records:
        if rec["route_id"] in seen:
            raise ResultsFileError(f"{where}: route {rec['route_id']} is recorded twice")
        seen.add(rec["route_id"])
    return LoadedResults(normalised, fmt, total)


def load_results_any(path: str | Path) -> LoadedResults:
    """Read a results / checkpoint / merged file of any supported format (see the module docstring)."""
    return normalise_results(read_json_results(path), where=str(path))

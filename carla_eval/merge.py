"""Gather the records of one or several runs (e.g. split runs) and the route list they should cover.

``carla-eval metrics RUN_DIR... [--routes FILE]`` reads each ``results.json`` (validated), refuses a
route recorded in two runs, and builds the expected route x repetition list from ``--routes`` or,
without it, from the route file named in the runs' manifests (which must agree and be unchanged).
Metrics then divide by that full list, so a missing split shows up as missing routes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from carla_eval.manifest import ManifestError, RunManifest
from carla_eval.metrics import ExpectedRoute
from carla_eval.results import RESULTS_FILENAME, parse_record_id, read_results_file
from carla_eval.routes import parse_routes_file, routes_fingerprint, select_routes

METRIC_INFO_DIRNAME = "metric_info"


class MetricsInputError(ValueError):
    """The runs given to ``carla-eval metrics`` cannot be combined."""


@dataclass
class RunData:
    run_dir: Path
    results: dict[str, Any]
    manifest: RunManifest | None


@dataclass
class MergedRuns:
    records: list[dict[str, Any]]
    expected: list[ExpectedRoute]
    metric_info_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None]
    notes: list[str] = field(default_factory=list)


def load_run(path: str | Path) -> RunData:
    """A run folder (results.json + run_manifest.json) or a bare leaderboard results JSON file."""
    path = Path(path)
    if path.is_file():
        return RunData(path.parent, read_results_file(path), None)
    if not path.is_dir():
        raise MetricsInputError(f"no run folder or results file at {path}")
    results = read_results_file(path / RESULTS_FILENAME)
    try:
        manifest = RunManifest.load(path)
    except ManifestError:
        manifest = None
    return RunData(path, results, manifest)


def sandbox_ability(scenario_type: str) -> str:
    """The sandbox's ability of a scenario type ('' for other types or without the sandbox)."""
    try:
        from carla_eval.sandbox import SCENARIO_ABILITIES
    except Exception:
        return ""
    return SCENARIO_ABILITIES.get(scenario_type, "")


def expected_from_routes(routes_file: str | Path, subset: str | None, repetitions: int) -> list[ExpectedRoute]:
    """Every route x repetition of a route file (malformed routes included: they are expected too)."""
    routes = select_routes(parse_routes_file(routes_file), subset)
    return [
        ExpectedRoute(r.record_id(k), r.scenario_type, "")
        for r in routes
        for k in range(repetitions)
    ]


def merge_runs(
    paths: list[str | Path],
    routes_file: str | Path | None = None,
    subset: str | None = None,
    repetitions: int | None = None,
) -> MergedRuns:
    if not paths:
        raise MetricsInputError("give at least one run folder")
    runs = [load_run(p) for p in paths]
    records: list[dict[str, Any]] = []
    owner: dict[str, Path] = {}
    duplicates: list[str] = []
    for run in runs:
        for rec in run.results["_checkpoint"]["records"]:
            rid = rec["route_id"]
            if rid in owner:
                duplicates.append(f"{rid} (in {owner[rid]} and {run.run_dir})")
            owner[rid] = run.run_dir
            records.append(rec)
    if duplicates:
        raise MetricsInputError("routes recorded in more than one run:\n  " + "\n  ".join(duplicates))
    notes: list[str] = []
    manifests = [r.manifest for r in runs if r.manifest is not None]
    if repetitions is None:
        reps = {m.identity.get("repetitions", 1) for m in manifests}
        if len(reps) > 1:
            raise MetricsInputError(f"runs use different repetition counts {sorted(reps)}; pass --repetitions")
        repetitions = reps.pop() if reps else max([parse_record_id(r["route_id"])[1] + 1 for r in records] or [1])
    if routes_file is None and manifests:
        fingerprints = {m.identity["routes_fingerprint"] for m in manifests}
        if len(fingerprints) > 1:
            raise MetricsInputError("runs were made with different route files; pass --routes FILE")
        fingerprint = fingerprints.pop()
        candidates = sorted({m.identity["routes_file"] for m in manifests})
        usable = [p for p in candidates if Path(p).is_file() and routes_fingerprint(p) == fingerprint]
        if not usable:
            raise MetricsInputError(
                f"the runs' route file ({', '.join(candidates)}) is gone or changed since the runs; pass --routes FILE"
            )
        routes_file = usable[0]
    if routes_file is not None:
        expected = expected_from_routes(routes_file, subset, repetitions)
        # a missing route has no record to name its ability: look it up by scenario type
        expected = [e if e.record_id in owner else ExpectedRoute(e.record_id, e.scenario_type, sandbox_ability(e.scenario_type))
                    for e in expected]
    else:
        notes.append("no route file known (bare results file): missing routes cannot be detected")
        expected = [ExpectedRoute(r["route_id"], str(r.get("scenario_name") or ""), str(r.get("ability") or "")) for r in records]

    def metric_info_of(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
        run_dir = owner.get(record["route_id"])
        name = record.get("save_name")
        if run_dir is None or not name:
            return None
        path = run_dir / METRIC_INFO_DIRNAME / str(name) / "metric_info.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    return MergedRuns(records, expected, metric_info_of, notes)

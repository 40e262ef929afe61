"""Gather the records of one or several runs (e.g. split runs) and the route list they should cover.

``carla-eval metrics RUN_DIR|FILE... [--routes FILE] [--metric-info DIR]`` reads each run's
``results.json`` (validated) or a results file of any supported format (Leaderboard 2.0 or
Bench2Drive checkpoints, Bench2Drive's merged.json: :mod:`carla_eval.result_formats`), refuses a
route recorded in two runs, and builds the expected route x repetition list from ``--routes`` or,
without it, from the route file named in the runs' manifests (which must agree and be unchanged).
Metrics then divide by that full list, so a missing split shows up as missing routes. Without any
route file, the total is the files' ``progress`` total when they give one.

metric_info (comfort) is looked up in ``RUN_DIR/metric_info/<save_name>/metric_info.json`` and in
every ``--metric-info DIR`` as ``DIR/<save_name>/metric_info.json`` (Bench2Drive's ``SAVE_PATH``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from carla_eval.manifest import ManifestError, RunManifest
from carla_eval.metrics import ExpectedRoute
from carla_eval.result_formats import FORMAT_CARLA_EVAL, load_results_any
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
    format: str = FORMAT_CARLA_EVAL
    total: int | None = None  # progress total of a bare results file


@dataclass
class MergedRuns:
    records: list[dict[str, Any]]
    expected: list[ExpectedRoute]
    metric_info_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None]
    notes: list[str] = field(default_factory=list)
    n_total: int | None = None  # denominator when no route file names every route


def load_run(path: str | Path) -> RunData:
    """A run folder (results.json + run_manifest.json) or a bare leaderboard results JSON file."""
    path = Path(path)
    if path.is_file():
        loaded = load_results_any(path)
        return RunData(path.parent, loaded.data, None, loaded.format, loaded.total)
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
    metric_info_dirs: list[str | Path] | None = None,
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
        totals = [r.total for r in runs if r.total is not None]
        n_total = sum(totals) if len(totals) == len(runs) else None
        notes.append("no route file known (bare results file): missing routes cannot be named; pass --routes FILE")
        expected = [ExpectedRoute(r["route_id"], "", str(r.get("ability") or "")) for r in records]
        return MergedRuns(records, expected, _metric_info_lookup(owner, metric_info_dirs), notes,
                          n_total if n_total and n_total > len(records) else None)
    return MergedRuns(records, expected, _metric_info_lookup(owner, metric_info_dirs), notes)


def _metric_info_lookup(owner: Mapping[str, Path], extra_dirs: list[str | Path] | None
                        ) -> Callable[[Mapping[str, Any]], Mapping[str, Any] | None]:
    dirs = [Path(d) for d in extra_dirs or []]
    for d in dirs:
        if not d.is_dir():
            raise MetricsInputError(f"--metric-info {d}: no such folder")

    def metric_info_of(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
        run_dir = owner.get(record["route_id"])
        name = record.get("save_name")
        if not name:
            return None
        candidates = [run_dir / METRIC_INFO_DIRNAME / str(name) / "metric_info.json"] if run_dir is not None else []
        candidates += [d / str(name) / "metric_info.json" for d in dirs]
        for path in candidates:
            if path.is_file():
                try:
                    return json.loads(path.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return None
        return None

    return metric_info_of

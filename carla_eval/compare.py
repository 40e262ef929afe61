"""``carla-eval compare``: models side by side over seeds, from their run folders.

    carla-eval compare --model ik-tiny runs/ik_s0 runs/ik_s1 runs/ik_s2 \\
                       --model shortcut-tiny runs/sc_s0 runs/sc_s1 runs/sc_s2 [--per-route] [--json F]

Each folder is one ``carla-eval run`` of one model at one seed (the seed is read from the run's
manifest); its metrics are those of ``carla-eval metrics`` on that folder alone. A model's line
gives the driving score per seed, their mean and sample standard deviation, the mean route
completion and the successes per ability summed over the seeds. ``--per-route`` adds one line per
route: each model's driving score per seed. Every folder of one model must cover the same routes,
and so must the models, or the comparison is refused with the differing routes named.

:func:`summarize` is also the evaluation record of the DAgger loop (``training.dagger``), and
:func:`markdown_table` its printed table (``training.dagger_plot``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from carla_eval.metrics import Metrics


class CompareError(ValueError):
    """The run folders cannot be compared (unreadable, unfinished, or not covering the same routes)."""


def seed_summary(metrics: "Metrics", records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One seed's evaluation from its metrics and route records: DS and RC (%), successes,
    ``[successes, routes]`` per ability with routes, the status counts and each route's DS
    (``route_ds``, by route id)."""
    return {
        "ds": round(float(metrics.driving_score), 2),
        "rc": round(float(metrics.route_completion), 2),
        "success": metrics.n_success,
        "abilities": {k: [a.n_success, a.n_routes] for k, a in metrics.abilities.items() if a.n_routes},
        "statuses": dict(metrics.status_counts),
        "route_ds": {str(r["route_id"]): round(float(r["scores"]["score_composed"]), 2) for r in records},
    }


def summarize(per_seed: Mapping[str, Mapping[str, Any]], runs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A model's evaluation over seeds from its :func:`seed_summary` per seed (keys: the seeds):
    ``ds`` per seed, ``ds_mean``, ``ds_sd`` (sample sd; None with one seed), ``runs`` and ``per_seed``."""
    if not per_seed:
        raise CompareError("no seed to summarize")
    scores = {str(s): float(d["ds"]) for s, d in per_seed.items()}
    values = list(scores.values())
    return {"ds": scores, "ds_mean": round(statistics.fmean(values), 2),
            "ds_sd": round(statistics.stdev(values), 2) if len(values) > 1 else None,
            "runs": dict(runs or {}), "per_seed": {str(s): dict(d) for s, d in per_seed.items()}}


def markdown_table(rows: Sequence[tuple[Sequence[str], Mapping[str, Any]]], lead: Sequence[str] = ("model",)) -> str:
    """A markdown table, one line per ``(lead cells, summary)``: the ``lead`` columns, DS per seed,
    DS mean ± sd, mean RC % and the successes per ability summed over the seeds."""
    abilities = sorted({a for _, r in rows for d in r.get("per_seed", {}).values() for a in d["abilities"]})
    lines = ["| " + " | ".join(lead) + " | DS per seed | DS mean ± sd | RC % | " + " | ".join(abilities) + " |",
             "|" + "---|" * len(lead) + "---|---:|---:|" + "---:|" * len(abilities)]
    for cells, r in rows:
        seeds = r.get("per_seed", {})
        per = {a: [sum(d["abilities"].get(a, [0, 0])[j] for d in seeds.values()) for j in (0, 1)] for a in abilities}
        rc = statistics.fmean(d["rc"] for d in seeds.values()) if seeds else math.nan
        sd = "" if r.get("ds_sd") is None else f" ± {r['ds_sd']:.2f}"
        lines.append("| " + " | ".join(cells) + f" | {' / '.join(f'{v:.2f}' for v in r['ds'].values())} "
                     f"| {r['ds_mean']:.2f}{sd} | {rc:.1f} | "
                     + " | ".join(f"{s}/{n}" if n else "" for s, n in per.values()) + " |")
    return "\n".join(lines)


def per_route_table(models: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table of each route's DS per model and seed (``a / b / c``) and its mean."""
    route_ids: list[str] = []
    for r in models.values():
        for d in r["per_seed"].values():
            for rid in d.get("route_ds", {}):  # dagger.json states of earlier loops lack route_ds
                if rid not in route_ids:
                    route_ids.append(rid)
    lines = ["| route | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for rid in route_ids:
        cells = []
        for r in models.values():
            values = [d["route_ds"][rid] for d in r["per_seed"].values() if rid in d.get("route_ds", {})]
            cells.append(f"{' / '.join(f'{v:.1f}' for v in values)} ({statistics.fmean(values):.1f})" if values else "")
        lines.append(f"| {rid} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_folder(run_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """``(seed, seed_summary)`` of one finished run folder, against the routes it was run on (its
    manifest's route file, subset and repetitions); raises :class:`CompareError` when it cannot be
    read or misses routes."""
    from carla_eval.manifest import ManifestError, RunManifest
    from carla_eval.merge import MetricsInputError, merge_runs
    from carla_eval.metrics import compute_metrics
    from carla_eval.results import ResultsFileError

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompareError(f"{run_dir}: no run folder")
    try:
        identity = RunManifest.load(run_dir).identity
        seed, subset, repetitions = str(identity["seed"]), identity.get("routes_subset"), identity.get("repetitions")
    except (ManifestError, KeyError) as exc:
        raise CompareError(f"{run_dir}: no run manifest with the seed ({exc})") from exc
    try:
        merged = merge_runs([run_dir], subset=subset, repetitions=repetitions)
        metrics = compute_metrics(merged.records, merged.expected, merged.metric_info_of, n_total=merged.n_total)
    except (MetricsInputError, ResultsFileError, ValueError) as exc:
        raise CompareError(f"{run_dir}: {exc}") from exc
    if not metrics.complete:
        raise CompareError(f"{run_dir}: unfinished, {len(metrics.missing)} route(s) not recorded "
                           f"({', '.join(metrics.missing[:5])}{' ...' if len(metrics.missing) > 5 else ''})")
    return seed, seed_summary(metrics, merged.records)


def compare(models: Sequence[tuple[str, Sequence[str | Path]]]) -> dict[str, dict[str, Any]]:
    """``{model name: summarize(...)}`` of the named models' run folders (one per seed)."""
    out: dict[str, dict[str, Any]] = {}
    reference: tuple[str, set[str]] | None = None
    for name, folders in models:
        if name in out:
            raise CompareError(f"model {name!r} is named twice")
        if not folders:
            raise CompareError(f"model {name!r}: no run folder")
        per_seed: dict[str, dict[str, Any]] = {}
        runs: dict[str, str] = {}
        for folder in folders:
            seed, summary = evaluate_folder(folder)
            if seed in per_seed:
                raise CompareError(f"model {name!r}: seed {seed} in both {runs[seed]} and {folder}")
            routes = set(summary["route_ds"])
            if reference is None:
                reference = (f"{name} {folder}", routes)
            elif routes != reference[1]:
                extra, lacking = sorted(routes - reference[1]), sorted(reference[1] - routes)
                raise CompareError(f"{folder} ({name}) does not cover the routes of {reference[0]}: "
                                   f"extra {extra[:5]}, missing {lacking[:5]}")
            per_seed[seed], runs[seed] = summary, str(folder)
        out[name] = summarize(per_seed, runs)
    return out


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="carla-eval compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", action="append", required=True, metavar=("NAME", "RUN_DIR"),
                        help="a model's name, then its run folders (one per seed); repeatable")
    parser.add_argument("--per-route", action="store_true", help="also print each route's DS per model and seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the summaries here (atomic)")
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Print the comparison of ``args`` (from :func:`build_parser`); 0, or 2 on a comparison error."""
    from carla_eval.atomic_io import atomic_write_json

    bad = [m[0] for m in args.model if len(m) < 2]
    if bad:
        print(f"carla-eval compare: --model {bad[0]} names no run folder", file=sys.stderr)
        return 2
    try:
        result = compare([(m[0], m[1:]) for m in args.model])
    except CompareError as exc:
        print(f"carla-eval compare: {exc}", file=sys.stderr)
        return 2
    print(markdown_table([([name], r) for name, r in result.items()]))
    if args.per_route:
        print()
        print(per_route_table(result))
    if args.json is not None:
        atomic_write_json(args.json, result)
    return 0

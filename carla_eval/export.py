"""``carla-eval export RUN_DIR... --out DIR``: a folder that Bench2Drive's tools read as they are.

A run folder cannot be given to Bench2Drive's ``tools/merge_route_json.py``: it loads every
``*.json`` of the folder as a checkpoint, and ``run_manifest.json`` / ``metrics.json`` have no
``_checkpoint``. The export folder holds only what those tools read::

    DIR/<run name>.json                      the run's results (one checkpoint file per run)
    DIR/<save_name>/metric_info.json         per-route metric_info (the SAVE_PATH layout)

Then, from the Bench2Drive root::

    python tools/merge_route_json.py -f DIR                     # writes DIR/merged.json
    python tools/ability_benchmark.py -r DIR/merged.json        # needs CARLA's maps (Traffic_Signs)
    python tools/efficiency_smoothness_benchmark.py -f DIR/merged.json -m DIR

Bench2Drive's efficiency tool opens metric_info.json for EVERY record and stops on the first one it
cannot find; :class:`ExportSummary` lists those routes (typically routes the harness gave up on).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from carla_eval.atomic_io import atomic_write_json
from carla_eval.merge import METRIC_INFO_DIRNAME, MetricsInputError, load_run


@dataclass
class ExportSummary:
    out_dir: Path
    checkpoints: list[Path] = field(default_factory=list)
    metric_info: int = 0
    without_metric_info: list[str] = field(default_factory=list)  # route ids


def export_bench2drive(runs: list[str | Path], out_dir: str | Path) -> ExportSummary:
    """Write the export folder (see the module docstring). ``out_dir`` must not hold other JSON files."""
    out = Path(out_dir)
    if out.exists() and any(p.suffix == ".json" for p in out.iterdir()):
        raise MetricsInputError(f"{out} already holds JSON files; Bench2Drive's merge tool would read them too: "
                                f"use an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary(out)
    names: set[str] = set()
    for run_path in runs:
        run = load_run(run_path)
        base = Path(run_path).stem if Path(run_path).is_file() else Path(run_path).resolve().name
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.add(name)
        target = out / f"{name}.json"
        atomic_write_json(target, run.results)
        summary.checkpoints.append(target)
        for rec in run.results["_checkpoint"]["records"]:
            save_name = str(rec.get("save_name") or "")
            src = run.run_dir / METRIC_INFO_DIRNAME / save_name / "metric_info.json"
            if save_name and src.is_file():
                dst = out / save_name / "metric_info.json"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                summary.metric_info += 1
            else:
                summary.without_metric_info.append(str(rec["route_id"]))
    return summary

"""Write grounding-probe results: JSON, a markdown table and PNG plots.

Files in ``out_dir``: ``probe.json`` (summaries per model and variant, plus settings),
``probe.md`` (the table), ``probe.png`` (bars: mean 3 s change per variant; deceleration ratio and
mean endpoint change for the insertions) and ``probe_examples.png`` (one frame per insertion).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from training.grounding import INSERTIONS, VARIANTS, ProbeConfig, ProbeResult

LABELS = {
    "blank": "image blanked",
    "insert_near": "vehicle inserted, near",
    "insert_far": "vehicle inserted, far",
    "insert_offroad": "vehicle inserted, off-road (control)",
    "insert_sky": "vehicle inserted, in the sky (control)",
    "speed_up": "ego speed + delta",
    "speed_down": "ego speed - delta",
}


def markdown_table(results: dict[str, ProbeResult], cfg: ProbeConfig) -> str:
    """One row per (model, variant): mean 3 s change, deceleration ratio, mean endpoint change."""
    lines = [
        f"Frames: {int(next(iter(results.values())).summary['blank']['frames'])}; plans = mean of {cfg.samples} "
        f"samples; near {cfg.near_m:g} m, far {cfg.far_m:g} m, off-road {cfg.offroad_lateral_m:g} m to the side; "
        f"speed delta {cfg.speed_delta:g} m/s.",
        "",
        "| model | probe | mean L2 at 3 s (m) | deceleration ratio | mean 3 s endpoint change (m) |",
        "|---|---|---:|---:|---:|",
    ]
    for label, res in results.items():
        for v in [v for v in VARIANTS if v in res.summary]:
            s = res.summary[v]
            lines.append(f"| {label} | {LABELS[v]} | {s['mean_l2_3s']:.3f} | {100 * s['decel_ratio']:.1f}% | "
                         f"{s['mean_endpoint_change']:+.3f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, ProbeResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    width = 0.8 / max(1, len(labels))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [
        (axes[0], VARIANTS, "mean_l2_3s", "mean change of the 3 s waypoint (m)", 1.0),
        (axes[1], INSERTIONS, "decel_ratio", "deceleration ratio (%)", 100.0),
        (axes[2], INSERTIONS, "mean_endpoint_change", "mean 3 s endpoint change (m)", 1.0),
    ]
    present = set.intersection(*(set(r.summary) for r in results.values()))
    for ax, variants, key, title, scale in panels:
        variants = [v for v in variants if v in present]
        x = np.arange(len(variants))
        for i, label in enumerate(labels):
            vals = [results[label].summary[v][key] * scale for v in variants]
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=label)
        ax.set_xticks(x)
        ax.set_xticklabels([v.replace("insert_", "ins. ").replace("_", " ") for v in variants], rotation=20)
        ax.set_title(title)
        ax.axhline(0.0, color="k", linewidth=0.5)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_examples(examples: dict[str, np.ndarray], path: Path) -> None:
    """``examples``: variant -> [H, W, 3] uint8 image, drawn side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(examples), figsize=(3 * len(examples), 3.2))
    for ax, (name, img) in zip(np.atleast_1d(axes), examples.items()):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(results: dict[str, ProbeResult], cfg: ProbeConfig, out_dir: str | Path,
                 examples: dict[str, np.ndarray] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write the files listed in the module doc; returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "models": {label: {"summary": r.summary} for label, r in results.items()},
        **(extra or {}),
    }
    (out / "probe.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (out / "probe.md").write_text(markdown_table(results, cfg))
    plot(results, out / "probe.png")
    if examples:
        plot_examples(examples, out / "probe_examples.png")
    return out

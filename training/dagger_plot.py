"""``python -m training.dagger_plot``: driving score per DAgger iteration, from ``dagger.json``.

    python -m training.dagger_plot runs/dagger/dagger.json --out docs/img/dagger_ds.png

Iteration 0 on the x axis is the initial models (before any on-policy data); iteration ``i + 1``
is the models fine-tuned in loop iteration ``i``. It also prints every evaluation as a markdown
table, with the successes per ability. Each model is a line of its mean DS over the
evaluation seeds, with the seed-to-seed sd as error bars; the expert's DS and 80 % of it are
horizontal lines. Only iterations with a finished evaluation are drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _evaluations(state: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """``[(x, {model name: evaluation})]``: x = 0 the initial models, x = i + 1 loop iteration i."""
    rows = [(0, state.get("initial_eval") or {})]
    return rows + [(e["index"] + 1, e.get("eval") or {}) for e in state.get("iterations", [])]


def ds_table(state: dict[str, Any]) -> dict[str, list[tuple[int, float, float | None]]]:
    """``{model name: [(x, DS mean, DS sd or None), ...]}`` from a ``dagger.json`` state; the
    expert is under ``"expert"`` at x = 0 only."""
    series: dict[str, list[tuple[int, float, float | None]]] = {}
    for x, evals in _evaluations(state):
        for name, result in evals.items():
            series.setdefault(name, []).append((x, float(result["ds_mean"]), result.get("ds_sd")))
    return series


def markdown_table(state: dict[str, Any]) -> str:
    """Every evaluation of ``state`` as a markdown table: model, iteration, DS per seed, mean ± sd,
    route completion and successes per ability (summed over the seeds)."""
    rows = _evaluations(state)
    abilities = sorted({a for _, evals in rows for r in evals.values() for d in r.get("per_seed", {}).values()
                        for a in d["abilities"]})
    lines = ["| model | iteration | DS per seed | DS mean ± sd | RC % | " + " | ".join(abilities) + " |",
             "|---|---:|---|---:|---:|" + "---:|" * len(abilities)]
    for x, evals in rows:
        for name, r in evals.items():
            seeds = r.get("per_seed", {})
            per = {a: [sum(d["abilities"].get(a, [0, 0])[j] for d in seeds.values()) for j in (0, 1)] for a in abilities}
            rc = sum(d["rc"] for d in seeds.values()) / len(seeds) if seeds else float("nan")
            sd = "" if r.get("ds_sd") is None else f" ± {r['ds_sd']:.2f}"
            lines.append(f"| {name} | {x} | {' / '.join(f'{v:.2f}' for v in r['ds'].values())} | {r['ds_mean']:.2f}{sd} "
                         f"| {rc:.1f} | " + " | ".join(f"{s}/{n}" if n else "" for s, n in per.values()) + " |")
    return "\n".join(lines)


def plot(state: dict[str, Any], path: str | Path, title: str = "DAgger: closed-loop DS per iteration") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = ds_table(state)
    models = [n for n in series if n != "expert"]
    if not models:
        raise ValueError("dagger.json holds no closed-loop evaluation (run the loop with `evaluation` set)")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    last_x = max(x for pts in series.values() for x, _, _ in pts)
    if "expert" in series:
        expert = series["expert"][0][1]
        ax.axhline(expert, color="black", lw=1.0, label=f"expert ({expert:.1f})")
        ax.axhline(0.8 * expert, color="black", lw=1.0, ls="--", label=f"80 % of the expert ({0.8 * expert:.1f})")
    for name in models:
        xs, ys, sds = zip(*series[name])
        ax.errorbar(xs, ys, yerr=[s or 0.0 for s in sds], marker="o", capsize=3, label=name)
    seeds = state.get("config", {}).get("evaluation", {}).get("seeds", [])
    ax.set_xticks(range(last_x + 1))
    ax.set_xlabel("DAgger iteration (0: before on-policy data)")
    ax.set_ylabel(f"driving score (mean of {len(seeds)} seed{'s' if len(seeds) != 1 else ''})")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dagger_plot", description=__doc__.split("\n")[0])
    parser.add_argument("state", help="the loop's dagger.json")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        state = json.loads(Path(args.state).read_text())
        out = plot(state, args.out)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {args.state}: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(state))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    from carla_eval.compare import markdown_table as table

    return table([([name, str(x)], r) for x, evals in _evaluations(state) for name, r in evals.items()],
                 lead=("model", "iteration"))


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

"""Run progress on the console: routes done / total, running driving score, ETA, live routes."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RunProgress:
    """A rich progress bar; ``enabled=False`` only logs finished routes (CI / pipes)."""

    def __init__(self, total: int, done: int, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.total = total
        self.enabled = enabled and console.is_terminal
        self._sum_ds = 0.0
        self._done = done
        self._live: dict[str, tuple[int, float]] = {}
        self._t0 = time.monotonic()
        self._progress: Progress | None = None
        self._task: Any = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]routes"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("DS {task.fields[ds]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[live]}"),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task("run", total=total, completed=done, ds="-", live="")

    def __enter__(self) -> "RunProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def seed_scores(self, composed: list[float]) -> None:
        """Scores of routes already recorded (resume), for the running DS."""
        self._sum_ds = sum(composed)

    def _refresh(self) -> None:
        if self._progress is None:
            return
        ds = f"{self._sum_ds / self._done:.1f}" if self._done else "-"
        live = " ".join(f"{rid.replace('RouteScenario_', 'R')}:{rc:.0f}%" for rid, (_, rc) in list(self._live.items())[:4])
        self._progress.update(self._task, completed=self._done, ds=ds, live=live)

    def route_progress(self, record_id: str, step: int, rc: float) -> None:
        self._live[record_id] = (step, rc)
        self._refresh()

    def route_done(self, record: dict[str, Any]) -> None:
        self._done += 1
        self._sum_ds += float(record["scores"]["score_composed"])
        self._live.pop(record["route_id"], None)
        self.log(
            f"{record['route_id']}: {record['status']}  DS {record['scores']['score_composed']:.1f}  "
            f"RC {record['scores']['score_route']:.1f}%  ({record['meta']['duration_system']:.1f} s)  "
            f"[{self._done}/{self.total}]"
        )
        self._refresh()

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.log(message, markup=False, highlight=False)
        else:
            self.console.print(message, markup=False, highlight=False)

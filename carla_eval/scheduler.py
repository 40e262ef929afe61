"""Route-level work queue over a worker pool: hand out routes, retry failures, give up cleanly.

Routes are handed to whichever worker is idle (no static splits). A failed attempt (the worker
died, the backend raised, or the agent could not be loaded) goes back to the FRONT of the queue
with ``attempt + 1`` until ``retries`` retries are used up; then the route is given up with
"Failed - Simulation crashed" (simulator exception, worker death, time limit) or
"Failed - Agent couldn't be set up" (the agent cannot be imported or built, as the leaderboard
records it). An invalid route or a hung agent (``RouteResult.status`` set) is given up at once
with that status, without retries. Dead workers are replaced. Every task ends in exactly one
``on_done`` or ``on_given_up`` call, in the main process.

Time limits: ``route_limit_s(task)`` gives each attempt's wall-clock limit (None: none); a worker
over it is killed and the attempt counts as a crash.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

from carla_eval import scoring
from carla_eval.pool import TaskDone, TaskProgress, WorkerDied, WorkerNote, WorkerPool
from carla_eval.route_job import RouteResult, RouteTask

# Statuses that are results, never crashes: Bench2Drive's "TickRuntime" is an agent that got stuck
# (more than 4000 ticks), and a stuck agent run again is stuck again.
NEVER_RETRIED: tuple[str, ...] = (scoring.STATUS_TICK_RUNTIME,)


@dataclass(frozen=True)
class GivenUp:
    """A route that failed every attempt."""

    task: RouteTask  # the last attempt
    status: str
    error: str
    attempts: int
    wall_s: float


@dataclass
class SchedulerHooks:
    on_done: Callable[[RouteResult], None]
    on_given_up: Callable[[GivenUp], None]
    on_progress: Callable[[str, int, float], None] = lambda rid, step, rc: None
    on_note: Callable[[str], None] = lambda msg: None
    on_start: Callable[[RouteTask, int], None] = lambda task, worker: None


class Scheduler:
    def __init__(self, pool: WorkerPool, hooks: SchedulerHooks, retries: int = 2, route_timeout_s: float | None = None,
                 poll_s: float = 0.25, route_limit_s: Callable[[RouteTask], float | None] | None = None,
                 retry_statuses: tuple[str, ...] = ()) -> None:
        bad = [s for s in retry_statuses if s in NEVER_RETRIED]
        if bad:
            raise ValueError(f"status(es) {bad} are results, not crashes, and are never retried")
        self.retry_statuses = tuple(retry_statuses)
        self.pool = pool
        self.hooks = hooks
        self.retries = retries
        self.route_limit_s = route_limit_s or (lambda task: route_timeout_s)
        self.poll_s = poll_s
        self._running: dict[int, tuple[RouteTask, float]] = {}
        self._timed_out: dict[int, float] = {}  # worker -> the limit it went over
        self._wall: dict[str, float] = {}

    def _retry_or_give_up(self, queue: deque[RouteTask], task: RouteTask, kind: str, error: str, wall_s: float) -> None:
        self._wall[task.record_id] = self._wall.get(task.record_id, 0.0) + wall_s
        if task.attempt < self.retries:
            self.hooks.on_note(f"{task.record_id}: attempt {task.attempt + 1} failed ({kind}): {error.splitlines()[0]}; retrying")
            queue.appendleft(replace(task, attempt=task.attempt + 1))
            return
        status = scoring.STATUS_AGENT_SETUP if kind == "agent_load" else scoring.STATUS_SIM_CRASH
        self.hooks.on_given_up(GivenUp(task, status, error, task.attempt + 1, self._wall.pop(task.record_id, 0.0)))

    def _retry_outcome(self, queue: deque[RouteTask], result: RouteResult) -> bool:
        """Requeue an attempt whose outcome status is in ``retry_statuses`` while retries are left
        (the last attempt's outcome is recorded as it is)."""
        task, outcome = result.task, result.outcome
        if outcome is None or outcome.status not in self.retry_statuses or task.attempt >= self.retries:
            return False
        self._wall[task.record_id] = self._wall.get(task.record_id, 0.0) + result.wall_s
        self.hooks.on_note(f"{task.record_id}: attempt {task.attempt + 1} ended {outcome.status!r}; retrying")
        queue.appendleft(replace(task, attempt=task.attempt + 1))
        return True

    def run(self, tasks: list[RouteTask]) -> None:
        """Run every task to a record. Raises PoolStartError when workers cannot start."""
        queue: deque[RouteTask] = deque(tasks)
        while queue or self._running:
            for worker in self.pool.idle_workers():
                if not queue:
                    break
                task = queue.popleft()
                self.pool.submit(worker, task)
                self._running[worker] = (task, time.monotonic())
                self.hooks.on_start(task, worker)
            for event in self.pool.poll(self.poll_s):
                if isinstance(event, TaskProgress):
                    self.hooks.on_progress(event.record_id, event.step, event.route_completion)
                elif isinstance(event, WorkerNote):
                    self.hooks.on_note(event.message)
                elif isinstance(event, TaskDone):
                    self._running.pop(event.worker, None)
                    result = event.result
                    if result.status is not None:  # invalid route, hung agent: never retried
                        wall = self._wall.pop(result.task.record_id, 0.0) + result.wall_s
                        self.hooks.on_given_up(GivenUp(result.task, result.status, result.error or "", result.task.attempt + 1, wall))
                    elif result.failure_kind is None and self._retry_outcome(queue, result):
                        pass
                    elif result.failure_kind is None:
                        self._wall.pop(result.task.record_id, None)
                        self.hooks.on_done(result)
                    else:
                        self._retry_or_give_up(queue, result.task, result.failure_kind, result.error or "", result.wall_s)
                elif isinstance(event, WorkerDied):
                    running = self._running.pop(event.worker, None)
                    reason = event.reason
                    if event.worker in self._timed_out:
                        limit = self._timed_out.pop(event.worker)
                        reason = f"route exceeded the time limit of {limit:g} s; worker stopped"
                    self.hooks.on_note(f"worker {event.worker} died: {reason}; starting a new one")
                    self.pool.replace(event.worker)
                    task = event.task or (running[0] if running else None)
                    if task is not None:
                        wall = time.monotonic() - running[1] if running else 0.0
                        self._retry_or_give_up(queue, task, "simulator", f"worker died: {reason}", wall)
            now = time.monotonic()
            for worker, (task, started) in list(self._running.items()):
                limit = self.route_limit_s(task)
                if limit is not None and worker not in self._timed_out and now - started > limit:
                    self._timed_out[worker] = limit
                    self.pool.kill(worker)

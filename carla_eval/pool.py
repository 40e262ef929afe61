"""What the scheduler needs from a pool of route workers (local processes or Ray actors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union

from carla_eval.route_job import RouteResult, RouteTask


@dataclass
class TaskDone:
    worker: int
    result: RouteResult


@dataclass
class WorkerDied:
    """A worker died (process exit, SIGKILL, Ray actor death). ``task`` is what it was running."""

    worker: int
    task: RouteTask | None
    reason: str


@dataclass
class TaskProgress:
    worker: int
    record_id: str
    step: int
    route_completion: float


@dataclass
class WorkerNote:
    worker: int
    message: str


PoolEvent = Union[TaskDone, WorkerDied, TaskProgress, WorkerNote]


class PoolStartError(RuntimeError):
    """Workers keep failing to start (the backend cannot be built); the run cannot go on."""


def wait_ready(pool: "WorkerPool", timeout_s: float, poll_s: float = 0.1) -> list[str]:
    """Wait until every worker of a started pool is ready (before any task is sent); returns the
    notes of failed starts. Raises PoolStartError when workers keep failing to start, or when none
    is ready after ``timeout_s`` (some ready ones are enough then)."""
    import time

    notes: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(pool.idle_workers()) < pool.size:
        if time.monotonic() > deadline:
            if pool.idle_workers():
                break
            raise PoolStartError(f"no worker became ready within {timeout_s:g} s" + (f" ({notes[-1]})" if notes else ""))
        try:
            events = pool.poll(poll_s)
        except PoolStartError as exc:
            raise PoolStartError(f"{exc}" + (f": {notes[-1]}" if notes else "")) from exc
        for event in events:
            if isinstance(event, WorkerNote):
                notes.append(event.message)
            elif isinstance(event, WorkerDied):
                pool.replace(event.worker)
    return notes


class WorkerPool(Protocol):
    size: int

    def start(self) -> None: ...

    def idle_workers(self) -> list[int]: ...

    def submit(self, worker: int, task: RouteTask) -> None: ...

    def poll(self, timeout: float) -> list[PoolEvent]: ...

    def replace(self, worker: int) -> None:
        """Start a fresh worker in the slot of a dead one."""
        ...

    def kill(self, worker: int) -> None:
        """Stop a worker by force (its task is reported through WorkerDied)."""
        ...

    def close(self) -> None: ...

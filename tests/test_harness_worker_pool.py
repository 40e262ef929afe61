"""LocalWorkerPool's bookkeeping, driven through real pipes without worker processes."""

from __future__ import annotations

import multiprocessing as mp
import os
from types import SimpleNamespace

from carla_eval.run_config import AgentSpec, BackendSpec
from carla_eval.pool import TaskDone
from carla_eval.workers import LocalWorkerPool, _Slot


def _pool_with_fake_workers(n):
    pool = LocalWorkerPool(n, BackendSpec("sandbox", {}), AgentSpec("expert"))
    ends, fds = [], []
    for i in range(n):
        parent, child = mp.Pipe(duplex=True)
        r, w = os.pipe()  # stands in for the process sentinel: never ready while the "process" lives
        fds += [r, w]
        process = SimpleNamespace(sentinel=r, pid=10_000 + i, exitcode=None, join=lambda timeout=None: None)
        pool._slots[i] = _Slot(process, parent)
        ends.append(child)
    return pool, ends, fds


def _poll_until(pool, predicate, rounds=50):
    events = []
    for _ in range(rounds):
        events += pool.poll(0.05)
        if predicate(events):
            return events
    raise AssertionError(f"condition not reached; events {events}")


def test_a_worker_that_reported_a_hung_agent_is_never_handed_another_route():
    pool, ends, fds = _pool_with_fake_workers(2)
    try:
        for end in ends:
            end.send(("ready", None))
        _poll_until(pool, lambda ev: pool.idle_workers() == [0, 1])
        for i in (0, 1):
            pool.submit(i, SimpleNamespace(record_id=f"r{i}"))
            assert ends[i].recv()[0] == "run"
        assert pool.idle_workers() == []
        ends[0].send(("result", SimpleNamespace(worker_stale=True)))  # worker 0's agent hung: it exits
        ends[1].send(("result", SimpleNamespace(worker_stale=False)))
        events = _poll_until(pool, lambda ev: sum(isinstance(e, TaskDone) for e in ev) == 2)
        assert {e.worker for e in events if isinstance(e, TaskDone)} == {0, 1}
        assert pool.idle_workers() == [1]  # the stale worker is not idle, though it has no task
    finally:
        for end in ends:
            end.close()
        for fd in fds:
            os.close(fd)

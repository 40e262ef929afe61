"""Local worker processes: each owns ONE backend (simulator) and runs routes sent by the main process.

Processes come from the multiprocessing *spawn* context (no inherited simulator state, safe with
threads and pygame). Each worker talks to the main process through its own pipe::

    main -> worker: ("run", RouteTask) | ("stop", None)
    worker -> main: ("ready", pid) | ("init_failed", message) | ("progress", (id, tick, rc)) | ("result", RouteResult)

A worker ignores SIGINT (the main process handles Ctrl-C and stops workers by the PIDs it
started). A worker that dies (exit, SIGKILL, segfault) shows up as its process sentinel becoming
ready; the pool reports WorkerDied with the task it was running and :meth:`LocalWorkerPool.replace`
starts a fresh one. Workers exit on their own when the main process goes away (the pipe closes).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import time
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any

from carla_eval.agent_loader import AgentFactory
from carla_eval.backend_factory import create_backend
from carla_eval.pool import PoolEvent, PoolStartError, TaskDone, TaskProgress, WorkerDied, WorkerNote
from carla_eval.route_job import RouteResult, RouteTask, run_task
from carla_eval.run_config import AgentSpec, BackendSpec

MAX_CONSECUTIVE_START_FAILURES = 3


def worker_main(conn: Connection, backend_spec: BackendSpec, agent_spec: AgentSpec, worker_index: int = 0,
                gpu: int | None = None) -> None:
    """Entry point of a worker process. ``gpu``: the worker's GPU (carla_eval.placement)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu is not None:  # before anything can initialise CUDA in this fresh (spawned) process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        backend = create_backend(backend_spec, worker_index)
    except Exception as exc:
        try:
            conn.send(("init_failed", f"{type(exc).__name__}: {exc}"))
        finally:
            conn.close()
        return
    factory = AgentFactory(agent_spec, getattr(backend, "create_expert_agent", None))

    def progress(record_id: str, step: int, rc: float) -> None:
        conn.send(("progress", (record_id, step, rc)))

    try:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                break  # the main process went away
            if kind == "stop":
                break
            try:
                result = run_task(backend, payload, factory, progress)
            except Exception:  # a harness bug must not look like a dead simulator
                result = RouteResult(payload, None, "simulator", f"worker error:\n{traceback.format_exc(limit=8)}")
            try:
                conn.send(("result", result))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                conn.send(("result", RouteResult(payload, None, "simulator", f"route result cannot be sent back: {exc!r}")))
            if result.worker_stale:  # a thread is stuck in the agent: this process cannot be reused
                conn.close()
                os._exit(0)
    except (BrokenPipeError, EOFError, OSError):
        pass
    finally:
        try:
            backend.close()
        except Exception:
            pass
        conn.close()


class _Slot:
    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.ready = False
        self.task: RouteTask | None = None
        self.dead = False
        self.stale = False  # it reported a hung agent and exits


class LocalWorkerPool:
    """N worker processes (spawn context), one backend each. See the module docstring."""

    def __init__(self, size: int, backend: BackendSpec, agent: AgentSpec, gpus: tuple[int, ...] = (),
                 workers_per_gpu: int = 1) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.size = size
        self.backend = backend
        self.agent = agent
        self.gpus = tuple(gpus)
        self.workers_per_gpu = workers_per_gpu
        self._ctx = mp.get_context("spawn")
        self._slots: list[_Slot | None] = [None] * size
        self._start_failures = 0
        self.started_pids: list[int] = []

    # ------------------------------------------------------------------------- lifecycle
    def _spawn(self, i: int) -> None:
        from carla_eval.placement import gpu_for_slot, spec_for_gpu

        parent, child = self._ctx.Pipe(duplex=True)
        gpu = gpu_for_slot(i, self.gpus, self.workers_per_gpu)
        proc = self._ctx.Process(
            target=worker_main, args=(child, spec_for_gpu(self.backend, gpu), self.agent, i, gpu),
            name=f"carla-eval-worker-{i}", daemon=True
        )
        proc.start()
        child.close()
        self.started_pids.append(proc.pid)
        self._slots[i] = _Slot(proc, parent)

    def start(self) -> None:
        for i in range(self.size):
            self._spawn(i)

    def replace(self, i: int) -> None:
        """Reap worker ``i`` (if needed) and start a fresh one in its place."""
        slot = self._slots[i]
        if slot is not None:
            self._stop_process(slot, grace_s=0.0)
        self._spawn(i)

    def worker_pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s is not None and not s.dead]

    # ----------------------------------------------------------------------------- work
    def idle_workers(self) -> list[int]:
        # A stale worker reported a hung agent and is exiting: a route handed to it would be lost
        # with it and charged an attempt.
        return [i for i, s in enumerate(self._slots)
                if s is not None and s.ready and not s.dead and not s.stale and s.task is None]

    def submit(self, worker: int, task: RouteTask) -> None:
        slot = self._slots[worker]
        if slot is None or not slot.ready or slot.task is not None:
            raise RuntimeError(f"worker {worker} is not idle")
        slot.task = task
        try:
            slot.conn.send(("run", task))
        except (BrokenPipeError, OSError):
            pass  # the death shows up in poll()

    def _died(self, i: int, slot: _Slot, reason: str) -> WorkerDied:
        if slot.stale:
            reason = "worker retired after a hung agent (its thread cannot be stopped)"
        slot.dead = True
        slot.process.join(timeout=2.0)
        code = slot.process.exitcode
        if code is not None and code < 0:
            try:
                reason = f"{reason} (killed by {signal.Signals(-code).name})"
            except ValueError:
                reason = f"{reason} (signal {-code})"
        elif code is not None:
            reason = f"{reason} (exit code {code})"
        if not slot.ready:
            self._start_failures += 1
        return WorkerDied(i, slot.task, reason)

    def poll(self, timeout: float) -> list[PoolEvent]:
        live = {id(s.conn): (i, s) for i, s in enumerate(self._slots) if s is not None and not s.dead}
        sentinels = {s.process.sentinel: (i, s) for i, s in enumerate(self._slots) if s is not None and not s.dead}
        if not live:
            time.sleep(timeout)
            return []
        ready = wait([s.conn for _, s in live.values()] + list(sentinels), timeout=timeout)
        events: list[PoolEvent] = []
        for obj in ready:
            if isinstance(obj, int):
                continue  # handled below, after draining the pipe
            i, slot = live[id(obj)]
            while not slot.dead:
                try:
                    if not slot.conn.poll():
                        break
                    kind, payload = slot.conn.recv()
                except (EOFError, OSError):
                    events.append(self._died(i, slot, "worker process ended"))
                    break
                if kind == "ready":
                    slot.ready = True
                    self._start_failures = 0
                elif kind == "init_failed":
                    events.append(WorkerNote(i, f"worker {i} could not build the backend: {payload}"))
                elif kind == "progress":
                    rid, step, rc = payload
                    events.append(TaskProgress(i, rid, step, rc))
                elif kind == "result":
                    slot.task = None
                    slot.stale = slot.stale or bool(getattr(payload, "worker_stale", False))
                    events.append(TaskDone(i, payload))
        for sentinel, (i, slot) in sentinels.items():
            if sentinel in ready and not slot.dead:
                # Drain what the worker sent before it died (a result may be in the pipe).
                try:
                    while slot.conn.poll():
                        kind, payload = slot.conn.recv()
                        if kind == "result":
                            slot.task = None
                            events.append(TaskDone(i, payload))
                except (EOFError, OSError):
                    pass
                events.append(self._died(i, slot, "worker process died"))
        if self._start_failures >= MAX_CONSECUTIVE_START_FAILURES:
            raise PoolStartError(
                f"{self._start_failures} workers in a row failed to start; is the backend {self.backend.name!r} usable?"
            )
        return events

    def kill(self, worker: int) -> None:
        slot = self._slots[worker]
        if slot is not None and slot.process.is_alive() and slot.process.pid:
            os.kill(slot.process.pid, signal.SIGKILL)

    # -------------------------------------------------------------------------- shutdown
    @staticmethod
    def _stop_process(slot: _Slot, grace_s: float) -> None:
        proc = slot.process
        if proc.is_alive() and grace_s > 0:
            proc.join(timeout=grace_s)
        if proc.is_alive():
            proc.terminate()  # SIGTERM to this PID
            proc.join(timeout=3.0)
        if proc.is_alive():
            proc.kill()  # SIGKILL to this PID
            proc.join(timeout=3.0)
        try:
            slot.conn.close()
        except OSError:
            pass
        slot.dead = True

    def close(self, grace_s: float = 5.0) -> None:
        """Ask every worker to stop, then terminate the ones that do not (by their PIDs)."""
        for slot in self._slots:
            if slot is not None and not slot.dead:
                try:
                    slot.conn.send(("stop", None))
                except (BrokenPipeError, OSError):
                    pass
        deadline = time.monotonic() + grace_s
        for slot in self._slots:
            if slot is not None:
                self._stop_process(slot, grace_s=max(0.0, deadline - time.monotonic()))

"""Route workers as Ray actors: the distributed engine for runs beyond one machine.

Each actor owns ONE backend (built in its constructor) and runs one route at a time; the driver
(the main process) keeps at most one task in flight per actor and is still the only writer of the
run's files. An actor that dies (its process exits or is SIGKILLed, its node goes away) surfaces
as ``RayActorError`` from its task; the pool reports WorkerDied and builds a new actor in its slot.

Addresses: ``local`` starts a private local cluster (``ray.init(num_cpus=N,
include_dashboard=False)``) and :meth:`RayWorkerPool.close` ends it with ``ray.shutdown()`` from this
same process; ``auto`` or ``HOST:PORT`` / ``ray://...`` connect to a running cluster (only this
driver disconnects at the end). ``ray stop`` is never used: it kills every Ray process on the machine.
Joining a cluster has a time limit (``connect_timeout_s``): a ``HOST:PORT`` that does not accept a TCP
connection, or a ``ray.init`` that does not return in time, is a :class:`RayConnectError`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from carla_eval.agent_loader import AgentFactory
from carla_eval.backend_factory import create_backend
from carla_eval.pool import PoolEvent, PoolStartError, TaskDone, WorkerDied, WorkerNote
from carla_eval.route_job import RouteResult, RouteTask, run_task
from carla_eval.run_config import AgentSpec, BackendSpec

MAX_CONSECUTIVE_START_FAILURES = 3


class RayConnectError(PoolStartError):
    """The Ray cluster at --ray-address cannot be joined in time."""


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto`` and other forms."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def connect_ray(ray: Any, address: str, timeout_s: float) -> None:
    """``ray.init(address=...)`` within ``timeout_s`` seconds, or RayConnectError."""
    target = _host_port(address)
    if target is not None:
        try:
            socket.create_connection(target, timeout=timeout_s).close()
        except OSError as exc:
            raise RayConnectError(f"cannot reach the Ray cluster at {address} within {timeout_s:g} s: {exc}") from exc
    box: dict[str, BaseException] = {}

    def init() -> None:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=init, name="carla-eval-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise RayConnectError(f"joining the Ray cluster at {address} did not finish within {timeout_s:g} s")
    if "error" in box:
        raise RayConnectError(f"cannot join the Ray cluster at {address}: {str(box['error']).splitlines()[0]}") from box["error"]


class RouteWorker:
    """Actor body (wrapped with ``ray.remote`` at pool start, so importing this module needs no Ray)."""

    def __init__(self, backend_spec: BackendSpec, agent_spec: AgentSpec, worker_index: int = 0,
                 uses_gpu: bool = False) -> None:
        if uses_gpu:  # Ray chose the device (and set CUDA_VISIBLE_DEVICES); the simulator needs its id too
            import ray

            from carla_eval.placement import spec_for_gpu

            ids = ray.get_gpu_ids()
            if ids:
                backend_spec = spec_for_gpu(backend_spec, int(ids[0]))
        self.backend = create_backend(backend_spec, worker_index)
        self.factory = AgentFactory(agent_spec, getattr(self.backend, "create_expert_agent", None))

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: RouteTask) -> RouteResult:
        return run_task(self.backend, task, self.factory, None)

    def close(self) -> None:
        self.backend.close()


class RayWorkerPool:
    """``size`` Ray actors, one backend each. See the module docstring."""

    def __init__(self, size: int, backend: BackendSpec, agent: AgentSpec, address: str, cpus_per_worker: float = 1.0,
                 connect_timeout_s: float = 30.0, gpus_per_worker: float = 0.0, num_gpus: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.size = size
        self.backend = backend
        self.agent = agent
        self.address = address
        self.cpus_per_worker = cpus_per_worker
        self.connect_timeout_s = connect_timeout_s
        self.gpus_per_worker = gpus_per_worker  # Ray resource per actor (1 / --workers-per-gpu with --gpus)
        self.num_gpus = num_gpus  # GPUs of a private local cluster
        self._ray: Any = None
        self._actor_cls: Any = None
        self._actors: list[Any] = [None] * size
        self._ready: list[bool] = [False] * size
        self._probe: dict[Any, int] = {}  # ready-probe ref -> slot
        self._inflight: dict[Any, tuple[int, RouteTask]] = {}  # task ref -> (slot, task)
        self._busy: list[bool] = [False] * size
        self._start_failures = 0
        self._started_cluster = False

    def start(self) -> None:
        import ray

        if self.address == "local":
            extra = {"num_gpus": self.num_gpus} if self.num_gpus is not None else {}
            ray.init(num_cpus=max(1, int(round(self.size * self.cpus_per_worker))), include_dashboard=False,
                     log_to_driver=False, configure_logging=False, **extra)
            self._started_cluster = True
        else:
            connect_ray(ray, self.address, self.connect_timeout_s)
        self._ray = ray
        self._actor_cls = ray.remote(RouteWorker)
        for i in range(self.size):
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        actor = self._actor_cls.options(**self.actor_options()).remote(self.backend, self.agent, i, self.gpus_per_worker > 0)
        self._actors[i] = actor
        self._ready[i] = False
        self._busy[i] = False
        self._probe[actor.pid.remote()] = i

    def actor_options(self) -> dict[str, Any]:
        """Ray resources of one actor: ``num_cpus``, and ``num_gpus`` when the run uses GPUs."""
        options: dict[str, Any] = {"num_cpus": self.cpus_per_worker, "max_restarts": 0}
        if self.gpus_per_worker > 0:
            options["num_gpus"] = self.gpus_per_worker
        return options

    def idle_workers(self) -> list[int]:
        return [i for i in range(self.size) if self._ready[i] and not self._busy[i]]

    def submit(self, worker: int, task: RouteTask) -> None:
        if not self._ready[worker] or self._busy[worker]:
            raise RuntimeError(f"worker {worker} is not idle")
        ref = self._actors[worker].run.remote(task)
        self._inflight[ref] = (worker, task)
        self._busy[worker] = True

    def _replace(self, i: int) -> None:
        try:
            self._ray.kill(self._actors[i], no_restart=True)
        except Exception:
            pass
        self._spawn(i)

    def poll(self, timeout: float) -> list[PoolEvent]:
        ray = self._ray
        refs = list(self._probe) + list(self._inflight)
        if not refs:
            time.sleep(timeout)
            return []
        done, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        # take everything that is already finished, not just one
        if done:
            more, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            done = list({id(r): r for r in list(done) + list(more)}.values())
        events: list[PoolEvent] = []
        for ref in done:
            if ref in self._probe:
                i = self._probe.pop(ref)
                try:
                    ray.get(ref)
                    self._ready[i] = True
                    self._start_failures = 0
                except Exception as exc:
                    self._start_failures += 1
                    events.append(WorkerNote(i, f"Ray worker {i} could not start: {exc}"))
                    events.append(WorkerDied(i, None, "actor failed to start"))
                    self._replace(i)
                continue
            i, task = self._inflight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                events.append(WorkerDied(i, task, f"Ray actor died: {str(exc).splitlines()[0]}"))
                self._replace(i)
                continue
            except Exception as exc:  # the task itself raised (should not happen: run_task catches)
                events.append(WorkerDied(i, task, f"Ray task failed: {exc!r}"))
                self._replace(i)
                continue
            self._busy[i] = False
            events.append(TaskDone(i, result))
            if result.worker_stale:  # a thread of the actor is stuck in the agent
                self._replace(i)
        if self._start_failures >= MAX_CONSECUTIVE_START_FAILURES:
            raise PoolStartError(f"{self._start_failures} Ray workers in a row failed to start")
        return events

    def replace(self, i: int) -> None:
        """Nothing to do: dead actors are replaced inside :meth:`poll`."""

    def kill(self, worker: int) -> None:
        """Kill an actor (e.g. a route over its time limit); poll() then reports it dead."""
        try:
            self._ray.kill(self._actors[worker], no_restart=True)
        except Exception:
            pass

    def close(self, grace_s: float = 5.0) -> None:
        ray = self._ray
        if ray is None:
            return
        for actor in self._actors:
            if actor is not None:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:
                    pass
        ray.shutdown()  # ends the local cluster only if this process started it
        self._ray = None

"""The agent's client of the model server: a planner backend that sends requests over ZeroMQ.

:func:`connect_server` (called in ``IKAgent.setup``) attaches to the server answering at
``planner.address``; when none answers and ``planner.start`` is set, it starts one
(agent/server_process.py) and waits until it answers, at most ``start.ready_timeout_s``.

Failures mid-route: a request that gets no answer within ``request_timeout_s`` (or whose server
process exits) raises :class:`PlannerUnavailable`; the driving loop brakes. The next requests first
check that the server answers a handshake again (a server restarted by another evaluator process
counts); when this client has ``planner.start``, it restarts a dead server itself (at most
``start.max_restarts`` times per route) and replaces one that stays silent longer than
``start.ready_timeout_s``. Each outage and recovery is logged once.

Python 3.7+, numpy and pyzmq (the evaluator side).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from agent import plan_wire
from agent.planning import ModelGeometry, Plan, PlanError, PlannerConfig, PlannerUnavailable, PlanRequest
from agent.server_process import ServerProcess, server_command

logger = logging.getLogger("agent.ik_agent")

ATTACH_TIMEOUT_S = 1.0  # how long setup waits for an existing server before starting one
PROBE_TIMEOUT_S = 0.2  # handshake wait while the server is down (bounds the tick's latency)


class ServerSetupError(RuntimeError):
    """No usable model server: none answers and none could be started, or it serves something else."""


class ServerClient:
    """Planner backend (``geometry``, ``run``, ``close``) talking to one model server address.

    Args:
        address: the server's ``ipc://`` or ``tcp://`` loopback address.
        request_timeout_s: longest wait for a plan (s).
        process: the :class:`ServerProcess` this client may start and restart (None: attach only).
        expected_model: the model folder the agent's config names; a server serving another one is
            refused.
        keep_running: leave a server this client started running at :meth:`close`.
        ready_timeout_s, max_restarts: see ``ServerStartConfig``.
    """

    def __init__(self, address: str, request_timeout_s: float, process: Optional[ServerProcess] = None,
                 expected_model: Optional[str] = None, keep_running: bool = False, ready_timeout_s: float = 120.0,
                 max_restarts: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        import zmq

        self._zmq = zmq
        self.address = plan_wire.check_address(address)
        self.request_timeout_s = float(request_timeout_s)
        self.process = process
        self.expected_model = None if expected_model is None else os.path.realpath(str(expected_model))
        self.keep_running = bool(keep_running)
        self.ready_timeout_s = float(ready_timeout_s)
        self.max_restarts = int(max_restarts)
        self.clock = clock
        self.server_info = {}  # type: Dict[str, Any]
        self.geometry = None  # type: Optional[ModelGeometry]
        self.restarts = 0
        self.outages = 0
        self.last_batch_size = 0  # requests in the server's model call of the last plan
        self._down_since = None  # type: Optional[float]
        self._started_at = None  # type: Optional[float]
        self._next_id = 0
        # The process's shared context: a client that is never closed leaves only its socket (LINGER 0)
        # to the garbage collector, never a per-client context whose teardown could block.
        self._socket = zmq.Context.instance().socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)  # no queueing towards a server that is not there
        self._socket.connect(self.address)

    # ------------------------------------------------------------------ setup
    def open(self) -> ModelGeometry:
        """Attach to the server at the address, or start one; returns the model geometry."""
        try:
            return self._accept_hello(self._hello(ATTACH_TIMEOUT_S, retry=True))
        except PlannerUnavailable as exc:
            if self.process is None:
                raise ServerSetupError("no model server answers at {} ({}) and planner.start is not set".format(
                    self.address, exc)) from None
        self._start_server()
        deadline = self.clock() + self.ready_timeout_s
        while True:
            try:
                return self._accept_hello(self._hello(min(0.5, max(0.01, deadline - self.clock())), retry=True))
            except PlannerUnavailable:
                pass
            code = self.process.exit_code()
            if code is not None and code != plan_wire.EXIT_ADDRESS_IN_USE:
                raise ServerSetupError("the model server exited with status {} before it was ready ({}){}".format(
                    code, " ".join(self.process.argv), self._log_hint()))
            # status EXIT_ADDRESS_IN_USE: another process's server holds the address; attach to it
            if self.clock() >= deadline:
                self.process.stop()
                raise ServerSetupError("the model server at {} was not ready within {:.0f} s (planner.start."
                                       "ready_timeout_s){}".format(self.address, self.ready_timeout_s,
                                                                   self._log_hint()))

    def _log_hint(self) -> str:
        log = None if self.process is None else self.process.log_file
        return "; see {}".format(log) if log else "; its output is on this process's stderr"

    def _start_server(self) -> None:
        self.process.start()
        self._started_at = self.clock()

    def _hello(self, timeout_s: float, retry: bool = False) -> Dict[str, Any]:
        """One handshake; with ``retry``, resend while the connection is not up yet."""
        deadline = self.clock() + timeout_s
        while True:
            try:
                header, _ = self._roundtrip(plan_wire.hello_request, max(0.01, deadline - self.clock()))
                return header
            except PlannerUnavailable:
                if not retry or self.clock() >= deadline:
                    raise
                time.sleep(0.02)

    def _accept_hello(self, header: Dict[str, Any]) -> ModelGeometry:
        if header.get("kind") == "error":
            raise ServerSetupError("the model server at {} refused the handshake: {}".format(
                self.address, header.get("message")))
        if header.get("kind") != "hello" or header.get("protocol") != plan_wire.PROTOCOL_VERSION:
            raise ServerSetupError("the model server at {} speaks protocol {!r}, this agent {}".format(
                self.address, header.get("protocol"), plan_wire.PROTOCOL_VERSION))
        served = header.get("model")
        if self.expected_model is not None and os.path.realpath(str(served)) != self.expected_model:
            raise ServerSetupError("the model server at {} serves {}, the agent config names {}".format(
                self.address, served, self.expected_model))
        geometry = plan_wire.parse_geometry(header.get("geometry"))
        if self.geometry is not None and geometry != self.geometry:
            raise ServerSetupError("the model server at {} now serves geometry {}, not {}".format(
                self.address, geometry, self.geometry))
        self.server_info = header
        self.geometry = geometry
        return geometry

    # -------------------------------------------------------------- transport
    def _roundtrip(self, build: Callable[[int], List[Any]], timeout_s: float) -> Tuple[Dict[str, Any], List[np.ndarray]]:
        zmq = self._zmq
        self._next_id += 1
        request_id = self._next_id
        try:
            self._socket.send_multipart(build(request_id), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise PlannerUnavailable("no connection to the model server at {}".format(self.address)) from None
        deadline = self.clock() + timeout_s
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise PlannerUnavailable("no answer from the model server at {} within {:.2f} s".format(
                    self.address, timeout_s))
            if self._socket.poll(max(1, int(min(remaining, 0.05) * 1000)), zmq.POLLIN):
                frames = self._socket.recv_multipart(copy=False)
                try:
                    header, arrays = plan_wire.decode(frames)
                except plan_wire.WireError as exc:
                    raise PlanError("malformed reply from the model server: {}".format(exc)) from None
                if header.get("id") == request_id:
                    return header, arrays
                continue  # the late answer to a request that timed out
            code = None if self.process is None else self.process.exit_code()
            if code is not None and self._owns_live_start():
                raise PlannerUnavailable("the model server (pid {}) exited with status {}".format(
                    self.process.pid, code))

    def _owns_live_start(self) -> bool:
        """The last server this client started is the one expected to answer (not another's)."""
        return self._started_at is not None and self.server_info.get("pid") == self.process.pid

    # ------------------------------------------------------------------ plans
    def run(self, request: PlanRequest) -> Plan:
        """The plan of ``request`` from the server. Raises :class:`PlannerUnavailable` while the server
        is unreachable, :class:`PlanError` when it rejects the request or the model fails."""
        if self.geometry is None:
            raise PlannerUnavailable("ServerClient.run before open()")
        request.check(self.geometry)
        if self._down_since is not None:
            self._recover()
        start = time.perf_counter()
        try:
            header, arrays = self._roundtrip(lambda rid: plan_wire.plan_request(request, rid), self.request_timeout_s)
        except PlannerUnavailable as exc:
            self._went_down(exc)
            raise
        if header.get("kind") == "error":
            raise PlanError("the model server rejected the request ({}): {}".format(header.get("code"),
                                                                                    header.get("message")))
        if header.get("kind") != "plan":
            raise PlanError("unexpected reply kind {!r} from the model server".format(header.get("kind")))
        plan = plan_wire.parse_plan_reply(header, arrays)
        self.last_batch_size = int(header.get("batch_size") or 0)
        plan.timings["round_trip"] = (time.perf_counter() - start) * 1e3
        return plan

    def _went_down(self, exc: Exception) -> None:
        self._down_since = self.clock()
        self.outages += 1
        logger.warning("model server at %s failed: %s; braking until it answers again", self.address, exc)

    def _recover(self) -> None:
        """Bring the server back (restart it when this client may) or raise :class:`PlannerUnavailable`."""
        now = self.clock()
        down_for = now - self._down_since
        process = self.process
        if process is not None:
            if not process.running:
                if self.restarts < self.max_restarts:
                    if process.exit_code() is not None:
                        logger.warning("model server pid %s exited with status %s", process.pid, process.exit_code())
                    self.restarts += 1
                    self._start_server()
                    logger.warning("restarting the model server (restart %d of %d per route), pid %s",
                                   self.restarts, self.max_restarts, process.pid)
            elif self._started_at is not None and now - max(self._down_since, self._started_at) > self.ready_timeout_s:
                logger.warning("model server pid %s silent for %.0f s: stopping it", process.pid, down_for)
                process.stop(timeout_s=2.0)
        try:
            header = self._hello(PROBE_TIMEOUT_S)
            self._accept_hello(header)
        except (PlannerUnavailable, ServerSetupError) as exc:
            raise PlannerUnavailable("model server at {} down for {:.1f} s: {}".format(self.address, down_for, exc))
        logger.warning("model server at %s answers again after %.1f s (pid %s)", self.address,
                       self.clock() - self._down_since, self.server_info.get("pid"))
        self._down_since = None

    # ---------------------------------------------------------------- closing
    def close(self) -> None:
        """Stop a server this client started (unless ``keep_running``), close the socket."""
        try:
            if self.process is not None and not self.keep_running and self._started_at is not None:
                code = self.process.stop()
                logger.info("stopped the model server pid %s (status %s)", self.process.pid, code)
        finally:
            if not self._socket.closed:
                self._socket.close(0)


def connect_server(planner: PlannerConfig, model: str, device: str, num_threads: Optional[int]) -> ServerClient:
    """The :class:`ServerClient` of ``planner`` (mode "server"), attached or started and ready."""
    start = planner.start
    process = None
    if start is not None:
        argv = server_command(start.python, model, device, planner.address, num_threads=num_threads,
                              max_batch=start.max_batch, max_wait_ms=start.max_wait_ms,
                              parent_pid=None if start.keep_running else os.getpid(),
                              idle_exit_s=start.idle_exit_s if start.keep_running else None)
        process = ServerProcess(argv, log_file=start.log_file)
    client = ServerClient(planner.address, planner.request_timeout_s, process=process, expected_model=model,
                          keep_running=start is not None and start.keep_running,
                          ready_timeout_s=120.0 if start is None else start.ready_timeout_s,
                          max_restarts=0 if start is None else start.max_restarts)
    try:
        client.open()
    except BaseException:
        client.close()
        raise
    return client

"""The model server: ``python -m agent.serve --model DIR --device cuda:0 --listen ADDRESS``.

Loads the pipeline once and serves plan requests of one or many agent clients
(agent/plan_client.py) on a local ZeroMQ address (``ipc:///path`` or ``tcp://127.0.0.1:PORT``);
the wire format is agent/plan_wire.py. Runs in the project's environment (Python >= 3.10, torch).

Dynamic batching: requests that arrive together are planned in one model call. After the first
request the server waits for more, at most ``--max-wait-ms``, and stops waiting as soon as every
client seen in the last two seconds has a request in (each agent has at most one request in flight),
or ``--max-batch`` requests are in. Requests with different (num_inference_steps, num_samples, slowest_fraction) go
to separate calls. Each request's diffusion noise comes from its own seed, so batching does not
change a plan (agent/plan_runner.py).

The address is bound only once the model is loaded and warmed up: a client's handshake succeeds
exactly when the server is ready. One server per address: a second one exits with status 75.

Exit: SIGTERM or SIGINT; ``--parent-pid`` (exit when that process is gone); ``--idle-exit-s``
(exit after that long without a request). Status: 0 after a stop, 2 bad arguments, 3 the model
failed to load or to warm up, 75 the address is in use.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from agent import plan_wire
from agent.planning import PlanError, PlanRequest, blank_request

logger = logging.getLogger("agent.serve")

ACTIVE_CLIENT_WINDOW_S = 2.0
POLL_INTERVAL_MS = 200


@dataclass
class _Pending:
    identity: Any
    request_id: Any
    request: PlanRequest
    received: float


class PlanServer:
    """The request loop around a ``PlanRunner`` on one bound ROUTER socket."""

    def __init__(self, runner: Any, model: str, device: str, max_batch: int = 8, max_wait_ms: float = 3.0,
                 idle_exit_s: float | None = None, parent_pid: int | None = None) -> None:
        self.runner = runner
        self.model = model
        self.device = device
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1e3
        self.idle_exit_s = idle_exit_s
        self.parent_pid = parent_pid
        self.stopping = False
        self.batches = 0
        self.plans = 0
        self._clients: dict[bytes, float] = {}  # identity -> last request time
        self._last_request = time.monotonic()

    # ---------------------------------------------------------------- replies
    def _hello(self, header: dict) -> list:
        if header.get("protocol") != plan_wire.PROTOCOL_VERSION:
            return plan_wire.error_reply(header.get("id"), "protocol",
                                         f"server speaks protocol {plan_wire.PROTOCOL_VERSION}, "
                                         f"client {header.get('protocol')!r}")
        return plan_wire.encode({
            "kind": "hello", "id": header.get("id"), "protocol": plan_wire.PROTOCOL_VERSION, "pid": os.getpid(),
            "model": self.model, "device": self.device, "geometry": plan_wire.geometry_header(self.runner.geometry),
            "max_batch": self.max_batch, "max_wait_ms": self.max_wait_s * 1e3,
        })

    def _accept(self, frames: list, pending: list[_Pending], send) -> None:
        """Answer a hello at once; check a plan request and queue it."""
        identity, body = frames[0], frames[1:]
        request_id = None
        try:
            header, arrays = plan_wire.decode(body)
            request_id = header.get("id")
            kind = header["kind"]
            if kind == "hello":
                send(identity, self._hello(header))
                return
            if kind != "plan":
                raise plan_wire.WireError(f"unknown message kind {kind!r}")
            request = plan_wire.parse_plan_request(header, arrays)
            request.check(self.runner.geometry)
        except (plan_wire.WireError, PlanError) as exc:
            send(identity, plan_wire.error_reply(request_id, "bad_request", str(exc)))
            return
        now = time.monotonic()
        key = bytes(identity.bytes if hasattr(identity, "bytes") else identity)
        self._clients[key] = now
        self._last_request = now
        pending.append(_Pending(identity, request_id, request, now))

    def _expected_batch(self, now: float) -> int:
        for key in [k for k, t in self._clients.items() if now - t > ACTIVE_CLIENT_WINDOW_S]:
            del self._clients[key]
        return max(1, min(self.max_batch, len(self._clients)))

    def _run(self, pending: list[_Pending], send) -> None:
        groups: dict[tuple, list[_Pending]] = {}
        for item in pending:
            groups.setdefault(item.request.settings, []).append(item)
        for items in groups.values():
            start = time.perf_counter()
            started = time.monotonic()
            try:
                results = self.runner.run_batch([item.request for item in items])
            except Exception as exc:  # a model failure answers every request of the call
                logger.warning("model call for %d request(s) failed: %r", len(items), exc)
                for item in items:
                    send(item.identity, plan_wire.error_reply(item.request_id, "model", repr(exc)))
                continue
            self.batches += 1
            for item, result in zip(items, results):
                if isinstance(result, PlanError):
                    send(item.identity, plan_wire.error_reply(item.request_id, "model", str(result)))
                    continue
                self.plans += 1
                result.timings["server"] = (time.perf_counter() - start) * 1e3  # the model call and checks
                result.timings["queue"] = (started - item.received) * 1e3  # waiting for the batch
                send(item.identity, plan_wire.plan_reply(item.request_id, result, len(items)))

    # ------------------------------------------------------------------- loop
    def _should_exit(self) -> str | None:
        if self.stopping:
            return "stop signal"
        if self.parent_pid is not None and not _alive(self.parent_pid):
            return f"parent process {self.parent_pid} is gone"
        if self.idle_exit_s is not None and time.monotonic() - self._last_request > self.idle_exit_s:
            return f"no request for {self.idle_exit_s:.0f} s"
        return None

    def serve(self, socket: Any) -> str:
        """Serve until a stop condition; returns why it stopped."""
        import zmq

        def send(identity, frames):
            socket.send_multipart([identity, *frames], copy=False)

        while True:
            reason = self._should_exit()
            if reason is not None:
                return reason
            if not socket.poll(POLL_INTERVAL_MS, zmq.POLLIN):
                continue
            pending: list[_Pending] = []
            deadline = None
            while len(pending) < self.max_batch:
                try:
                    frames = socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    if not pending or len(pending) >= self._expected_batch(time.monotonic()):
                        break
                    now = time.monotonic()
                    deadline = pending[0].received + self.max_wait_s if deadline is None else deadline
                    if now >= deadline or not socket.poll(max(0.0, deadline - now) * 1e3, zmq.POLLIN):
                        break
                    continue
                self._accept(frames, pending, send)
            if pending:
                self._run(pending, send)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_address(address: str):
    """For an ipc address: an exclusive lock on ``<path>.lock`` (ZeroMQ would silently take over the
    socket file of a running server). Returns the open lock file, or None for tcp; exits 75 when held."""
    path = plan_wire.ipc_path(address)
    if path is None:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handle = open(path + ".lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        logger.error("another model server holds %s", address)
        sys.exit(plan_wire.EXIT_ADDRESS_IN_USE)
    return handle


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder (save_pretrained layout)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N")
    parser.add_argument("--listen", required=True, help="ipc:///absolute/path or tcp://127.0.0.1:PORT")
    parser.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch of concurrent requests")
    parser.add_argument("--max-wait-ms", type=float, default=3.0, help="longest wait for a batch to fill (ms)")
    parser.add_argument("--idle-exit-s", type=float, default=None, help="exit after this long without a request")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s agent.serve[%(process)d] %(message)s",
                        stream=sys.stderr)
    try:
        plan_wire.check_address(args.listen)
    except plan_wire.WireError as exc:
        logger.error("--listen %s", exc)
        return 2
    if args.max_batch < 1 or not 0 <= args.max_wait_ms <= 1000:
        logger.error("--max-batch must be >= 1 and --max-wait-ms in [0, 1000]")
        return 2
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True
        server = stop.get("server")
        if server is not None:
            server.stopping = True
        else:
            raise SystemExit(0)  # still loading: leave at once

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lock = _lock_address(args.listen)
    model = os.path.realpath(args.model)
    try:
        import torch

        if args.num_threads is not None:
            torch.set_num_threads(args.num_threads)
        from agent.model import load_pipeline
        from agent.plan_runner import PlanRunner

        if not Path(model).is_dir():
            raise FileNotFoundError(f"model folder not found: {model}")
        runner = PlanRunner(load_pipeline(model, device=args.device), device=args.device)
        runner.run(blank_request(runner.geometry, 0, None, 1))
    except Exception as exc:
        logger.error("could not load the model %s on %s: %r", model, args.device, exc)
        return 3
    import zmq

    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.bind(args.listen)
    except zmq.ZMQError as exc:
        logger.error("cannot listen on %s: %s", args.listen, exc)
        socket.close(0)
        context.term()
        return plan_wire.EXIT_ADDRESS_IN_USE if exc.errno == errno.EADDRINUSE else 2
    server = PlanServer(runner, model, args.device, args.max_batch, args.max_wait_ms, args.idle_exit_s,
                        args.parent_pid)
    stop["server"] = server
    server.stopping = stop["flag"]
    logger.info("serving %s on %s at %s (protocol %d, batches up to %d, wait up to %.1f ms)", model, args.device,
                args.listen, plan_wire.PROTOCOL_VERSION, args.max_batch, args.max_wait_ms)
    try:
        reason = server.serve(socket)
    finally:
        socket.close(0)
        context.term()
        path = plan_wire.ipc_path(args.listen)
        if path is not None and os.path.exists(path):
            os.unlink(path)
        if lock is not None:
            lock.close()
    logger.info("stopped (%s) after %d plans in %d model calls", reason, server.plans, server.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Model server benchmark: ``python -m agent.benchmark_serve [--model weights/ik-tiny]``.

1. IPC overhead per tick: one plan request with three 288 x 160 camera images (the carla-3cam rig)
   against a server whose model is a stub that answers at once, so the round trip is all transport:
   encoding, the Unix-socket hop both ways, the server's parsing and checks, decoding.
2. Throughput: N = 1, 2, 4 client processes planning back to back against one server, compared with
   N processes that each hold the model in-process (``--num-threads`` torch threads per process, also
   the server's). Reports plans/s over all clients and the latency per plan seen by a client. Each N
   runs both modes back to back (the order flips every round, ``--rounds``), so a pair sees about the
   same load on a shared machine.

Every worker plans on its own random inputs with the agent's :class:`agent.planning.Planner`, so the
requests are what the agent sends (``num_samples`` from the model's agent.yaml unless given). Results
go to ``--out`` (JSON, atomic) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.metric_info import write_json_atomic
from agent.planning import ModelGeometry, Plan, PlanError, Planner, PlanRequest

REPO = Path(__file__).resolve().parent.parent


class _StubRunner:
    """A model that answers at once with a zero trajectory (IPC overhead only)."""

    def __init__(self, geometry: ModelGeometry) -> None:
        self.geometry = geometry

    def run_batch(self, requests: list[PlanRequest]) -> list[Plan | PlanError]:
        zeros = np.zeros((self.geometry.num_waypoints, 2))
        return [Plan(trajectory=zeros, timings={}) for _ in requests]


def _stub_server(address: str, geometry: ModelGeometry) -> None:
    import zmq

    from agent.serve import PlanServer

    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.bind(address)
    server = PlanServer(_StubRunner(geometry), model="stub", device="cpu", max_batch=8, max_wait_ms=0.0,
                        parent_pid=os.getppid())
    server.serve(socket)


def _percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {"median": float(np.median(array)), "p90": float(np.percentile(array, 90)),
            "p99": float(np.percentile(array, 99)), "mean": float(array.mean())}


def _random_inputs(geometry: ModelGeometry, rng: np.random.Generator) -> tuple:
    h, w = geometry.image_size
    images = rng.integers(0, 256, size=(geometry.num_cameras, h, w, 3), dtype=np.uint8)
    return images, int(rng.choice([1, 2, 3, 4])), float(rng.uniform(0, 12)), float(rng.normal()), rng.normal(size=2) * 15


def ipc_overhead(ticks: int, address: str) -> dict[str, Any]:
    """Round-trip ms per plan request with 3 x 288 x 160 images against the stub server."""
    from agent.plan_client import ServerClient

    geometry = ModelGeometry(num_cameras=3, image_size=(160, 288), num_waypoints=6, waypoint_dt=0.5)
    server = mp.get_context("fork").Process(target=_stub_server, args=(address, geometry), daemon=True)
    server.start()
    client = ServerClient(address, 10.0)
    try:
        client.open()
        planner = Planner(client, seed=0)
        inputs = _random_inputs(geometry, np.random.default_rng(0))
        rgb_bytes = inputs[0].nbytes
        for _ in range(50):  # warm-up
            planner.plan(*inputs)
        times = []
        for _ in range(ticks):
            start = time.perf_counter()
            planner.plan(*inputs)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        client.close()
        server.terminate()
        server.join(10)
    return {"ticks": ticks, "image_bytes": rgb_bytes, "round_trip_ms": _percentiles(times)}


# --------------------------------------------------------------------------- throughput workers
def _worker(kind: str, index: int, model: str, address: str | None, plans: int, num_samples: int,
            num_threads: int, device: str, ready: Any, go: Any, results: Any) -> None:
    try:
        if kind == "server":
            from agent.plan_client import ServerClient

            backend = ServerClient(address, 120.0)
            backend.open()
        else:
            import torch

            from agent.model import load_pipeline

            torch.set_num_threads(num_threads)
            from agent.plan_runner import PlanRunner

            backend = PlanRunner(load_pipeline(model, device=device), device=device)
        planner = Planner(backend, seed=index, num_samples=num_samples)
        rng = np.random.default_rng(index)
        inputs = [_random_inputs(backend.geometry, rng) for _ in range(8)]
        for _ in range(5):  # warm-up (first-call allocations)
            planner.plan(*inputs[0])
        ready.put(index)
        go.wait()
        latencies, batches = [], []
        start = time.perf_counter()
        for k in range(plans):
            t0 = time.perf_counter()
            planner.plan(*inputs[k % len(inputs)])
            latencies.append((time.perf_counter() - t0) * 1e3)
            batches.append(getattr(backend, "last_batch_size", 1))
        elapsed = time.perf_counter() - start
        backend.close()
        results.put({"index": index, "elapsed_s": elapsed, "latencies_ms": latencies, "batches": batches})
    except Exception as exc:  # reported to the parent, which fails loudly
        ready.put(index)
        results.put({"index": index, "error": repr(exc)})


def throughput(kind: str, clients: int, model: str, address: str | None, plans: int, num_samples: int,
               num_threads: int, device: str = "cpu") -> dict[str, Any]:
    """N workers planning back to back: aggregate plans/s and per-plan latency."""
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(kind, i, model, address, plans, num_samples, num_threads,
                                               device, ready, go, results)) for i in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)
    go.set()
    outs = [results.get(timeout=1200) for _ in procs]
    for p in procs:
        p.join(60)
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"{kind} worker failed: {errors[0]}")
    wall = max(o["elapsed_s"] for o in outs)
    latencies = [v for o in outs for v in o["latencies_ms"]]
    batches = [b for o in outs for b in o["batches"]]
    return {"kind": kind, "clients": clients, "plans_per_client": plans, "wall_s": wall,
            "plans_per_s": clients * plans / wall, "latency_ms": _percentiles(latencies),
            "mean_batch": float(statistics.mean(batches))}


def _start_server(model: str, address: str, num_threads: int, max_wait_ms: float,
                  device: str = "cpu") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "agent.serve", "--model", model, "--listen", address,
                             "--device", device,
                             "--num-threads", str(num_threads), "--max-wait-ms", str(max_wait_ms),
                             "--log-level", "WARNING"], env=env, cwd=str(REPO), start_new_session=True)


def _wait_ready(address: str, process: subprocess.Popen, timeout_s: float = 600.0) -> None:
    from agent.plan_client import ServerClient, ServerSetupError

    deadline = time.monotonic() + timeout_s
    while True:
        client = ServerClient(address, 10.0)
        try:
            client.open()
            return
        except ServerSetupError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not come up (status {process.poll()})") from None
        finally:
            client.close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
    process.wait(30)


def _shipped_num_samples(model: Path) -> int:
    config = model / "agent.yaml"
    if config.is_file():
        import yaml

        return int((yaml.safe_load(config.read_text()) or {}).get("num_samples", 1))
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.benchmark_serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "weights" / "ik-tiny"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--plans", type=int, default=40, help="plans per client")
    parser.add_argument("--ipc-ticks", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=None, help="default: the model's agent.yaml")
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads per process (server included)")
    parser.add_argument("--device", default="cpu", help="torch device of the server and the in-process agents")
    parser.add_argument("--max-wait-ms", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of the throughput table (order flipped)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=None, help="results JSON")
    args = parser.parse_args(argv)
    model = os.path.realpath(args.model)
    num_samples = args.num_samples or _shipped_num_samples(Path(model))
    report: dict[str, Any] = {"model": model, "device": args.device, "num_samples": num_samples,
                              "num_threads": args.num_threads,
                              "cpus": os.cpu_count(), "max_wait_ms": args.max_wait_ms}
    with tempfile.TemporaryDirectory(prefix="ik-bench-") as tmp:
        report["ipc"] = ipc_overhead(args.ipc_ticks, f"ipc://{tmp}/stub.sock")
        ipc = report["ipc"]["round_trip_ms"]
        print(f"IPC round trip, 3 x 288x160 RGB ({report['ipc']['image_bytes']} bytes): median {ipc['median']:.3f} ms, "
              f"p90 {ipc['p90']:.3f} ms, p99 {ipc['p99']:.3f} ms", flush=True)
        if not args.skip_throughput:
            rows = []
            address = f"ipc://{tmp}/model.sock"
            server = _start_server(model, address, args.num_threads, args.max_wait_ms, args.device)
            try:
                _wait_ready(address, server)
                for round_index in range(args.rounds):
                    for n in args.clients:  # both modes back to back: the same machine load for the pair
                        kinds = ("server", "inprocess") if round_index % 2 == 0 else ("inprocess", "server")
                        for kind in kinds:
                            row = throughput(kind, n, model, address if kind == "server" else None, args.plans,
                                             num_samples, args.num_threads, args.device)
                            row["round"] = round_index
                            rows.append(row)
                            print(json.dumps(row), flush=True)
            finally:
                _stop(server)
            report["throughput"] = rows
            print("\n| round | clients | mode | plans/s (all clients) | latency median / p90 (ms) | mean batch |")
            print("|---|---|---|---|---|---|")
            for row in sorted(rows, key=lambda r: (r["round"], r["clients"], r["kind"])):
                lat = row["latency_ms"]
                print(f"| {row['round'] + 1} | {row['clients']} | {row['kind']} | {row['plans_per_s']:.1f} | "
                      f"{lat['median']:.1f} / {lat['p90']:.1f} | {row['mean_batch']:.2f} |")
    if args.out:
        write_json_atomic(Path(args.out), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CARLA backend: one CARLA server per worker and one leaderboard evaluator subprocess per route.

For users with CARLA and a leaderboard checkout (CARLA Leaderboard 2.0 or Bench2Drive's). Per
worker the backend owns a server started as::

    CarlaUE4.sh -RenderOffScreen -nosound -carla-rpc-port=P -carla-streaming-port=P+1 -graphicsadapter=G

and per route runs ``python leaderboard/leaderboard_evaluator.py --routes <one-route.xml>
--routes-subset <id> --agent A --agent-config C --checkpoint <json> --port P
--traffic-manager-port T --traffic-manager-seed S --timeout ...`` in its own process group, reads
the checkpoint JSON back and turns its record into a :class:`~carla_eval.backend.RouteOutcome`.
Commands are argument lists (never shell strings). Ports come from the worker's slot number:
``P = rpc_base + stride * slot`` (P, P+1 streaming, P+2 secondary) and
``T = tm_base + stride * slot``, so workers on one machine never clash; a busy block is skipped.
Processes are stopped by the process-group id of the PIDs this backend started (never by name).

A route the evaluator reports as "Failed - Simulation crashed" (or a server that died) restarts
the server and raises, so the harness retries the route. The evaluator loads the agent file
itself (``loads_agent_from_file``), so there are no per-tick callbacks and no videos here; use
the evaluator's ``--record`` for CARLA recordings.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from carla_eval import scoring
from carla_eval.backend import RouteOutcome, TickInfo
from carla_eval.results import default_save_name, route_length
from carla_eval.routes import RouteConfig, write_routes_file


class CarlaBackendError(RuntimeError):
    """CARLA or the evaluator failed (the harness retries the route)."""


# ------------------------------------------------------------------------------------ ports
@dataclass(frozen=True)
class CarlaPorts:
    rpc: int  # -carla-rpc-port, the evaluator's --port
    streaming: int  # rpc + 1
    secondary: int  # rpc + 2 (CARLA's multi-GPU port; kept free)
    traffic_manager: int

    def all(self) -> tuple[int, ...]:
        return (self.rpc, self.streaming, self.secondary, self.traffic_manager)


def allocate_ports(slot: int, rpc_base: int = 2000, tm_base: int = 8000, stride: int = 10, max_slots: int = 512) -> CarlaPorts:
    """Ports of worker ``slot`` (0-based, < ``max_slots``).

    CARLA blocks ``[rpc_base, rpc_base + stride * max_slots)`` and traffic-manager blocks
    ``[tm_base, ...)`` must not overlap, so no two slots can ever share a port.
    """
    if not 0 <= slot < max_slots:
        raise ValueError(f"worker slot must be in [0, {max_slots}), got {slot}")
    if stride < 3:
        raise ValueError(f"port stride must be >= 3 (rpc, streaming, secondary), got {stride}")
    if abs(tm_base - rpc_base) < stride * max_slots:
        raise ValueError(
            f"CARLA ports from {rpc_base} and traffic-manager ports from {tm_base} overlap for {max_slots} slots of "
            f"{stride} ports; move tm_base at least {stride * max_slots} away"
        )
    rpc = rpc_base + stride * slot
    ports = CarlaPorts(rpc, rpc + 1, rpc + 2, tm_base + stride * slot)
    if max(ports.all()) > 65535:
        raise ValueError(f"slot {slot} needs ports above 65535 ({ports})")
    return ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def find_free_ports(slot: int, rpc_base: int = 2000, tm_base: int = 8000, stride: int = 10, slots_per_round: int = 64,
                    tries: int = 8, is_free: Callable[[int], bool] = port_is_free) -> CarlaPorts:
    """The first block of ``slot`` (then ``slot + slots_per_round``, ...) whose ports are all free."""
    for k in range(tries):
        ports = allocate_ports(slot + k * slots_per_round, rpc_base, tm_base, stride)
        if all(is_free(p) for p in ports.all()):
            return ports
    raise CarlaBackendError(f"no free CARLA port block for worker slot {slot} after {tries} tries")


# --------------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class CarlaServerConfig:
    carla_root: Path
    gpu: int = 0  # -graphicsadapter (CARLA ignores CUDA_VISIBLE_DEVICES)
    extra_args: tuple[str, ...] = ()


def server_command(cfg: CarlaServerConfig, ports: CarlaPorts) -> list[str]:
    return [
        str(Path(cfg.carla_root) / "CarlaUE4.sh"),
        "-RenderOffScreen",
        "-nosound",
        f"-carla-rpc-port={ports.rpc}",
        f"-carla-streaming-port={ports.streaming}",
        f"-graphicsadapter={cfg.gpu}",
        *cfg.extra_args,
    ]


@dataclass(frozen=True)
class EvaluatorConfig:
    leaderboard_root: Path
    scenario_runner_root: Path
    carla_root: Path | None = None  # adds PythonAPI/carla to PYTHONPATH (agents importing `agents.*`)
    python: str = sys.executable
    host: str = "localhost"
    timeout_s: float = 600.0  # --timeout (client / agent time-out)
    track: str = "SENSORS"
    debug: int = 0
    record_dir: Path | None = None  # --record (CARLA recorder logs)
    extra_args: tuple[str, ...] = ()


def evaluator_command(
    cfg: EvaluatorConfig,
    *,
    routes: Path,
    subset: str,
    agent: str,
    agent_config: str,
    checkpoint: Path,
    ports: CarlaPorts,
    tm_seed: int = 0,
    repetitions: int = 1,
    resume: bool = False,
) -> list[str]:
    cmd = [
        cfg.python,
        str(Path(cfg.leaderboard_root) / "leaderboard" / "leaderboard_evaluator.py"),
        f"--host={cfg.host}",
        f"--port={ports.rpc}",
        f"--traffic-manager-port={ports.traffic_manager}",
        f"--traffic-manager-seed={tm_seed}",
        f"--timeout={cfg.timeout_s:g}",
        f"--routes={routes}",
        f"--routes-subset={subset}",
        f"--repetitions={repetitions}",
        f"--agent={agent}",
        f"--agent-config={agent_config}",
        f"--track={cfg.track}",
        f"--checkpoint={checkpoint}",
        f"--debug={cfg.debug}",
    ]
    if resume:
        cmd.append("--resume=1")  # the evaluator parses it with type=bool: any non-empty string is True
    if cfg.record_dir is not None:
        cmd.append(f"--record={cfg.record_dir}")
    cmd.extend(cfg.extra_args)
    return cmd


def evaluator_env(cfg: EvaluatorConfig, base: Mapping[str, str], save_path: Path | None = None) -> dict[str, str]:
    """Environment of the evaluator: PYTHONPATH with the leaderboard, scenario_runner (and CARLA's
    PythonAPI); ``SAVE_PATH`` for Bench2Drive agents that write metric_info / images."""
    env = dict(base)
    paths = [str(cfg.leaderboard_root), str(cfg.scenario_runner_root)]
    if cfg.carla_root is not None:
        paths += [str(Path(cfg.carla_root) / "PythonAPI" / "carla"), str(Path(cfg.carla_root) / "PythonAPI")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if save_path is not None:
        env["SAVE_PATH"] = str(save_path)
    return env


# -------------------------------------------------------------------------------- processes
class ManagedProcess:
    """A child started in its own process group (session); stopped through that group only."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str] | None = None, log_path: Path | None = None,
                 cwd: Path | None = None) -> None:
        self.cmd = list(cmd)
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> int:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")
        else:
            log = subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        return self.proc.pid

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None) -> int | None:
        """Exit code, or None when still running after ``timeout`` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the child's process group, then SIGKILL it after ``grace_s``."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # session leader: its group id is its pid
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
                # the leader is gone; make sure the rest of its group is too
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass


def wait_for_port(host: str, port: int, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.5)
    return False


# ------------------------------------------------------------------------------- checkpoint
def read_checkpoint(path: str | Path) -> list[dict[str, Any]]:
    """Records of a leaderboard checkpoint JSON (``_checkpoint.records``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CarlaBackendError(f"the evaluator wrote no checkpoint at {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CarlaBackendError(f"checkpoint {path} is not valid JSON: {exc}") from exc
    try:
        records = data["_checkpoint"]["records"]
    except (KeyError, TypeError) as exc:
        raise CarlaBackendError(f"checkpoint {path} has no _checkpoint.records") from exc
    if not isinstance(records, list):
        raise CarlaBackendError(f"checkpoint {path}: _checkpoint.records is not a list")
    return records


def record_to_outcome(record: Mapping[str, Any], route: RouteConfig, repetition: int,
                      metric_info: dict[str, Any] | None = None) -> RouteOutcome:
    """A leaderboard record (from the evaluator's checkpoint) as our RouteOutcome."""
    infractions = scoring.empty_infractions()
    for key, msgs in (record.get("infractions") or {}).items():
        if key in infractions:
            infractions[key] = [str(m) for m in msgs]
    scores = record.get("scores") or {}
    meta = record.get("meta") or {}
    status = str(record.get("status", scoring.STATUS_FAILED))
    return RouteOutcome(
        route=route,
        repetition=repetition,
        status=status,
        infractions=infractions,
        scores={k: float(scores.get(k, 0.0)) for k in ("score_route", "score_penalty", "score_composed")},
        route_length=float(meta.get("route_length", route_length(route))),
        duration_game=float(meta.get("duration_game", 0.0)),
        duration_system=float(meta.get("duration_system", 0.0)),
        scenario_name=str(record.get("scenario_name") or route.scenario_type),
        town_name=str(record.get("town_name") or route.town),
        ability="",
        save_name=str(record.get("save_name") or default_save_name(route, repetition)),
        metric_info=metric_info or {},
        trace=None,
        error=None if status in scoring.SUCCESS_STATUSES else status,
    )


# ----------------------------------------------------------------------------------- backend
@dataclass
class CarlaBackend:
    """See the module docstring. Options map to ``--backend-option KEY=VALUE``."""

    carla_root: str
    leaderboard_root: str
    scenario_runner_root: str
    worker_index: int = 0
    gpu: int = 0
    rpc_base: int = 2000
    tm_base: int = 8000
    port_stride: int = 10
    work_dir: str = "carla_eval_work"
    timeout_s: float = 600.0
    route_wall_timeout_s: float | None = None
    startup_timeout_s: float = 120.0
    python: str = sys.executable
    extra_server_args: tuple[str, ...] = ()
    record_dir: str | None = None
    name: str = field(default="carla", init=False)
    loads_agent_from_file: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.ports = find_free_ports(self.worker_index, self.rpc_base, self.tm_base, self.port_stride)
        self.server_cfg = CarlaServerConfig(Path(self.carla_root), self.gpu, tuple(self.extra_server_args))
        self.eval_cfg = EvaluatorConfig(
            Path(self.leaderboard_root), Path(self.scenario_runner_root), Path(self.carla_root), self.python,
            timeout_s=self.timeout_s, record_dir=Path(self.record_dir) if self.record_dir else None,
        )
        self.root = Path(self.work_dir) / f"worker{self.worker_index}"
        self._server: ManagedProcess | None = None
        self._evaluator: ManagedProcess | None = None

    def _ensure_server(self) -> None:
        if self._server is not None and self._server.running():
            return
        self._stop_server()
        self._server = ManagedProcess(server_command(self.server_cfg, self.ports), log_path=self.root / "carla_server.log")
        self._server.start()
        if not wait_for_port("127.0.0.1", self.ports.rpc, self.startup_timeout_s, self._server.running):
            self._stop_server()
            raise CarlaBackendError(f"CARLA server did not open port {self.ports.rpc} within {self.startup_timeout_s} s")

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def create_expert_agent(self) -> Any:
        raise CarlaBackendError("the CARLA backend has no built-in expert: pass --agent PATH.py (e.g. an autopilot agent file)")

    def run_route(self, route: RouteConfig, agent: Any, agent_config: str, *, repetition: int = 0, seed: int = 0,
                  on_tick: Callable[[TickInfo], None] | None = None) -> RouteOutcome:
        if not isinstance(agent, (str, os.PathLike)):
            raise TypeError("the CARLA backend runs agent FILES through the leaderboard evaluator")
        self._ensure_server()
        rid = route.record_id(repetition)
        routes_xml = self.root / "routes" / f"{rid}.xml"
        routes_xml.parent.mkdir(parents=True, exist_ok=True)
        write_routes_file([route], routes_xml)
        checkpoint = self.root / "checkpoints" / f"{rid}.json"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.unlink(missing_ok=True)
        save_path = self.root / "save" / rid
        cmd = evaluator_command(self.eval_cfg, routes=routes_xml, subset=route.route_id, agent=str(agent),
                                agent_config=agent_config, checkpoint=checkpoint, ports=self.ports, tm_seed=seed)
        self._evaluator = ManagedProcess(cmd, evaluator_env(self.eval_cfg, os.environ, save_path),
                                         log_path=self.root / "logs" / f"{rid}.log")
        self._evaluator.start()
        code = self._evaluator.wait(self.route_wall_timeout_s)
        if code is None:
            self._evaluator.stop()
            self._stop_server()
            raise CarlaBackendError(f"{rid}: the evaluator exceeded {self.route_wall_timeout_s} s")
        self._evaluator = None
        records = read_checkpoint(checkpoint) if checkpoint.exists() else []
        if not records:
            self._stop_server()
            raise CarlaBackendError(f"{rid}: the evaluator exited with code {code} and recorded nothing")
        record = records[-1]
        if scoring.STATUS_SIM_CRASH in str(record.get("status", "")) or not self._server_alive():
            self._stop_server()
            raise CarlaBackendError(f"{rid}: CARLA crashed ({record.get('status')}); server restarted")
        metric_info = None
        name = record.get("save_name")
        if name and (save_path / str(name) / "metric_info.json").is_file():
            metric_info = json.loads((save_path / str(name) / "metric_info.json").read_text(encoding="utf-8"))
        return record_to_outcome(record, route, repetition, metric_info)

    def _server_alive(self) -> bool:
        return self._server is not None and self._server.running()

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.stop()
            self._evaluator = None
        self._stop_server()

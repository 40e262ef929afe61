"""CARLA backend: leaderboard evaluator subprocesses, in two modes (docs/leaderboard.md).

- ``mode="leaderboard"`` (CARLA Leaderboard 2.0). Per worker the backend owns a server started as::

      CarlaUE4.sh -RenderOffScreen -nosound -carla-rpc-port=P -carla-streaming-port=P+1 -graphicsadapter=G

  and waits until it answers ``carla.Client(host, P).get_server_version()`` (run with the
  evaluator's Python, which has ``carla``). Before every route it checks the server again and
  restarts a dead or hung one on a port block that is free (a port still held is never reused).
- ``mode="bench2drive"``. Bench2Drive's evaluator starts its own server from ``$CARLA_ROOT`` with
  ``-graphicsadapter=<--gpu-rank>`` and waits 30 s; it opens ``leaderboard/data/weather.xml`` by a
  relative path. So the backend starts no server, sets ``CARLA_ROOT``, passes ``--gpu-rank`` and
  runs the evaluator in the Bench2Drive root; the evaluator's server is found by its process tag
  and stopped with the evaluator's group (:mod:`carla_eval.supervisor`).

Per route: ``python leaderboard/leaderboard_evaluator.py --routes <one-route.xml> --routes-subset
<id> --agent A --agent-config C --checkpoint <json> --port P --traffic-manager-port T
--traffic-manager-seed S --timeout ...`` in its own session, with ``CUDA_VISIBLE_DEVICES=G`` for the
agent; the checkpoint's record becomes the :class:`~carla_eval.backend.RouteOutcome` (and its
``sensors`` the run's sensors). Commands are argument lists (never shell strings). Ports come from
the worker's slot: ``P = rpc_base + stride * slot`` (P, P+1 streaming, P+2 secondary) and ``T =
tm_base + stride * slot``, so workers on one machine never clash; a busy block is skipped.

Every process started here carries the backend's process tag and is recorded by process group in a
:class:`~carla_eval.supervisor.ProcessGroupRegistry`, whose supervisor process stops them all when
the worker dies; the backend itself stops them by group on its clean paths (route time limit,
close). Nothing is ever stopped by name. The evaluator loads the agent file itself
(``loads_agent_from_file``), so there are no per-tick callbacks and no videos here; ``record_dir``
(``carla-eval run --record``) keeps a CARLA recorder file per route for ``carla-eval replay``.
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
from carla_eval.supervisor import ProcessGroupRegistry, new_tag


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
    gpu_rank: int | None = None  # Bench2Drive's --gpu-rank (the server's -graphicsadapter)
    extra_pythonpath: tuple[str, ...] = ()  # e.g. CARLA's PythonAPI/carla/dist/carla-0.9.15-py3.7-linux-x86_64.egg


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
    if cfg.gpu_rank is not None:
        cmd.append(f"--gpu-rank={cfg.gpu_rank}")
    cmd.extend(cfg.extra_args)
    return cmd


def evaluator_env(cfg: EvaluatorConfig, base: Mapping[str, str], save_path: Path | None = None,
                  cuda_device: int | None = None, set_carla_root: bool = False) -> dict[str, str]:
    """Environment of the evaluator: PYTHONPATH with the leaderboard, scenario_runner (and CARLA's
    PythonAPI); ``SAVE_PATH`` for Bench2Drive agents that write metric_info / images;
    ``CUDA_VISIBLE_DEVICES`` for the agent's GPU; ``CARLA_ROOT`` (Bench2Drive starts its server from it)."""
    env = dict(base)
    paths = [str(cfg.leaderboard_root), str(cfg.scenario_runner_root)]
    if cfg.carla_root is not None:
        paths += [str(Path(cfg.carla_root) / "PythonAPI" / "carla"), str(Path(cfg.carla_root) / "PythonAPI")]
    paths += [str(p) for p in cfg.extra_pythonpath]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if save_path is not None:
        env["SAVE_PATH"] = str(save_path)
    if cuda_device is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(cuda_device)
    if set_carla_root:
        if cfg.carla_root is None:
            raise ValueError("Bench2Drive's evaluator needs CARLA_ROOT: give carla_root")
        env["CARLA_ROOT"] = str(cfg.carla_root)
    return env


# Readiness probe, run with the evaluator's Python (the harness's own Python may have no `carla`).
SERVER_PROBE = (
    "import sys, carla\n"
    "client = carla.Client(sys.argv[1], int(sys.argv[2]))\n"
    "client.set_timeout(float(sys.argv[3]))\n"
    "print(client.get_server_version())\n"
)


def probe_command(python: str, host: str, port: int, timeout_s: float) -> list[str]:
    """``carla.Client(host, port).get_server_version()`` with ``timeout_s``, as a command."""
    return [python, "-c", SERVER_PROBE, host, str(port), f"{timeout_s:g}"]


# -------------------------------------------------------------------------------- processes
class ManagedProcess:
    """A child started in its own process group (session); stopped through that group only.

    With a ``registry`` the child carries the registry's process tag and its group is recorded
    there (so a supervisor stops it if the owner dies)."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str] | None = None, log_path: Path | None = None,
                 cwd: Path | None = None, registry: ProcessGroupRegistry | None = None, what: str = "") -> None:
        self.cmd = list(cmd)
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.cwd = cwd
        self.registry = registry
        self.what = what or Path(self.cmd[0]).name
        self.proc: subprocess.Popen | None = None

    def start(self) -> int:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")
        else:
            log = subprocess.DEVNULL
        env = self.env
        if self.registry is not None:
            env = self.registry.env(dict(os.environ) if env is None else env)
        try:
            self.proc = subprocess.Popen(self.cmd, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        if self.registry is not None:
            self.registry.add(self.proc.pid, self.what)
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
    return read_checkpoint_file(path)[0]


def read_checkpoint_file(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(records, sensors) of a leaderboard checkpoint JSON."""
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
    sensors = data.get("sensors") if isinstance(data.get("sensors"), list) else []
    return records, [str(s) for s in sensors]


def record_to_outcome(record: Mapping[str, Any], route: RouteConfig, repetition: int,
                      metric_info: dict[str, Any] | None = None, sensor_icons: Sequence[str] = (),
                      weather_id: int | str | None = None, recording: str | None = None) -> RouteOutcome:
    """A leaderboard record (from the evaluator's checkpoint) as our RouteOutcome.

    Leaderboard 2.0 records have no scenario_name / town_name / save_name / weather_id; Bench2Drive's
    have them (its scenario_name is the scenario's name, e.g. ``ParkedObstacle_1``, and its
    weather_id a string). The route file's scenario type is kept as scenario_name when the record
    has none; abilities are grouped by the route file's type either way (carla_eval.metrics)."""
    from carla_eval.result_formats import normalise_weather_id

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
        weather_id=normalise_weather_id(record["weather_id"]) if record.get("weather_id") is not None else weather_id,
        sensor_icons=[str(s) for s in sensor_icons],
        recording=recording,
    )


# ----------------------------------------------------------------------------------- backend
MODE_LEADERBOARD = "leaderboard"
MODE_BENCH2DRIVE = "bench2drive"
B2D_WEATHER_XML = Path("leaderboard") / "data" / "weather.xml"  # opened by Bench2Drive's evaluator, relative to its cwd

# carla_garage's resubmission rule (evaluate_routes_slurm.py): these statuses are run again.
GARAGE_RETRY_STATUSES: tuple[str, ...] = (
    scoring.STATUS_AGENT_SETUP,
    scoring.STATUS_FAILED,
    scoring.STATUS_SIM_CRASH,
    scoring.STATUS_AGENT_CRASH,
)


@dataclass
class CarlaBackend:
    """See the module docstring. Options map to ``--backend-option KEY=VALUE``.

    ``mode``: ``leaderboard`` (the backend owns the server) or ``bench2drive`` (the evaluator starts
    it; ``bench2drive_root`` is the Bench2Drive checkout, and leaderboard_root / scenario_runner_root
    default to its ``leaderboard`` / ``scenario_runner`` folders). ``gpu``: the server's graphics
    adapter (``-graphicsadapter`` / ``--gpu-rank``) and the agent's ``CUDA_VISIBLE_DEVICES``
    (``cuda_visible_devices=false`` keeps the inherited one). ``route_wall_timeout_s``: the clean
    time limit of one evaluator run (the harness sets it below ``--route-timeout``).
    ``startup_timeout_s``: how long a new server may take to answer; ``probe_timeout_s``: the client
    time-out of each readiness probe. ``stop_grace_s``: SIGTERM -> SIGKILL delay when stopping.
    ``weather_table``: a weather.xml (Bench2Drive's) to name the weather of routes without a
    ``weather_id`` (leaderboard mode; Bench2Drive's evaluator names it itself).
    """

    carla_root: str
    leaderboard_root: str = ""
    scenario_runner_root: str = ""
    mode: str = MODE_LEADERBOARD
    bench2drive_root: str = ""
    worker_index: int = 0
    gpu: int = 0
    cuda_visible_devices: bool = True
    rpc_base: int = 2000
    tm_base: int = 8000
    port_stride: int = 10
    work_dir: str = "carla_eval_work"
    timeout_s: float = 600.0
    route_wall_timeout_s: float | None = None
    startup_timeout_s: float = 120.0
    probe_timeout_s: float = 10.0
    stop_grace_s: float = 10.0
    python: str = sys.executable
    extra_server_args: tuple[str, ...] = ()
    extra_pythonpath: tuple[str, ...] = ()
    record_dir: str | None = None
    weather_table: str | None = None
    supervise: bool = True
    name: str = field(default="carla", init=False)
    loads_agent_from_file: bool = field(default=True, init=False)
    default_retry_statuses: tuple[str, ...] = field(default=GARAGE_RETRY_STATUSES, init=False)

    def __post_init__(self) -> None:
        if self.mode not in (MODE_LEADERBOARD, MODE_BENCH2DRIVE):
            raise ValueError(f"CARLA backend mode must be {MODE_LEADERBOARD!r} or {MODE_BENCH2DRIVE!r}, got {self.mode!r}")
        self.cwd: Path | None = None
        if self.mode == MODE_BENCH2DRIVE:
            if not self.bench2drive_root:
                raise ValueError("mode=bench2drive needs bench2drive_root (the Bench2Drive checkout)")
            b2d = Path(self.bench2drive_root).resolve()
            if not (b2d / B2D_WEATHER_XML).is_file():
                raise ValueError(f"bench2drive_root {b2d} has no {B2D_WEATHER_XML} (Bench2Drive's evaluator opens it "
                                 f"relative to its working directory)")
            self.leaderboard_root = self.leaderboard_root or str(b2d / "leaderboard")
            self.scenario_runner_root = self.scenario_runner_root or str(b2d / "scenario_runner")
            self.cwd = b2d
            if self.weather_table is None:
                self.weather_table = str(b2d / B2D_WEATHER_XML)
        elif not (self.leaderboard_root and self.scenario_runner_root):
            raise ValueError("mode=leaderboard needs leaderboard_root and scenario_runner_root")
        self.root = Path(self.work_dir).resolve() / f"worker{self.worker_index}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.registry = ProcessGroupRegistry(new_tag(f"w{self.worker_index}"), self.root / "process_groups.jsonl",
                                             supervise=self.supervise, grace_s=self.stop_grace_s)
        self.ports = find_free_ports(self.worker_index, self.rpc_base, self.tm_base, self.port_stride)
        self.server_cfg = CarlaServerConfig(Path(self.carla_root), self.gpu, tuple(self.extra_server_args))
        record = Path(self.record_dir).resolve() if self.record_dir else None  # made at the first route
        self.eval_cfg = EvaluatorConfig(
            Path(self.leaderboard_root), Path(self.scenario_runner_root), Path(self.carla_root), self.python,
            timeout_s=self.timeout_s, record_dir=record,
            gpu_rank=self.gpu if self.mode == MODE_BENCH2DRIVE else None,
            extra_pythonpath=tuple(self.extra_pythonpath),
        )
        self._weather_table = None
        if self.weather_table:
            from carla_eval.weather import read_weather_table

            self._weather_table = read_weather_table(self.weather_table)
        self._server: ManagedProcess | None = None
        self._evaluator: ManagedProcess | None = None
        self._last_probe_error = ""
        self.server_starts = 0

    # ------------------------------------------------------------------------------ server
    def _probe(self, timeout_s: float) -> bool:
        """Does the server answer ``get_server_version()`` (asked with the evaluator's Python)?"""
        env = evaluator_env(self.eval_cfg, os.environ)  # untagged: the probe stays in this process's group
        try:
            proc = subprocess.run(probe_command(self.python, "127.0.0.1", self.ports.rpc, timeout_s), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout_s + 10.0,
                                  check=False)
        except subprocess.TimeoutExpired:
            self._last_probe_error = f"the probe ran past {timeout_s + 10.0:g} s"
            return False
        self._last_probe_error = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] and \
            proc.stderr.decode(errors="replace").strip().splitlines()[-1]
        return proc.returncode == 0

    def _ensure_server(self) -> None:
        if self.mode != MODE_LEADERBOARD:
            return
        if self._server is not None and self._server.running() and self._probe(self.probe_timeout_s):
            return
        self._stop_server()
        # never reuse a block whose ports are still held (a dying server, another program)
        if not all(port_is_free(p) for p in self.ports.all()):
            self.ports = find_free_ports(self.worker_index, self.rpc_base, self.tm_base, self.port_stride)
        self._server = ManagedProcess(server_command(self.server_cfg, self.ports), log_path=self.root / "carla_server.log",
                                      registry=self.registry, what="carla server")
        self._server.start()
        self.server_starts += 1
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not self._server.running():
                break
            if self._probe(min(self.probe_timeout_s, max(1.0, deadline - time.monotonic()))):
                return
            time.sleep(0.5)
        alive = self._server.running()
        self._stop_server()
        why = f" (last probe: {self._last_probe_error})" if self._last_probe_error else ""
        if "No module named 'carla'" in why:
            why += f"; the evaluator's Python {self.python} must import carla (option python / extra_pythonpath)"
        raise CarlaBackendError(f"CARLA server on port {self.ports.rpc} " +
                                (f"did not answer within {self.startup_timeout_s} s" if alive else "exited while starting")
                                + why)

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop(self.stop_grace_s)
            self._server = None

    def _server_alive(self) -> bool:
        return self._server is not None and self._server.running()

    def _server_pgids(self) -> set[int]:
        return {self._server.pid} if self._server is not None and self._server.pid is not None else set()

    # ------------------------------------------------------------------------------ routes
    def create_expert_agent(self) -> Any:
        raise CarlaBackendError("the CARLA backend has no built-in expert: pass --agent PATH.py (e.g. an autopilot agent file)")

    def route_weather(self, route: RouteConfig) -> int | str | None:
        from carla_eval.weather import route_weather_id

        return route_weather_id(route, self._weather_table)

    def run_route(self, route: RouteConfig, agent: Any, agent_config: str, *, repetition: int = 0, seed: int = 0,
                  on_tick: Callable[[TickInfo], None] | None = None) -> RouteOutcome:
        if not isinstance(agent, (str, os.PathLike)):
            raise TypeError("the CARLA backend runs agent FILES through the leaderboard evaluator")
        self._ensure_server()
        if self.eval_cfg.record_dir is not None:  # inside the run folder: not before the run writes it
            self.eval_cfg.record_dir.mkdir(parents=True, exist_ok=True)
        rid = route.record_id(repetition)
        routes_xml = self.root / "routes" / f"{rid}.xml"
        routes_xml.parent.mkdir(parents=True, exist_ok=True)
        write_routes_file([route], routes_xml)
        checkpoint = self.root / "checkpoints" / f"{rid}.json"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.unlink(missing_ok=True)
        save_path = self.root / "save" / rid
        save_path.mkdir(parents=True, exist_ok=True)
        cmd = evaluator_command(self.eval_cfg, routes=routes_xml, subset=route.route_id, agent=str(Path(agent).resolve()),
                                agent_config=agent_config, checkpoint=checkpoint, ports=self.ports, tm_seed=seed)
        env = evaluator_env(self.eval_cfg, os.environ, save_path, self.gpu if self.cuda_visible_devices else None,
                            set_carla_root=self.mode == MODE_BENCH2DRIVE)
        self._evaluator = ManagedProcess(cmd, env, log_path=self.root / "logs" / f"{rid}.log", cwd=self.cwd,
                                         registry=self.registry, what=f"evaluator {rid}")
        self._evaluator.start()
        self.registry.start_watching()
        try:
            code = self._evaluator.wait(self.route_wall_timeout_s)
        finally:
            self.registry.stop_watching()
        keep = self._server_pgids()
        if code is None:
            self._evaluator.stop(self.stop_grace_s)
            self._evaluator = None
            self._stop_server()  # a server left mid-route in synchronous mode: restarted before the next route
            self.registry.stop_all()  # and whatever the evaluator started (Bench2Drive's own server)
            raise CarlaBackendError(f"{rid}: the evaluator exceeded {self.route_wall_timeout_s} s; stopped")
        self._evaluator = None
        # whatever the evaluator left behind (Bench2Drive's server, agent helpers) goes with it
        self.registry.stop_all(exclude=keep)
        records, sensors = read_checkpoint_file(checkpoint) if checkpoint.exists() else ([], [])
        if not records:
            self._stop_server()
            raise CarlaBackendError(f"{rid}: the evaluator exited with code {code} and recorded nothing")
        record = records[-1]
        if scoring.STATUS_SIM_CRASH in str(record.get("status", "")) or (self.mode == MODE_LEADERBOARD and not self._server_alive()):
            self._stop_server()  # restarted before the next route; the retry policy decides on this one
        metric_info = None
        name = record.get("save_name")
        if name and (save_path / str(name) / "metric_info.json").is_file():
            metric_info = json.loads((save_path / str(name) / "metric_info.json").read_text(encoding="utf-8"))
        recording = None
        if self.eval_cfg.record_dir is not None:
            log = self.eval_cfg.record_dir / f"RouteScenario_{route.route_id}_rep0.log"
            if log.is_file():  # one route per evaluator run: its repetition index is 0
                target = self.eval_cfg.record_dir / f"{rid}.log"
                if log != target:
                    os.replace(log, target)
                recording = str(target)
        return record_to_outcome(record, route, repetition, metric_info, sensors, self.route_weather(route), recording)

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.stop(self.stop_grace_s)
            self._evaluator = None
        self._stop_server()
        self.registry.close()

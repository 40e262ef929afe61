"""``carla-eval run``: plan the routes, prepare or resume the run folder, run the queue, write files.

Run folder (the main process is its only writer; every file is written atomically)::

    RUN_DIR/run_manifest.json                       identity of the run (resume checks it)
    RUN_DIR/results.json                            leaderboard results, rewritten after every route
    RUN_DIR/metrics.json                            metrics over the run's routes (end of run)
    RUN_DIR/metric_info/<save_name>/metric_info.json  Bench2Drive per-tick vehicle state
    RUN_DIR/traces/<save_name>.npz                  seed + controls + ego track (replay)
    RUN_DIR/videos/<save_name>.mp4                  failure videos
    RUN_DIR/run.log                                 attempts, crashes, notes

Killing the run at any moment loses at most the routes in flight; ``--resume`` runs the rest.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from carla_eval.atomic_io import atomic_write_bytes, atomic_write_json, remove_stale_temporaries
from carla_eval.manifest import ManifestError, RunManifest
from carla_eval.merge import METRIC_INFO_DIRNAME
from carla_eval.metrics import ExpectedRoute, Metrics, compute_metrics
from carla_eval.pool import PoolStartError, wait_ready
from carla_eval.results import (
    RESULTS_FILENAME,
    ResultsFileError,
    ResultsStore,
    failure_record,
    record_from_outcome,
    route_length,
    sensor_icons,
)
from carla_eval.route_job import RouteResult, RouteTask
from carla_eval.routes import RouteConfig, RouteFileError, parse_routes_file, select_routes
from carla_eval.run_config import BackendSpec, RunConfig, route_file_seed, route_seed
from carla_eval.run_lock import RunFolderLocked, RunLock, is_empty_run_folder
from carla_eval.scheduler import GivenUp, Scheduler, SchedulerHooks
from carla_eval import scoring

METRICS_FILENAME = "metrics.json"
TRACES_DIRNAME = "traces"
VIDEOS_DIRNAME = "videos"
RECORDINGS_DIRNAME = "recordings"
LOG_FILENAME = "run.log"
WORKER_START_TIMEOUT_S = 600.0  # workers (simulators) must be ready within this before the folder is written


class RunError(RuntimeError):
    """The run cannot start (bad inputs, a folder that must not be touched, a run that differs)."""


class RunOutputError(RunError):
    """Reading or writing the run's files failed (read-only or full disk, permissions): one line."""


def _os_error_line(exc: OSError, out: Path) -> str:
    what = exc.strerror or str(exc)
    name = exc.filename
    if name is None:
        return f"cannot write to the run folder {out}: {what}; the files written so far are intact (--resume once it can be written)"
    try:
        inside = Path(name).resolve().is_relative_to(out.resolve())
    except (OSError, ValueError):
        inside = False
    if inside or Path(name).resolve() == out.resolve():
        return f"cannot write to the run folder {out}: {what} ({name}); the files written so far are intact (--resume once it can be written)"
    return f"I/O error on {name}: {what}"


@dataclass
class RunPlan:
    routes: list[RouteConfig]
    tasks: dict[str, RouteTask]  # record id -> first attempt, in run order
    expected: list[ExpectedRoute]


@dataclass
class RunSummary:
    run_dir: Path
    recorded: int
    total: int
    interrupted: bool
    metrics: Metrics | None
    videos: list[Path] = field(default_factory=list)

    @property
    def results_path(self) -> Path:
        return self.run_dir / RESULTS_FILENAME

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILENAME


def plan_run(config: RunConfig) -> RunPlan:
    """Routes of the run (file order, subset applied) and one task per route x repetition."""
    try:
        routes = select_routes(parse_routes_file(config.routes_file), config.routes_subset)
    except (RouteFileError, ValueError) as exc:
        raise RunError(str(exc)) from exc
    tasks: dict[str, RouteTask] = {}
    expected: list[ExpectedRoute] = []
    for route in routes:
        for rep in range(config.repetitions):
            rid = route.record_id(rep)
            tasks[rid] = RouteTask(
                record_id=rid, index=len(tasks), route=route, repetition=rep,
                seed=route_seed(config.seed, route.route_id, rep, route_file_seed(route.attributes)), attempt=0, agent=config.agent, video=config.video,
                agent_timeout_s=config.watchdog.agent_limit_s,
            )
            expected.append(ExpectedRoute(rid, route.scenario_type, ""))
    return RunPlan(routes, tasks, expected)


def _check_inputs(config: RunConfig) -> None:
    """Everything about the inputs that can be checked before a file is written or a worker started."""
    from carla_eval.backend_factory import BackendError, check_backend_options, resolve_backend_class

    try:
        backend_cls = resolve_backend_class(config.backend.name)
        check_backend_options(config.backend)
    except BackendError as exc:
        raise RunError(str(exc)) from exc
    if config.record:
        import inspect

        if "record_dir" not in inspect.signature(backend_cls).parameters:
            raise RunError(f"--record keeps CARLA recorder files; backend {config.backend.name!r} has none")
    if config.agent.is_expert and getattr(backend_cls, "loads_agent_from_file", False):
        raise RunError(f"backend {config.backend.name!r} has no built-in expert: pass --agent PATH.py")
    if not config.agent.is_expert:
        agent = Path(config.agent.path)
        if agent.suffix != ".py":
            hint = " (a configuration file goes to --agent-config)" if agent.suffix.lower() in (".yaml", ".yml", ".json", ".toml") else ""
            raise RunError(f"--agent must be a leaderboard agent .py file or 'expert', got {agent}{hint}")
        if not agent.is_file():
            raise RunError(f"agent file not found: {agent}")
        try:
            compile(agent.read_bytes(), str(agent), "exec")
        except (SyntaxError, ValueError) as exc:
            raise RunError(f"agent file {agent} is not valid Python: {exc}") from exc
    if config.agent.config and not Path(config.agent.config).exists():
        raise RunError(f"agent config not found: {config.agent.config}")


def _route_errors(config: RunConfig, plan: RunPlan) -> dict[str, str]:
    """Routes that can never run on the backend (its ``route_error`` check), by route id."""
    from carla_eval.backend_factory import BackendError, backend_route_errors

    try:
        return backend_route_errors(config.backend, plan.routes)
    except BackendError as exc:
        raise RunError(str(exc)) from exc


class RunFolder:
    """The run folder of one session: checked (and locked) before anything is written, then
    created or reopened by :meth:`open`. The lock is held until :meth:`close`."""

    def __init__(self, config: RunConfig, plan: RunPlan, argv: list[str] | None) -> None:
        self.config = config
        self.out = Path(config.out_dir)
        self.expected_ids = list(plan.tasks)
        self.manifest = RunManifest.for_run(config, self.expected_ids, argv)
        self.lock = RunLock(self.out)
        self.store: ResultsStore | None = None
        self._old: RunManifest | None = None

    def check(self) -> None:
        """Refuse a folder that must not be touched, or a resume of another run. Writes nothing but
        the lock file of an existing folder."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunError(f"{out} exists and is not a folder")
        if out.is_dir():
            self._lock()
        if not self.config.resume:
            if out.is_dir() and not is_empty_run_folder(out):
                raise RunError(f"{out} exists and is not empty: refusing to overwrite it (use --resume to continue that run, or another --out)")
            return
        if not out.is_dir():
            raise RunError(f"--resume: {out} does not exist; nothing to resume")
        try:
            old = RunManifest.load(out)
            old.check_resumable_by(self.manifest, allow_code_change=self.config.allow_code_change)
        except ManifestError as exc:
            raise RunError(str(exc)) from exc
        results_path = out / RESULTS_FILENAME
        try:
            self.store = (ResultsStore.load(results_path, self.expected_ids) if results_path.exists()
                          else ResultsStore.create(results_path, self.expected_ids))
        except ResultsFileError as exc:
            raise RunError(f"--resume: {exc}. Nothing was changed; repair or move the file away.") from exc
        self._old = old

    def _lock(self) -> None:
        if self.lock.held:
            return
        try:
            self.lock.acquire()
        except RunFolderLocked as exc:
            raise RunError(str(exc)) from exc

    def open(self) -> ResultsStore:
        """Create the fresh folder, or update the manifest of the resumed one; returns the results."""
        out = self.out
        if not self.config.resume:
            out.mkdir(parents=True, exist_ok=True)
            self._lock()
            if not is_empty_run_folder(out):  # written between check() and now
                raise RunError(f"{out} exists and is not empty: refusing to overwrite it")
            self.manifest.add_session("start", self.manifest.git_revision)
            self.manifest.save(out)
            self.store = ResultsStore.create(out / RESULTS_FILENAME, self.expected_ids)
            self.store.save()
            return self.store
        old, store = self._old, self.store
        assert old is not None and store is not None
        remove_stale_temporaries(out)
        old.settings = self.manifest.settings
        old.adopt_revision(self.manifest.git_revision)
        old.add_session("resume", self.manifest.git_revision)
        if store.index_repairs:
            old.add_note("record indexes repaired", store.index_repairs)
            store.save()
        old.save(out)
        self.manifest = old
        return store

    def close(self) -> None:
        self.lock.release()


class _RunWriter:
    """Main-process side of a run: turns results into files and records (single writer)."""

    def __init__(self, config: RunConfig, store: ResultsStore, console: Console, progress: Any) -> None:
        self.config = config
        self.store = store
        self.console = console
        self.progress = progress
        self.out = Path(config.out_dir)
        self.videos: list[Path] = []
        self._notes_seen: set[str] = set()
        self._log = open(self.out / LOG_FILENAME, "a", encoding="utf-8")
        self._agent_errors_logged: set[str] = set()
        self._weather_table = None
        if config.weather_table is not None:
            from carla_eval.weather import read_weather_table

            self._weather_table = read_weather_table(config.weather_table)

    def weather_of(self, route: RouteConfig) -> int | str | None:
        from carla_eval.weather import route_weather_id

        return route_weather_id(route, self._weather_table)

    def close(self) -> None:
        try:
            self._log.close()
        except OSError:  # a full disk: the failure is reported once, by run()
            pass

    def note(self, message: str, show: bool = True) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            self._log.write(f"{stamp} {message}\n")
            self._log.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.out / LOG_FILENAME)) from exc
        if show and message not in self._notes_seen:
            self._notes_seen.add(message)
            self.progress.log(message)

    def _commit(self, record: dict[str, Any]) -> None:
        self.store.add(record)
        self.store.save()
        self.progress.route_done(record)
        self.note(f"recorded {record['route_id']}: {record['status']} (DS {record['scores']['score_composed']:.2f}, "
                  f"attempts {record['attempts']})", show=False)

    def on_done(self, result: RouteResult) -> None:
        outcome = result.outcome
        assert outcome is not None
        task = result.task
        for n in result.notes:
            self.note(n)
        name = outcome.save_name
        if outcome.metric_info:
            atomic_write_json(self.out / METRIC_INFO_DIRNAME / name / "metric_info.json", outcome.metric_info, indent=None)
        if self.config.save_traces and outcome.trace is not None:
            from carla_eval.traces import save_trace

            save_trace(self.out / TRACES_DIRNAME / f"{name}.npz", task.record_id, outcome.trace, result.sensors, result.plans)
        if result.video:
            path = self.out / VIDEOS_DIRNAME / f"{name}.mp4"
            atomic_write_bytes(path, result.video)
            self.videos.append(path)
        if not self.store.sensors and (result.sensors or outcome.sensor_icons):
            self.store.sensors = list(outcome.sensor_icons) or sensor_icons(result.sensors)
        if outcome.weather_id is None:
            outcome.weather_id = self.weather_of(task.route)
        if outcome.error and task.record_id not in self._agent_errors_logged:
            self._agent_errors_logged.add(task.record_id)  # once per route
            self.note(f"{task.record_id}: {outcome.status}: {_last_line(outcome.error)}", show=False)
        keep = self.config.backend.name == "carla" and self.config.penalty_formula == "2.0"
        record = record_from_outcome(
            outcome, task.index, penalty_formula=self.config.penalty_formula, seed=task.seed, attempts=task.attempt + 1,
            keep_backend_scores=keep,
        )
        self._commit(record)

    def on_given_up(self, g: GivenUp) -> None:
        task = g.task
        self.note(f"{task.record_id}: giving up after {g.attempts} attempt(s): {g.status}: {g.error.splitlines()[0]}")
        self._commit(failure_record(task.route, task.repetition, task.index, status=g.status, error=g.error,
                                    seed=task.seed, attempts=g.attempts, duration_system=g.wall_s,
                                    weather=self.weather_of(task.route)))

    def record_invalid_route(self, task: RouteTask, reason: str) -> None:
        error = f"invalid route: {reason}"
        self.note(f"{task.record_id}: {error}")
        self._commit(failure_record(task.route, task.repetition, task.index, status=scoring.STATUS_SIM_CRASH,
                                    error=error, seed=task.seed, attempts=0))


def _last_line(text: str) -> str:
    """The message of an error text (the last non-empty line of a traceback, else the first line)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _make_pool(config: RunConfig, size: int) -> Any:
    from carla_eval.placement import spec_for_run

    backend = spec_for_run(config.backend, config.route_timeout_s)
    if config.record:
        backend = BackendSpec(backend.name, {**backend.options, "record_dir": str(Path(config.out_dir).resolve() / RECORDINGS_DIRNAME)})
    if config.ray_address:
        from carla_eval.ray_pool import RayWorkerPool

        return RayWorkerPool(size, backend, config.agent, config.ray_address,
                             connect_timeout_s=config.ray_connect_timeout_s,
                             gpus_per_worker=(1.0 / config.workers_per_gpu) if config.gpus else 0.0,
                             num_gpus=len(config.gpus) if config.gpus else None)
    from carla_eval.workers import LocalWorkerPool

    return LocalWorkerPool(size, backend, config.agent, config.gpus, config.workers_per_gpu)


def retry_statuses_of(config: RunConfig) -> tuple[str, ...]:
    """Outcome statuses the run retries: ``--retry-status`` or the backend's default (CARLA: carla_garage's)."""
    if config.retry_statuses is not None:
        return tuple(config.retry_statuses)
    from carla_eval.backend_factory import BackendError, resolve_backend_class

    try:
        cls = resolve_backend_class(config.backend.name)
    except BackendError:
        return ()
    return tuple(getattr(cls, "default_retry_statuses", ()))


def run_metrics(config: RunConfig, store: ResultsStore, plan: RunPlan) -> Metrics:
    out = Path(config.out_dir)

    def metric_info_of(record: dict[str, Any]) -> dict[str, Any] | None:
        path = out / METRIC_INFO_DIRNAME / str(record.get("save_name", "")) / "metric_info.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    metrics = compute_metrics(store.ordered_records(), plan.expected, metric_info_of)
    metrics.penalty_formula = config.penalty_formula  # the records were scored with it
    return metrics


def run(config: RunConfig, console: Console | None = None, argv: list[str] | None = None) -> RunSummary:
    """Run (or resume) an evaluation; see the module docstring. Raises RunError before any file is
    written when the inputs, the run folder or the workers are not acceptable, and RunOutputError
    (a RunError, one line) when the run's files cannot be written; the files already there stay
    as they were (every write is atomic)."""
    console = console or Console()
    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():
        def _sigterm(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        previous_sigterm = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return _run(config, console, argv)
    except OSError as exc:
        raise RunOutputError(_os_error_line(exc, Path(config.out_dir))) from exc
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _run(config: RunConfig, console: Console, argv: list[str] | None) -> RunSummary:
    _check_inputs(config)
    plan = plan_run(config)
    route_errors = _route_errors(config, plan)
    folder = RunFolder(config, plan, argv)
    pool = None
    try:
        folder.check()
        pending_ids = folder.store.pending() if folder.store is not None else list(plan.tasks)
        invalid: list[tuple[RouteTask, str]] = []
        runnable: list[RouteTask] = []
        for rid in pending_ids:
            task = plan.tasks[rid]
            reason = task.route.error or route_errors.get(task.route.route_id)
            if reason:
                invalid.append((task, reason))
            else:
                runnable.append(task)
        # longest routes first: a long route started last would leave the other workers idle
        runnable.sort(key=lambda t: -route_length(t.route))
        start_notes: list[str] = []
        if runnable:  # workers are ready before the folder is written: a refused start leaves nothing
            pool = _make_pool(config, min(config.workers, len(runnable)))
            try:
                pool.start()
                start_notes = wait_ready(pool, WORKER_START_TIMEOUT_S)
            except PoolStartError as exc:
                raise RunError(f"workers could not start: {exc}") from exc
        store = folder.open()
        summary = _run_session(config, console, plan, folder, store, pool, invalid, runnable, start_notes)
        pool = None  # closed by _run_session
        return summary
    finally:
        if pool is not None:
            pool.close()
        folder.close()


def _run_session(config: RunConfig, console: Console, plan: RunPlan, folder: RunFolder, store: ResultsStore, pool: Any,
                 invalid: list[tuple[RouteTask, str]], runnable: list[RouteTask], start_notes: list[str]) -> RunSummary:
    from carla_eval.progress import RunProgress

    progress = RunProgress(store.total, len(store.records), console, enabled=config.show_progress)
    progress.seed_scores([float(r["scores"]["score_composed"]) for r in store.records.values()])
    writer = _RunWriter(config, store, console, progress)
    interrupted = False
    try:
        for message in start_notes:
            writer.note(message, show=False)
        if config.resume:
            writer.note(f"resuming {config.out_dir}: {len(store.records)} of {store.total} routes recorded, "
                        f"{len(invalid) + len(runnable)} to run")
            if folder.manifest.git_revisions[-1:] != folder.manifest.git_revisions[:1]:
                writer.note(f"--allow-code-change: this run is evaluated by git revisions {folder.manifest.git_revisions}")
            for fix in store.index_repairs:
                writer.note(f"repaired the index of {fix['route_id']} in results.json: {fix['recorded']} -> {fix['repaired']}")
        with progress:
            for task, reason in invalid:
                writer.record_invalid_route(task, reason)
            if runnable:
                hooks = SchedulerHooks(
                    on_done=writer.on_done,
                    on_given_up=writer.on_given_up,
                    on_progress=progress.route_progress,
                    on_note=writer.note,
                )
                Scheduler(pool, hooks, retries=config.retries,
                          route_limit_s=lambda t: config.watchdog.route_limit_s(route_length(t.route), config.route_timeout_s),
                          retry_statuses=retry_statuses_of(config)).run(runnable)
    except KeyboardInterrupt:
        interrupted = True
        if pool is not None:
            pool.close(grace_s=0.0)
            pool = None
        store.save()  # a record added just before the interrupt must reach the file
        writer.note(f"interrupted: {len(store.records)} of {store.total} routes recorded in {config.out_dir}; "
                    f"continue with --resume")
    except PoolStartError as exc:
        writer.note(f"stopping: {exc}")
        raise RunError(str(exc)) from exc
    finally:
        if pool is not None:
            pool.close()
        writer.close()
    metrics = run_metrics(config, store, plan)
    payload = metrics.to_json()
    payload["git_revisions"] = list(folder.manifest.git_revisions)  # the code that evaluated the run's routes
    atomic_write_json(Path(config.out_dir) / METRICS_FILENAME, payload)
    return RunSummary(Path(config.out_dir), len(store.records), store.total, interrupted, metrics, writer.videos)

"""One route attempt inside a worker (a local process or a Ray actor): agent in, result out.

:func:`run_task` builds a fresh agent, switches its debug frames on when videos are wanted, runs
the backend, collects the per-tick plan (for replays) and the video, and packs everything into a
picklable :class:`RouteResult`. It never writes files: the main process is the single writer.

Failure kinds: ``agent_load`` (the agent could not be imported or built) and ``simulator`` (the
backend raised) are retried; ``invalid_route`` (the backend raised
:class:`~carla_eval.backend.RouteInvalidError`: the route itself cannot be run) and ``agent_hung``
(a ``setup``/``run_step`` call went over the agent watchdog, :mod:`carla_eval.agent_watch`) are
recorded at once, with ``status``. Other agent failures *during* the route are statuses inside the
outcome (backend contract), not failure kinds; a non-finite control is one of them ("Failed -
Agent crashed", with its message in ``outcome.error``).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from carla_eval import scoring
from carla_eval.agent_loader import AgentFactory, AgentLoadError, enable_debug_frames
from carla_eval.agent_watch import AgentWatch, run_watched
from carla_eval.backend import RouteInvalidError, RouteOutcome, TickInfo
from carla_eval.routes import RouteConfig
from carla_eval.run_config import AgentSpec, VideoConfig

ProgressFn = Callable[[str, int, float], None]  # (record id, tick, route completion %)


@dataclass(frozen=True)
class RouteTask:
    """One attempt at one route x repetition."""

    record_id: str
    index: int  # position in the run's record list
    route: RouteConfig
    repetition: int
    seed: int
    attempt: int  # 0-based
    agent: AgentSpec
    video: VideoConfig
    agent_timeout_s: float | None = None  # per-call agent watchdog (s); None: off


@dataclass
class PlanLog:
    """Per-tick plan of the agent (from its debug frames), saved with the trace for replays.

    ``trajectory`` [N, T, 2] (ego m, NaN rows where the agent gave no frame), ``target_point``
    [N, 2] (NaN when none), ``command`` [N] int (-1 when unknown).
    """

    trajectory: np.ndarray
    target_point: np.ndarray
    command: np.ndarray


@dataclass
class RouteResult:
    task: RouteTask
    outcome: RouteOutcome | None
    failure_kind: str | None = None  # None | "agent_load" | "simulator" | "invalid_route" | "agent_hung"
    error: str | None = None
    status: str | None = None  # the record status of an invalid_route / agent_hung failure
    worker_stale: bool = False  # a thread of the worker is stuck in the agent: discard the worker
    sensors: list[dict[str, Any]] = field(default_factory=list)
    video: bytes | None = None
    notes: list[str] = field(default_factory=list)
    plans: PlanLog | None = None
    wall_s: float = 0.0
    worker_pid: int = 0


def needs_video(outcome: RouteOutcome) -> bool:
    """A failed or penalised route: not Perfect/Completed, a penalty below 1, or any infraction
    other than min speed."""
    if outcome.status not in scoring.SUCCESS_STATUSES:
        return True
    if float(outcome.scores.get("score_penalty", 1.0)) < 1.0:
        return True
    return not scoring.is_success(outcome.status, outcome.infractions)


class _TickCollector:
    """The backend's on_tick callback: debug frames -> video recorder and plan log, progress."""

    def __init__(self, agent: Any, frames_on: bool, video: VideoConfig, record_id: str, progress: ProgressFn | None,
                 context: Any = None) -> None:
        from carla_eval.video import VideoRecorder

        self.agent = agent
        self.context = context  # backend.context_view (top-down RGB around the ego) or None
        self.frames_on = frames_on
        self.recorder = VideoRecorder(video) if (frames_on and video.mode != "none") else None
        self.record_id = record_id
        self.progress = progress
        self._last_progress = 0.0
        self.trajs: list[np.ndarray | None] = []
        self.targets: list[np.ndarray | None] = []
        self.commands: list[int] = []
        self.frame_errors: list[str] = []
        self.frames_seen = 0

    def __call__(self, info: TickInfo) -> None:
        frame = None
        if self.frames_on:
            try:
                frame = self.agent.get_debug_frame()
            except Exception as exc:  # a broken debug hook must not fail the route
                self.frame_errors.append(repr(exc))
                self.frames_on = False
        if frame is not None:
            self.frames_seen += 1
            self.trajs.append(np.asarray(frame.trajectory, dtype=np.float32).reshape(-1, 2))
            self.targets.append(None if frame.target_point is None else np.asarray(frame.target_point, dtype=np.float32).reshape(2))
            self.commands.append(int(frame.command))
        else:
            self.trajs.append(None)
            self.targets.append(None)
            self.commands.append(-1)
        if self.recorder is not None:
            context = None
            if frame is not None and self.context is not None:
                try:
                    context = self.context()
                except Exception as exc:  # a broken context view must not fail the route
                    self.frame_errors.append(repr(exc))
                    self.context = None
            self.recorder.add(info, frame, context)
        if self.progress is not None:
            now = time.monotonic()
            if now - self._last_progress >= 0.5:
                self._last_progress = now
                self.progress(self.record_id, info.step, info.route_completion)

    def plan_log(self) -> PlanLog | None:
        if self.frames_seen == 0:
            return None
        t = max((len(p) for p in self.trajs if p is not None), default=0)
        n = len(self.trajs)
        traj = np.full((n, t, 2), np.nan, dtype=np.float32)
        tgt = np.full((n, 2), np.nan, dtype=np.float32)
        for i, (p, g) in enumerate(zip(self.trajs, self.targets)):
            if p is not None:
                traj[i, : len(p)] = p
            if g is not None:
                tgt[i] = g
        return PlanLog(traj, tgt, np.asarray(self.commands, dtype=np.int64))


def run_task(
    backend: Any,
    task: RouteTask,
    factory: AgentFactory,
    progress: ProgressFn | None = None,
) -> RouteResult:
    """Run one attempt of ``task`` on ``backend`` (see the module docstring)."""
    import os

    t0 = time.monotonic()
    result = RouteResult(task=task, outcome=None, worker_pid=os.getpid())
    loads_itself = bool(getattr(backend, "loads_agent_from_file", False))
    try:
        agent = task.agent.path if loads_itself else factory()
    except AgentLoadError as exc:
        result.failure_kind, result.error = "agent_load", str(exc)
        result.wall_s = time.monotonic() - t0
        return result
    frames_on = False
    if not loads_itself and task.video.mode != "none":
        frames_on = enable_debug_frames(agent, True)
        if not frames_on:
            result.notes.append(f"{type(agent).__name__} has no get_debug_frame(): no video for {task.record_id}")
    collector = _TickCollector(agent, frames_on, task.video, task.record_id, progress,
                               context=getattr(backend, "context_view", None))
    watch = AgentWatch()
    if not loads_itself and not watch.watch(agent):
        result.notes.append(f"{type(agent).__name__} cannot be wrapped: no agent watchdog and no control check for {task.record_id}")

    def route() -> RouteOutcome:
        return backend.run_route(
            task.route, agent, task.agent.config, repetition=task.repetition, seed=task.seed, on_tick=collector
        )

    try:
        outcome, hang = run_watched(route, watch, None if loads_itself else task.agent_timeout_s)
    except RouteInvalidError as exc:
        result.failure_kind, result.status = "invalid_route", scoring.STATUS_SIM_CRASH
        result.error = f"invalid route: {exc}"
        result.wall_s = time.monotonic() - t0
        return result
    except Exception as exc:
        result.failure_kind = "simulator"
        result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        if not loads_itself:
            try:
                agent.destroy()
            except Exception:
                pass
        result.wall_s = time.monotonic() - t0
        return result
    if hang is not None:
        result.failure_kind, result.status, result.worker_stale = "agent_hung", hang.status, True
        result.error = hang.message + (f"\nstuck at:\n{hang.stack}" if hang.stack else "")
        result.wall_s = time.monotonic() - t0
        return result
    if watch.nonfinite is not None and outcome.status == scoring.STATUS_AGENT_CRASH:
        outcome.error = watch.nonfinite  # the one-line cause, not the backend's traceback
    result.outcome = outcome
    if not loads_itself:
        try:
            result.sensors = [dict(s) for s in agent.sensors()]
        except Exception as exc:
            result.notes.append(f"agent.sensors() failed after the route: {exc!r}")
    if collector.frame_errors:
        result.notes.append(f"get_debug_frame() raised {collector.frame_errors[0]}; frames stopped for {task.record_id}")
    result.plans = collector.plan_log()
    if collector.recorder is not None:
        keep = task.video.mode == "all" or needs_video(outcome)
        try:
            result.video = collector.recorder.finish(keep=keep)
        except Exception as exc:
            result.notes.append(f"video of {task.record_id} could not be encoded: {exc!r}")
        if keep and result.video is None:
            result.notes.append(f"{task.record_id}: the agent produced no debug frame, no video")
    result.wall_s = time.monotonic() - t0
    return result

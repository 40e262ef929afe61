"""Inside a worker: watch the agent's calls, as the leaderboard's agent watchdog does.

:class:`AgentWatch` wraps the agent instance's ``set_global_plan``, ``setup``, ``sensors`` (the
set-up calls) and ``run_step`` (instance attributes, so ``__call__`` of a leaderboard agent, which
calls ``self.run_step``, goes through them too). It
records when the current call started, and it refuses a control with a non-finite throttle, steer
or brake by raising :class:`NonFiniteControlError` from ``run_step`` (the backend turns that into
"Failed - Agent crashed"; the watch keeps the one-line message for the record).

:func:`run_watched` runs a route in a helper thread while the calling thread checks the watch: a
call that lasts longer than ``timeout_s`` ends the attempt with the leaderboard's message
("Agent took longer than {timeout}s to send its command", status "Failed - Agent crashed"; for a
set-up call: "Timeout: Agent took longer than {timeout}s to setup", "Failed - Agent couldn't be
set up"). Building the agent (its constructor) is not watched here: the route's wall-clock limit
covers it. The stuck thread cannot be stopped, so the worker that ran it must be discarded
(``RouteResult.worker_stale``).
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from carla_eval import scoring


SETUP_CALLS = ("set_global_plan", "setup", "sensors")


class NonFiniteControlError(ValueError):
    """The agent returned a control with a NaN or infinite throttle, steer or brake."""


@dataclass(frozen=True)
class AgentHang:
    """A watched call that went over its limit."""

    status: str  # the leaderboard's status for it
    message: str  # the leaderboard's message
    stack: str  # where the agent was stuck (innermost frames)


class AgentWatch:
    """See the module docstring. ``watch(agent)`` returns False when the agent cannot be wrapped."""

    def __init__(self) -> None:
        self.call: str | None = None  # the wrapped method running now, if any
        self.call_started = 0.0  # time.monotonic() at its start
        self.tick = 0
        self.nonfinite: str | None = None  # message of the first non-finite control

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.call, self.call_started = name, time.monotonic()
            try:
                out = fn(*args, **kwargs)
            finally:
                self.call = None
            if name == "run_step":
                self._check_control(out)
                self.tick += 1
            return out

        return wrapper

    def _check_control(self, control: Any) -> None:
        values = {}
        for key in ("throttle", "steer", "brake"):
            try:
                values[key] = float(getattr(control, key))
            except (AttributeError, TypeError, ValueError):
                values[key] = math.nan
        if all(math.isfinite(v) for v in values.values()):
            return
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        self.nonfinite = f"the agent returned a non-finite control at tick {self.tick} ({shown})"
        raise NonFiniteControlError(self.nonfinite)

    def watch(self, agent: Any) -> bool:
        try:
            for name in SETUP_CALLS + ("run_step",):
                fn = getattr(agent, name, None)
                if callable(fn):
                    setattr(agent, name, self._timed(name, fn))
        except (AttributeError, TypeError):  # __slots__, read-only attributes
            return False
        return True

    def hang(self, timeout_s: float) -> tuple[str, str] | None:
        """(status, message) when the current call has run longer than ``timeout_s``."""
        call = self.call
        if call is None or time.monotonic() - self.call_started <= timeout_s:
            return None
        if call in SETUP_CALLS:
            return scoring.STATUS_AGENT_SETUP, f"Timeout: Agent took longer than {float(timeout_s)}s to setup"
        return scoring.STATUS_AGENT_CRASH, f"Agent took longer than {float(timeout_s)}s to send its command"


def run_watched(fn: Callable[[], Any], watch: AgentWatch, timeout_s: float | None, poll_s: float = 0.05) -> tuple[Any, AgentHang | None]:
    """Run ``fn`` in a daemon thread; return (its result, None), or (None, AgentHang) when a watched
    call goes over ``timeout_s``. Exceptions of ``fn`` are raised here. ``timeout_s`` None: no
    thread, ``fn`` runs here."""
    if timeout_s is None:
        return fn(), None
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=body, name="carla-eval-route", daemon=True)
    thread.start()
    while True:
        thread.join(poll_s)
        if not thread.is_alive():
            break
        hung = watch.hang(timeout_s)
        if hung is not None:
            frame = sys._current_frames().get(thread.ident or -1)
            stack = "".join(traceback.format_stack(frame, limit=6)) if frame is not None else ""
            return None, AgentHang(hung[0], hung[1], stack)
    if "error" in box:
        raise box["error"]
    return box["value"], None

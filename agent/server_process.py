"""Starting and stopping a model server process (``python -m agent.serve``) from the agent.

The server runs in the project's own environment (Python >= 3.10, torch), started with an argument
list, in a session of its own so that it and anything it spawns are stopped together by its process
group id. Only the process this object started is ever signalled.

Python 3.7+, standard library only (the evaluator side).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

logger = logging.getLogger("agent.ik_agent")

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # holds the agent package


def server_command(python: str, model: str, device: str, address: str, num_threads: Optional[int] = None,
                   max_batch: int = 8, max_wait_ms: float = 3.0, parent_pid: Optional[int] = None,
                   idle_exit_s: Optional[float] = None) -> List[str]:
    """The argument list of ``python -m agent.serve`` for these settings."""
    argv = [str(python), "-m", "agent.serve", "--model", str(model), "--device", str(device), "--listen", address,
            "--max-batch", str(int(max_batch)), "--max-wait-ms", repr(float(max_wait_ms))]
    if num_threads is not None:
        argv += ["--num-threads", str(int(num_threads))]
    if parent_pid is not None:
        argv += ["--parent-pid", str(int(parent_pid))]
    if idle_exit_s is not None:
        argv += ["--idle-exit-s", repr(float(idle_exit_s))]
    return argv


def server_environment(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The server's environment: the evaluator's, except that PYTHONPATH is the project root alone
    (the evaluator's PYTHONPATH holds its own Python's packages, e.g. CARLA's Python 3.7 egg) and
    PYTHONHOME is dropped."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return env


class ServerProcess:
    """One model server process: :meth:`start` launches ``argv``; :meth:`stop` ends it by its PID."""

    def __init__(self, argv: List[str], log_file: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> None:
        self.argv = list(argv)
        self.log_file = log_file
        self.env = server_environment() if env is None else dict(env)
        self.process = None  # type: Optional[subprocess.Popen]
        self._log = None  # type: Optional[IO[bytes]]
        self.starts = 0

    @property
    def pid(self) -> Optional[int]:
        return None if self.process is None else self.process.pid

    def start(self) -> int:
        """Launch the server (it must not be running); returns its PID. Does not wait for it."""
        if self.running:
            raise RuntimeError("the model server (pid {}) is still running".format(self.pid))
        self._close_log()
        output = None
        if self.log_file is not None:
            Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_file, "ab")
            output = self._log
        try:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=str(PROJECT_ROOT), stdin=subprocess.DEVNULL,
                                            stdout=output, stderr=subprocess.STDOUT if output is not None else None,
                                            start_new_session=True)
        except OSError as exc:
            self._close_log()
            raise RuntimeError("could not start the model server {}: {}".format(self.argv[0], exc)) from None
        self.starts += 1
        logger.info("started the model server, pid %d: %s", self.process.pid, " ".join(self.argv))
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> Optional[int]:
        """The exit status once the process has ended; None while it runs or before a start."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 10.0) -> Optional[int]:
        """SIGTERM to the server's process group, SIGKILL after ``timeout_s``; returns the exit status
        (None when never started). Safe to call twice."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            self._signal(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("model server pid %d ignored SIGTERM for %.0f s: SIGKILL", process.pid, timeout_s)
                self._signal(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        self._close_log()
        return process.returncode

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)  # the server leads its own session: its group id is its pid
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

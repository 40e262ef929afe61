"""Process groups started for a worker, and a supervisor process that stops them when the worker dies.

The CARLA backend starts servers and evaluators in their own sessions (``start_new_session``), and
Bench2Drive's evaluator starts yet another server in ITS own session (``preexec_fn=os.setsid``).
None of them dies with the worker: a worker SIGKILLed on ``--route-timeout``, or terminated by the
pool on Ctrl-C, never runs ``backend.close()``. Two things make sure they are stopped anyway:

- **Tag.** Every process the backend starts in its own session gets ``CARLA_EVAL_PROCESS_TAG=<tag>``
  in its environment, one tag per backend instance. Children inherit it, so the server that
  Bench2Drive starts carries it too. The tag identifies processes; it changes nothing in their
  behaviour. Processes that stay in the owner's group (readiness probes) are not tagged, and the
  owner's group is never signalled.
- **Registry + supervisor.** :class:`ProcessGroupRegistry` records the process-group id of every
  group it started or found carrying the tag (in memory and, one JSON line each, in a file for
  inspection) and forwards it to a :class:`Supervisor`: a small process (``python -m
  carla_eval.supervisor``) in its own session that ignores SIGINT / SIGTERM and reads
  registrations from a pipe. When the pipe closes (the worker exited, normally or not) it stops
  every recorded group and every remaining tagged process: SIGTERM, ``grace_s``, then SIGKILL.

A group is only signalled while one of its members still carries the tag, so a recycled group id
is never hit. Linux only (``/proc``); elsewhere the recorded groups are signalled without that check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

TAG_ENV = "CARLA_EVAL_PROCESS_TAG"
_PROC = Path("/proc")


def new_tag(label: str = "") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}" if label else uuid.uuid4().hex


# ----------------------------------------------------------------------------------- /proc scans
def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        data = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return needle in data.split(b"\0")


def _pgid_of(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ..." and comm may hold spaces / parentheses
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] == "Z":
        return None  # a zombie holds no resources; its parent reaps it
    return int(fields[2]) if len(fields) > 2 else None


def tagged_processes(tag: str) -> list[tuple[int, int]]:
    """(pid, pgid) of every live process whose environment carries ``tag``."""
    if not _PROC.is_dir():
        return []
    needle = f"{TAG_ENV}={tag}".encode()
    out = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid() or not _environ_has(pid, needle):
            continue
        pgid = _pgid_of(pid)
        if pgid is not None:
            out.append((pid, pgid))
    return out


def group_alive(pgid: int) -> bool:
    """Does any live (non-zombie) process belong to group ``pgid``?"""
    if _PROC.is_dir():
        for entry in _PROC.iterdir():
            if entry.name.isdigit() and _pgid_of(int(entry.name)) == pgid:
                return True
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_groups(pgids: Iterable[int], tag: str | None, grace_s: float = 5.0, exclude: Iterable[int] = ()) -> list[int]:
    """Stop process groups: SIGTERM, up to ``grace_s`` s, SIGKILL; then every tagged straggler.

    With a ``tag`` (and /proc), a group is only signalled while a member carries the tag, and every
    tagged group is stopped, recorded or not; groups in ``exclude`` are left alone.
    Returns the groups that were signalled.
    """
    skip = {int(g) for g in exclude} | {os.getpgrp()}
    groups = set(int(p) for p in pgids if int(p) > 1) - skip
    if tag is not None and _PROC.is_dir():
        tagged = {pgid for _, pgid in tagged_processes(tag)} - skip
        groups = {g for g in groups if g in tagged} | {g for g in tagged if g > 1}
    signalled = sorted(groups)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        live = [g for g in groups if group_alive(g)]
        for g in live:
            try:
                os.killpg(g, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait_s
        while live and time.monotonic() < deadline:
            live = [g for g in live if group_alive(g)]
            if live:
                time.sleep(0.05)
        if not live:
            break
    if tag is not None:  # members that left their group (setsid) after the first scan
        for pid, pgid in tagged_processes(tag):
            if pgid in skip:
                continue
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return signalled


# ------------------------------------------------------------------------------------ supervisor
class Supervisor:
    """Handle on the supervisor process of one worker (see the module docstring)."""

    def __init__(self, tag: str, grace_s: float = 5.0, log_path: Path | None = None,
                 python: str = sys.executable) -> None:
        self.tag = tag
        self.grace_s = grace_s
        self.log_path = log_path
        # the owner's own group (a spawned worker shares the main process's) is never signalled
        cmd = [python, "-m", "carla_eval.supervisor", "--tag", tag, "--grace", f"{grace_s:g}", "--protect", str(os.getpgrp())]
        if log_path is not None:
            cmd += ["--log", str(log_path)]
        env = dict(os.environ)
        env.pop(TAG_ENV, None)  # the supervisor must not find itself
        project_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([project_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def register(self, pgid: int) -> None:
        self._send(f"add {int(pgid)}\n")

    def forget(self, pgid: int) -> None:
        self._send(f"del {int(pgid)}\n")

    def _send(self, line: str) -> None:
        with self._lock:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(line.encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def close(self, wait_s: float = 30.0) -> None:
        """Close the pipe: the supervisor stops what is left and exits; wait for it."""
        with self._lock:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class RegisteredGroup:
    pgid: int
    what: str
    started: float


class ProcessGroupRegistry:
    """The process groups of one backend instance (see the module docstring).

    ``path``: JSON lines ``{"pgid", "what", "pid_of_owner", "time"}``, appended as groups are found.
    ``supervise``: start a :class:`Supervisor` that outlives the owner.
    """

    def __init__(self, tag: str, path: Path | None = None, supervise: bool = True, grace_s: float = 5.0) -> None:
        self.tag = tag
        self.path = path
        self.grace_s = grace_s
        self.groups: dict[int, RegisteredGroup] = {}
        self._lock = threading.Lock()
        log = path.with_suffix(".supervisor.log") if path is not None else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.supervisor = Supervisor(tag, grace_s, log) if supervise else None
        self._watch_stop: threading.Event | None = None
        self._watch_thread: threading.Thread | None = None

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` plus the tag (give this to every process started for the owner)."""
        env = dict(base)
        env[TAG_ENV] = self.tag
        return env

    def add(self, pgid: int, what: str) -> None:
        with self._lock:
            if pgid in self.groups:
                return
            self.groups[pgid] = RegisteredGroup(pgid, what, time.time())
        if self.supervisor is not None:
            self.supervisor.register(pgid)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"pgid": pgid, "what": what, "owner_pid": os.getpid(), "time": time.time()}) + "\n")

    def scan(self) -> None:
        """Record the group of every tagged process not known yet (e.g. a server an evaluator started);
        never the owner's own group."""
        own = os.getpgrp()
        for pid, pgid in tagged_processes(self.tag):
            if pgid not in self.groups and pgid != own:
                self.add(pgid, f"found: pid {pid}")

    def start_watching(self, interval_s: float = 0.2) -> None:
        """Scan in a thread every ``interval_s`` (while an evaluator runs)."""
        self.stop_watching()
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.scan()
                except Exception:
                    pass

        self._watch_stop = stop
        self._watch_thread = threading.Thread(target=loop, name="carla-eval-pgid-watch", daemon=True)
        self._watch_thread.start()

    def stop_watching(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()
            if self._watch_thread is not None:
                self._watch_thread.join(timeout=2.0)
        self._watch_stop = None
        self._watch_thread = None

    def stop_all(self, grace_s: float | None = None, exclude: Iterable[int] = ()) -> None:
        """Stop every recorded and tagged group now, but those in ``exclude`` (the owner's clean path)."""
        self.scan()
        exclude = set(exclude)
        with self._lock:
            pgids = [g for g in self.groups if g not in exclude]
        stop_groups(pgids, self.tag, self.grace_s if grace_s is None else grace_s, exclude)
        with self._lock:
            for g in pgids:
                if not group_alive(g):
                    self.groups.pop(g, None)
                    if self.supervisor is not None:
                        self.supervisor.forget(g)

    def close(self) -> None:
        self.stop_watching()
        self.stop_all()
        if self.supervisor is not None:
            self.supervisor.close()
            self.supervisor = None


def recorded_pgids(path: Path) -> list[int]:
    """Every group id recorded in a registry file (for checks that nothing is left)."""
    if not path.is_file():
        return []
    return [int(json.loads(line)["pgid"]) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m carla_eval.supervisor")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--protect", type=int, action="append", default=[], help="process group never signalled")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        parts = raw.decode(errors="replace").split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            if parts[0] == "add":
                groups.add(int(parts[1]))
            elif parts[0] == "del":
                groups.discard(int(parts[1]))
    # the owner is gone (or closed the pipe): stop what is left
    signalled = stop_groups(groups, args.tag, args.grace, exclude=args.protect)
    if args.log is not None:
        with open(args.log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": time.time(), "stopped_groups": signalled}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())

"""An exclusive lock on a run folder, so that two runs (or resumes) never write the same folder.

``RUN_DIR/.carla-eval.lock`` is locked with ``fcntl.flock(LOCK_EX | LOCK_NB)`` for the whole run and
holds the PID of the holder. The kernel drops the lock when the holder's file is closed or its
process dies (even by SIGKILL), so a killed run never leaves a stale lock; the file itself stays
and does not count as content of the folder. Worker processes do not inherit the descriptor.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILENAME = ".carla-eval.lock"


class RunFolderLocked(RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """Hold with :meth:`acquire`, give back with :meth:`release` (idempotent)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise RunFolderLocked naming the holder's PID (OSError if the folder
        cannot be written)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderLocked(
                f"{self.path.parent} is in use by another carla-eval run (PID {holder}); wait for it to end or stop it"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def is_empty_run_folder(folder: Path) -> bool:
    """True when ``folder`` holds nothing but (maybe) a lock file."""
    return all(p.name == LOCK_FILENAME for p in folder.iterdir())

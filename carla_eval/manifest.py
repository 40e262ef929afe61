"""``RUN_DIR/run_manifest.json``: what a run is, so ``--resume`` can refuse to mix two different runs.

It stores the CLI arguments, the route file path and its SHA-256 fingerprint, the selected record
ids, the seed, the agent (file + SHA-256 of the file and of its config), the backend and its
options, the penalty formula and the git revision of the code when available. A resumed run must
have the same *identity* (everything but workers, Ray address, retries, video and progress
settings), otherwise it is refused with the list of differences.

The git revision must match too, unless ``--allow-code-change``: then the resume goes on and
``git_revisions`` lists every revision that evaluated routes of the run, in order (each session
also names its own). ``notes`` keeps what the harness repaired in the folder (e.g. record indexes).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carla_eval.atomic_io import atomic_write_json
from carla_eval.routes import routes_fingerprint
from carla_eval.run_config import RunConfig

MANIFEST_FILENAME = "run_manifest.json"
MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """The run manifest is missing, unreadable, or does not match the run being resumed."""


def file_sha256(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it does not exist."""
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def git_revision(folder: str | Path) -> str | None:
    """``git rev-parse HEAD`` of the repository holding ``folder`` (None if not a repo or no commit)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = proc.stdout.strip()
    return rev if proc.returncode == 0 and rev else None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunManifest:
    identity: dict[str, Any]  # compared on resume
    settings: dict[str, Any]  # free to change on resume
    expected: list[str]  # record ids of the run, in order
    git_revision: str | None = None  # the revision the run started with
    created: str = field(default_factory=_now)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    version: int = MANIFEST_VERSION
    git_revisions: list[str | None] = field(default_factory=list)  # every revision that contributed
    notes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.git_revisions:
            self.git_revisions = [self.git_revision]

    @classmethod
    def for_run(cls, config: RunConfig, expected: list[str], argv: list[str] | None = None) -> "RunManifest":
        agent_path = config.agent.path
        identity = {
            "backend": config.backend.name,
            "backend_options": dict(config.backend.options),
            "routes_file": str(Path(config.routes_file).resolve()),
            "routes_fingerprint": routes_fingerprint(config.routes_file),
            "routes_subset": config.routes_subset,
            "repetitions": config.repetitions,
            "seed": config.seed,
            "agent": agent_path if config.agent.is_expert else str(Path(agent_path).resolve()),
            "agent_sha256": None if config.agent.is_expert else file_sha256(agent_path),
            "agent_config": str(Path(config.agent.config).resolve()) if config.agent.config else "",
            "agent_config_sha256": file_sha256(config.agent.config) if config.agent.config else None,
            "penalty_formula": config.penalty_formula,
        }
        settings = {
            "workers": config.workers,
            "ray_address": config.ray_address,
            "retries": config.retries,
            "video": {"mode": config.video.mode, "last_seconds": config.video.last_seconds, "fps": config.video.fps},
            "route_timeout_s": config.route_timeout_s,
            "watchdog": {"realtime_factor": config.watchdog.realtime_factor, "startup_s": config.watchdog.startup_s,
                         "agent_timeout_s": config.watchdog.agent_timeout_s},
            "argv": list(argv) if argv is not None else None,
        }
        repo = Path(__file__).resolve().parent.parent
        return cls(identity=identity, settings=settings, expected=list(expected), git_revision=git_revision(repo))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created": self.created,
            "git_revision": self.git_revision,
            "git_revisions": self.git_revisions,
            "identity": self.identity,
            "settings": self.settings,
            "expected": self.expected,
            "sessions": self.sessions,
            "notes": self.notes,
        }

    def save(self, run_dir: str | Path) -> None:
        atomic_write_json(Path(run_dir) / MANIFEST_FILENAME, self.to_json())

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunManifest":
        path = Path(run_dir) / MANIFEST_FILENAME
        if not path.is_file():
            raise ManifestError(f"{run_dir} has no {MANIFEST_FILENAME}: it is not a carla-eval run folder")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != MANIFEST_VERSION:
                raise ManifestError(f"{path}: unsupported manifest version {data.get('version')!r}")
            return cls(
                identity=dict(data["identity"]),
                settings=dict(data["settings"]),
                expected=list(data["expected"]),
                git_revision=data.get("git_revision"),
                created=data.get("created", ""),
                sessions=list(data.get("sessions", [])),
                git_revisions=list(data.get("git_revisions") or [data.get("git_revision")]),
                notes=list(data.get("notes", [])),
            )
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ManifestError(f"{path} is unreadable or incomplete: {exc}") from exc

    def check_resumable_by(self, other: "RunManifest", allow_code_change: bool = False) -> None:
        """Raise ManifestError when ``other`` (the run being started) is not the same run as this one,
        or runs other code (another git revision) without ``allow_code_change``."""
        diffs = []
        for key in sorted(set(self.identity) | set(other.identity)):
            a, b = self.identity.get(key), other.identity.get(key)
            if a != b:
                diffs.append((key, a, b))
        if not diffs:
            if self.expected != other.expected:
                diffs.append(("expected routes", len(self.expected), len(other.expected)))
        if diffs:
            lines = []
            for key, a, b in diffs:
                if key == "routes_fingerprint":
                    lines.append(f"  - the route file changed since the run started (SHA-256 {a[:12]}... -> {b[:12]}...)")
                else:
                    lines.append(f"  - {key}: recorded {a!r}, now {b!r}")
            raise ManifestError("cannot resume: this is not the same run as the one recorded:\n" + "\n".join(lines))
        last = self.git_revisions[-1]
        if other.git_revision != last and not allow_code_change:
            raise ManifestError(
                f"cannot resume: the code changed since this run was last evaluated (git revision {last} -> "
                f"{other.git_revision}); pass --allow-code-change to go on with the new code (every revision is then "
                f"recorded in the manifest and in metrics.json), or check out {last}"
            )

    def adopt_revision(self, revision: str | None) -> None:
        """Record that ``revision`` evaluates routes of this run from now on."""
        if revision != self.git_revisions[-1]:
            self.git_revisions.append(revision)

    def add_note(self, kind: str, detail: Any) -> None:
        self.notes.append({"kind": kind, "time": _now(), "detail": detail})

    def add_session(self, kind: str, git_revision: str | None = None) -> None:
        self.sessions.append({"kind": kind, "started": _now(), "git_revision": git_revision})

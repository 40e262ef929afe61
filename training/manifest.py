"""The dataset manifest and the verified scan of a dataset folder.

``DATA_DIR/manifest.json`` (written atomically when collection ends)::

    {"schema_version": 1, "created": "2026-...Z", "git_revision": "<sha>" | null, "git_dirty": bool,
     "config": {...collection config...}, "routes_files": [...],
     "episodes": [{"file": "ep_3_rep0.npz", "route_id": "3", "repetition": 0, "seed": 7,
                   "num_frames": 180, "sha256": "...", "status": "Completed", "perturbed_frames": 12}],
     "failed": [{"route_id": "4", "repetition": 0, "error": "..."}],
     "totals": {"episodes": 1, "frames": 180, "perturbed_frames": 12, "failed": 1}}

:func:`scan_dataset` loads every episode that verifies and reports every one it skips, with why.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.episodes import EPISODE_SUFFIX, TMP_SUFFIX, Episode, EpisodeError, file_sha256, read_episode

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class SkippedEpisode:
    """An episode left out of a dataset, and why (human-readable)."""

    path: str
    reason: str


@dataclass
class DatasetScan:
    """Result of :func:`scan_dataset`: the verified episodes and the skipped ones."""

    root: Path
    episodes: list[Episode]
    skipped: list[SkippedEpisode] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    @property
    def num_frames(self) -> int:
        return sum(e.num_frames for e in self.episodes)

    def report(self) -> str:
        """A short multi-line report: counts, then one line per skipped episode."""
        lines = [f"{self.root}: {len(self.episodes)} episodes ({self.num_frames} frames) loaded, {len(self.skipped)} skipped"]
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def git_revision(repo_dir: str | Path) -> tuple[str | None, bool]:
    """(HEAD commit or None, whether the work tree has uncommitted changes) of ``repo_dir``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, timeout=10)
        rev = head.stdout.strip() if head.returncode == 0 else None
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir, capture_output=True, text=True, timeout=10)
        dirty = st.returncode == 0 and bool(st.stdout.strip())
        return rev, dirty
    except (OSError, subprocess.TimeoutExpired):
        return None, False


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build_manifest(
    episodes: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    config: dict[str, Any],
    routes_files: list[str],
    repo_dir: str | Path,
) -> dict[str, Any]:
    """Assemble the manifest dict (see module doc) from per-episode entries."""
    rev, dirty = git_revision(repo_dir)
    episodes = sorted(episodes, key=lambda e: e["file"])
    return {
        "schema_version": MANIFEST_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_revision": rev,
        "git_dirty": dirty,
        "config": config,
        "routes_files": list(routes_files),
        "episodes": episodes,
        "failed": failed,
        "totals": {
            "episodes": len(episodes),
            "frames": int(sum(e["num_frames"] for e in episodes)),
            "perturbed_frames": int(sum(e.get("perturbed_frames", 0) for e in episodes)),
            "student_frames": int(sum(e.get("student_frames", 0) for e in episodes)),
            "failed": len(failed),
        },
    }


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The manifest of ``root`` or None when there is none. Raises ValueError when it is unreadable."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise ValueError(f"{path}: not a dataset manifest (no 'episodes' list)")
    return data


def scan_dataset(root: str | Path, *, route_ids: set[str] | None = None, verify: bool = True) -> DatasetScan:
    """Load every episode of ``root`` that verifies; report the others.

    An episode is skipped (with its reason) when: it is a ``*.tmp`` left by an interrupted writer;
    it is listed in the manifest but missing; its file SHA-256 or frame count differs from the
    manifest; or :func:`training.episodes.read_episode` rejects it (truncated, bad schema, content
    checksum). Episodes present on disk but absent from the manifest are loaded when they verify
    (a collection that was interrupted before writing its manifest is still usable).
    ``route_ids`` keeps only episodes of those routes (for train / validation splits).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: the manifest exists but is not readable.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    manifest = read_manifest(root)
    skipped: list[SkippedEpisode] = []
    listed: dict[str, dict[str, Any]] = {}
    if manifest is not None:
        for entry in manifest["episodes"]:
            listed[str(entry.get("file"))] = entry
    for tmp in sorted(root.glob(f"*{TMP_SUFFIX}")):
        if tmp.name != MANIFEST_NAME + TMP_SUFFIX:
            skipped.append(SkippedEpisode(str(tmp), "partial write (temporary file of an interrupted writer)"))
    files = {p.name: p for p in sorted(root.glob(f"*{EPISODE_SUFFIX}"))}
    for name in sorted(set(listed) - set(files)):
        skipped.append(SkippedEpisode(str(root / name), "listed in the manifest but missing on disk"))
    episodes: list[Episode] = []
    for name, path in files.items():
        entry = listed.get(name)
        if route_ids is not None and entry is not None and str(entry.get("route_id")) not in route_ids:
            continue
        if entry is not None and verify and entry.get("sha256") and file_sha256(path) != entry["sha256"]:
            skipped.append(SkippedEpisode(str(path), "file SHA-256 differs from the manifest (modified or corrupt)"))
            continue
        try:
            ep = read_episode(path, verify=verify)
        except EpisodeError as exc:
            skipped.append(SkippedEpisode(str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        if entry is not None and int(entry.get("num_frames", ep.num_frames)) != ep.num_frames:
            skipped.append(SkippedEpisode(str(path), f"manifest says {entry['num_frames']} frames, file has {ep.num_frames}"))
            continue
        if route_ids is not None and ep.meta.route_id not in route_ids:
            continue
        episodes.append(ep)
    return DatasetScan(root=root, episodes=episodes, skipped=skipped, manifest=manifest)

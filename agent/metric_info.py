"""Bench2Drive's ``metric_info.json``: the hero vehicle's state at every agent tick.

Bench2Drive's comfort metric reads ``<SAVE_PATH>/<save_name>/metric_info.json`` =
``{"<step>": {"acceleration": [x, y, z], "angular_velocity": [x, y, z], "forward_vector": [x, y, z],
"right_vector": [x, y, z], "location": [x, y, z], "rotation": [roll, pitch, yaw]}, ...}`` with one
entry per agent tick (20 Hz). Values are CARLA's own, in the CARLA world frame: m/s^2, deg/s
(angular velocity), unit vectors, m, and degrees (rotation).

The hero vehicle exists only in a running CARLA world (found through scenario_runner's
``CarlaDataProvider``). In the embedded sandbox there is none, and the harness writes metric_info
from its ground truth instead.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

METRIC_INFO_FILENAME = "metric_info.json"


def find_hero_actor() -> Any | None:
    """The actor with ``role_name == 'hero'`` in scenario_runner's current CARLA world, or None when
    scenario_runner is not importable, no world is set, or no hero is spawned."""
    try:
        from srunner.scenariomanager.carla_data_provider import CarlaDataProvider
    except ImportError:
        return None
    try:
        world = CarlaDataProvider.get_world()
        if world is None:
            return None
        for actor in world.get_actors():
            if actor.attributes.get("role_name") == "hero":
                return actor
    except Exception as exc:  # a world that went away must not stop the agent
        logger.warning("hero actor lookup failed: %s", exc)
    return None


def _xyz(vector: Any) -> list[float]:
    return [float(vector.x), float(vector.y), float(vector.z)]


def metric_info_from_actor(actor: Any | None) -> dict[str, list[float]] | None:
    """One metric_info entry read from a CARLA actor (None for no actor)."""
    if actor is None:
        return None
    transform = actor.get_transform()
    rotation = transform.rotation
    return {
        "acceleration": _xyz(actor.get_acceleration()),
        "angular_velocity": _xyz(actor.get_angular_velocity()),
        "forward_vector": _xyz(transform.get_forward_vector()),
        "right_vector": _xyz(transform.get_right_vector()),
        "location": _xyz(transform.location),
        "rotation": [float(rotation.roll), float(rotation.pitch), float(rotation.yaw)],
    }


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` through a temporary file in the same folder and a rename,
    so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


class MetricInfoRecorder:
    """Collects metric_info entries by tick and writes them to ``path`` atomically.

    ``write_every`` > 0 rewrites the file every that many recorded ticks (so a crashed route still
    leaves most of its data); :meth:`flush` writes it once more at the end (``destroy``).
    """

    def __init__(self, path: Path, write_every: int = 100) -> None:
        if write_every < 0:
            raise ValueError(f"write_every must be >= 0, got {write_every}")
        self.path = Path(path)
        self.write_every = write_every
        self.entries: dict[str, dict[str, list[float]]] = {}
        self._since_write = 0

    def record(self, step: int, entry: dict[str, list[float]]) -> None:
        """Store the entry of tick ``step`` (0-based); writes the file when a period is complete."""
        self.entries[str(step)] = entry
        self._since_write += 1
        if self.write_every and self._since_write >= self.write_every:
            self.flush()

    def flush(self) -> None:
        """Write every entry so far to :attr:`path` (atomic)."""
        write_json_atomic(self.path, self.entries)
        self._since_write = 0

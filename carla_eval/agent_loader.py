"""Build agents the way the leaderboard evaluator does.

``leaderboard_evaluator.py`` puts the agent file's folder on ``sys.path``, imports the module by its
basename, calls the module-level ``get_entry_point()`` for the class NAME and builds
``Cls(host, port, debug)``. We do the same, once per worker for the import and once per route for
the instance (a fresh agent every route).

Debug frames (videos): an agent that supports them has ``get_debug_frame() -> DebugFrame | None``.
The harness switches them on before the route through ``enable_debug_frames(True)`` when that
method exists (an agent without it is free to produce frames always); see docs/harness.md.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable

from carla_eval.run_config import AgentSpec


class AgentLoadError(RuntimeError):
    """The agent file cannot be imported, has no usable entry point, or its class cannot be built."""


def load_agent_class(path: str | Path) -> type:
    """Import ``path`` like the leaderboard and return the class named by its ``get_entry_point()``."""
    path = Path(path)
    if path.suffix != ".py":
        raise AgentLoadError(f"agent must be a .py file (or 'expert'), got {path}")
    if not path.is_file():
        raise AgentLoadError(f"agent file not found: {path}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = path.stem
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code
        raise AgentLoadError(f"importing agent module {module_name!r} from {folder} failed: {exc!r}") from exc
    loaded_from = getattr(module, "__file__", None)
    if loaded_from and Path(loaded_from).resolve() != path.resolve():
        raise AgentLoadError(
            f"module name {module_name!r} resolves to {loaded_from}, not {path}: rename the agent file "
            f"or remove the clash from sys.path"
        )
    entry = getattr(module, "get_entry_point", None)
    if not callable(entry):
        raise AgentLoadError(f"{path} has no get_entry_point() function")
    try:
        class_name = entry()
    except Exception as exc:
        raise AgentLoadError(f"{path}: get_entry_point() raised {exc!r}") from exc
    cls = getattr(module, str(class_name), None)
    if cls is None or not callable(cls):
        raise AgentLoadError(f"{path}: get_entry_point() names {class_name!r}, which the module does not define")
    return cls


class AgentFactory:
    """Makes a fresh agent per route: the backend's expert, or ``Cls(host, port, debug)`` from a file.

    The class is imported on first use and kept (one import per worker process).
    """

    def __init__(self, spec: AgentSpec, create_expert: Callable[[], Any] | None = None) -> None:
        self.spec = spec
        self._create_expert = create_expert
        self._cls: type | None = None

    def __call__(self) -> Any:
        if self.spec.is_expert:
            if self._create_expert is None:
                raise AgentLoadError("--agent expert needs a backend with create_expert_agent()")
            try:
                return self._create_expert()
            except Exception as exc:
                raise AgentLoadError(f"the backend's expert agent could not be created: {exc!r}") from exc
        if self._cls is None:
            self._cls = load_agent_class(self.spec.path)
        try:
            return self._cls(self.spec.host, self.spec.port, self.spec.debug)
        except Exception as exc:
            raise AgentLoadError(f"{self._cls.__name__}({self.spec.host!r}, {self.spec.port}, {self.spec.debug}) raised {exc!r}") from exc


def enable_debug_frames(agent: Any, enabled: bool) -> bool:
    """Ask ``agent`` for debug frames; True when it can produce them (has ``get_debug_frame``)."""
    switch = getattr(agent, "enable_debug_frames", None)
    if callable(switch):
        switch(enabled)
    return callable(getattr(agent, "get_debug_frame", None))

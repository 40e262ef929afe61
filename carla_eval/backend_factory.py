"""Build a backend from a :class:`~carla_eval.run_config.BackendSpec` (inside each worker)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from typing import Any

from carla_eval.run_config import BackendSpec

BUILTIN_BACKENDS = {
    "sandbox": "carla_eval.sandbox:SandboxBackend",
    "carla": "carla_eval.carla_backend:CarlaBackend",
    "scripted": "carla_eval.scripted_backend:ScriptedBackend",
}


class BackendError(RuntimeError):
    """The backend named in a run cannot be found or built."""


def resolve_backend_class(name: str) -> type:
    """``sandbox`` / ``carla`` / ``scripted`` or ``package.module:ClassName`` -> the class."""
    target = BUILTIN_BACKENDS.get(name, name)
    if ":" not in target:
        raise BackendError(f"unknown backend {name!r}: use {', '.join(BUILTIN_BACKENDS)} or package.module:ClassName")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {name!r}: cannot import {module_name} ({exc})") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BackendError(f"backend {name!r}: {module_name} has no {class_name}")
    return cls


def dataclass_from_options(cls: type, options: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from a dict, nested dataclass fields from nested dicts; unknown keys raise."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise BackendError(f"{cls.__name__} has no option(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in options.items():
        hint = hints.get(key)
        if isinstance(value, dict) and isinstance(hint, type) and dataclasses.is_dataclass(hint):
            value = dataclass_from_options(hint, value)
        kwargs[key] = value
    return cls(**kwargs)


def _config_class(cls: type) -> type | None:
    """The dataclass type of a constructor taking a single ``config`` argument (e.g. SandboxBackend)."""
    try:
        params = [p for p in inspect.signature(cls).parameters.values() if p.name != "self"]
        hints = typing.get_type_hints(cls.__init__)
    except (TypeError, ValueError, NameError):
        return None
    if len(params) != 1 or params[0].name != "config":
        return None
    hint = hints.get("config")
    for candidate in typing.get_args(hint) or (hint,):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def create_backend(spec: BackendSpec, worker_index: int = 0) -> Any:
    """Instantiate the backend from its options.

    Options are the constructor's keyword arguments; a backend whose constructor takes one typed
    ``config`` dataclass (the sandbox) gets that dataclass built from the options instead (nested
    dicts for nested configs). A backend whose constructor takes ``worker_index`` also gets the
    worker's slot number (the CARLA backend derives its ports from it, so workers never clash).
    """
    cls = resolve_backend_class(spec.name)
    kwargs = dict(spec.options)
    config_cls = _config_class(cls)
    if config_cls is not None and "config" not in kwargs:
        return cls(dataclass_from_options(config_cls, kwargs)) if kwargs else cls()
    try:
        if "worker_index" in inspect.signature(cls).parameters:
            kwargs.setdefault("worker_index", worker_index)
    except (TypeError, ValueError):
        pass
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise BackendError(f"backend {spec.name!r} rejected its options {spec.options}: {exc}") from exc


def check_backend_options(spec: BackendSpec) -> None:
    """Check the options against the backend's constructor without building it (no simulator is
    started): unknown names, missing required options, and values a config dataclass refuses raise
    BackendError."""
    cls = resolve_backend_class(spec.name)
    config_cls = _config_class(cls)
    if config_cls is not None and "config" not in spec.options:
        if spec.options:
            try:
                dataclass_from_options(config_cls, dict(spec.options))
            except (TypeError, ValueError) as exc:
                raise BackendError(f"backend {spec.name!r}: bad options {spec.options}: {exc}") from exc
        return
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    kwargs = dict(spec.options)
    if "worker_index" in signature.parameters:
        kwargs.setdefault("worker_index", 0)
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        known = sorted(p for p in signature.parameters if p not in ("self", "worker_index"))
        raise BackendError(f"backend {spec.name!r} rejected its options {spec.options}: {exc}; known: {known}") from exc


def backend_route_errors(spec: BackendSpec, routes: list[Any]) -> dict[str, str]:
    """Route id -> why it can never run, from the backend class's optional ``route_error(route,
    options)`` (see carla_eval.backend); routes it accepts are not listed."""
    cls = resolve_backend_class(spec.name)
    check = getattr(cls, "route_error", None)
    if not callable(check):
        return {}
    errors: dict[str, str] = {}
    for route in routes:
        if route.error:
            continue  # malformed routes are recorded as invalid routes by the runner already
        reason = check(route, dict(spec.options))
        if reason:
            errors[route.route_id] = reason
    return errors

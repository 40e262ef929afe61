"""The agent's YAML configuration as a typed, validated dataclass.

``setup()`` receives the path of a YAML file (or, from Bench2Drive's evaluator,
``"<config>+<save_name>"``; see :func:`split_setup_argument`). Example (agent/configs/):

.. code-block:: yaml

    model: ../../weights/ik-tiny      # model folder, relative to this YAML file
    device: cpu                       # cpu | cuda | cuda:N
    rig: sandbox-bev                  # agent/rigs.py
    planning_hz: 10.0                 # model rate; control runs every tick (20 Hz)
    controller: {...}                 # agent.controller.ControllerConfig fields
    safety: {max_speed_mps: 20.0}
    creep: {stuck_ticks: 800}
    route: {reach_radius_m: 4.0}

Every key and its type is checked: an unknown key or a wrong type raises :class:`ConfigError`
naming the key (``creep.stuk_ticks: unknown key ...``). Loading has no side effects: the
``SAVE_PATH`` fallback of Bench2Drive is applied by the agent in ``setup``, not here.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from agent.creep import CreepConfig
from agent.planning import PlannerConfig
from agent.rigs import RIGS
from agent.route_planner import RoutePlannerConfig
from agent.safety import SafetyConfig
from agent.sensor_io import ACCELERATION_SOURCES

_DEVICE_RE = re.compile(r"^(cpu|cuda|cuda:\d+|mps)$")


class ConfigError(ValueError):
    """An invalid agent configuration; the message names the key."""


def _controller_config_cls() -> type:
    from agent.controller import ControllerConfig

    return ControllerConfig


def _default_controller() -> Any:
    return _controller_config_cls()()


@dataclass(frozen=True)
class AgentConfig:
    """Everything the IKAgent needs, typed.

    Attributes:
        model: model folder (``save_pretrained`` layout); relative paths in YAML are resolved
            against the YAML file's folder.
        device: torch device: "cpu", "cuda", "cuda:N" (or "mps").
        rig: sensor rig name (agent/rigs.py): "carla-3cam", "b2d-3cam" or "sandbox-bev".
        planning_hz: how often the model plans (Hz). Between plans the last plan is moved into the
            current ego frame (agent/odometry.py). >= the tick rate plans every tick.
        num_inference_steps: diffusion denoising steps (None: the model's default).
        num_samples: diffusion plans drawn per planning step and averaged (1: one draw).
        slowest_fraction: average only this share of the draws, the slowest ones (shortest path);
            1.0 (default): all draws (``agent.model.pipeline.reduce_samples``).
        seed: seed of the diffusion sampler's generator (plans are reproducible per route).
        num_threads: torch CPU threads (None: leave torch's default).
        lat_ref, lon_ref: the map's geo-reference in degrees; None (both): solved per route from the
            global plan's GPS and world forms (``agent.geo.plan_geo_reference``), which works on
            every town; numbers force a reference (the sandbox's is 0, 0).
        acceleration_source: "imu" (accelerometer x) or "speed" (speed differences).
        max_abs_acceleration: clip of the decoded acceleration (m/s^2).
        jpeg_quality: JPEG-compress camera images at this quality (1-100) before the model, as the
            training images were (Bench2Drive: 20); None: no compression.
        controller: ``agent.controller.ControllerConfig`` (PID gains and limits).
        route: route planner settings.
        creep: stand-still creep settings.
        safety: speed and throttle limits, warning rate.
        debug_frames: keep a :class:`agent.debug_frame.DebugFrame` per tick for videos.
        save_path: Bench2Drive metric_info root: ``<save_path>/<save_name>/metric_info.json`` (None:
            the agent falls back to the ``SAVE_PATH`` environment variable, as Bench2Drive's scripts
            set it; none at all: no metric_info).
        metric_info_every: rewrite metric_info.json every this many ticks (0: only at the end).
        planner: where the plans are computed (agent/planning.py ``PlannerConfig``): ``{mode: inprocess}``
            (default: the model in this process, needs the project's Python >= 3.10) or
            ``{mode: server, address: ..., start: {python: ...}}`` (a model server; the evaluator
            may then be Python 3.7). ``model``, ``device`` and ``num_threads`` are the server's in
            server mode; ``seed``, ``num_inference_steps``, ``num_samples`` and ``slowest_fraction`` travel
            with each request.
    """

    model: Path
    device: str = "cpu"
    rig: str = "sandbox-bev"
    planning_hz: float = 10.0
    num_inference_steps: Optional[int] = None
    num_samples: int = 1
    slowest_fraction: float = 1.0
    seed: int = 0
    num_threads: Optional[int] = None
    lat_ref: Optional[float] = None
    lon_ref: Optional[float] = None
    acceleration_source: str = "imu"
    max_abs_acceleration: float = 15.0
    jpeg_quality: Optional[int] = None
    controller: Any = field(default_factory=_default_controller)
    route: RoutePlannerConfig = field(default_factory=RoutePlannerConfig)
    creep: CreepConfig = field(default_factory=CreepConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    debug_frames: bool = False
    save_path: Optional[Path] = None
    metric_info_every: int = 100
    planner: PlannerConfig = field(default_factory=PlannerConfig)

    def __post_init__(self) -> None:
        if not _DEVICE_RE.match(self.device):
            raise ConfigError(f"device: {self.device!r} is not 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if self.rig not in RIGS:
            raise ConfigError(f"rig: unknown rig {self.rig!r}; known rigs: {sorted(RIGS)}")
        if not (math.isfinite(self.planning_hz) and self.planning_hz > 0):
            raise ConfigError(f"planning_hz: must be > 0, got {self.planning_hz}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps: must be >= 1, got {self.num_inference_steps}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples: must be >= 1, got {self.num_samples}")
        if not 0.0 < self.slowest_fraction <= 1.0:
            raise ConfigError(f"slowest_fraction: must be in (0, 1], got {self.slowest_fraction}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads: must be >= 1, got {self.num_threads}")
        if self.acceleration_source not in ACCELERATION_SOURCES:
            raise ConfigError(
                f"acceleration_source: {self.acceleration_source!r} is not one of {list(ACCELERATION_SOURCES)}"
            )
        if not self.max_abs_acceleration > 0:
            raise ConfigError(f"max_abs_acceleration: must be > 0, got {self.max_abs_acceleration}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ConfigError("jpeg_quality: must be in [1, 100] or null, got {}".format(self.jpeg_quality))
        if self.metric_info_every < 0:
            raise ConfigError(f"metric_info_every: must be >= 0, got {self.metric_info_every}")
        if (self.lat_ref is None) != (self.lon_ref is None):
            raise ConfigError("lat_ref/lon_ref: give both (to force a reference) or neither (solved from the plan)")
        if self.lat_ref is not None and not (-85.0 < self.lat_ref < 85.0 and -180.0 <= self.lon_ref <= 180.0):
            raise ConfigError(f"lat_ref/lon_ref: out of range ({self.lat_ref}, {self.lon_ref})")


# --------------------------------------------------------------------------- parsing
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


_UNION_ORIGINS = (Union, getattr(types, "UnionType", Union))  # ``X | None`` exists from Python 3.10
_LITERAL = getattr(typing, "Literal", None)  # Python >= 3.8


def _origin(tp: Any) -> Any:
    """``typing.get_origin`` (Python >= 3.8), or the ``__origin__`` it reads on Python 3.7."""
    get_origin = getattr(typing, "get_origin", None)
    return get_origin(tp) if get_origin is not None else getattr(tp, "__origin__", None)


def _args(tp: Any) -> tuple:
    """``typing.get_args`` (Python >= 3.8), or ``__args__`` on Python 3.7."""
    get_args = getattr(typing, "get_args", None)
    return tuple(get_args(tp)) if get_args is not None else tuple(getattr(tp, "__args__", ()))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, str -> Path)."""
    origin = _origin(tp)
    if origin in _UNION_ORIGINS:
        args = _args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} does not fit {tp}")
    if origin is tuple:
        args = _args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if _LITERAL is not None and origin is _LITERAL:
        if value not in _args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{where}: expected a path string, got {type(value).__name__} {value!r}")
        return Path(value)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)} in the config schema")


def build_dataclass(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types by name.

    A ``ValueError`` raised by the dataclass's own validation becomes a :class:`ConfigError`
    prefixed with ``where``.
    """
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; known keys are {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{prefix}{key!r}: keys must be strings")
        tp = hints[key]
        if cls is AgentConfig and key == "controller":
            tp = _controller_config_cls()
        kwargs[key] = _coerce(value, tp, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as exc:  # a missing required field
        raise ConfigError(f"{where or 'config'}: {exc}") from None
    except ValueError as exc:
        message = str(exc)
        if prefix and not message.startswith(prefix):
            message = f"{prefix}{message}"
        raise ConfigError(message) from None


def agent_config_from_dict(data: Any, base_dir: Path | None = None) -> AgentConfig:
    """An :class:`AgentConfig` from a parsed YAML mapping; relative ``model``, ``save_path``,
    ``planner.start.python`` (when it holds a ``/``) and ``planner.start.log_file`` resolve against
    ``base_dir`` (the YAML file's folder)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    if "model" not in data:
        raise ConfigError("model: required key missing (the model folder, relative to the YAML file)")
    config = build_dataclass(AgentConfig, data)
    if base_dir is not None:
        updates = {}
        if not config.model.is_absolute():
            updates["model"] = (Path(base_dir) / config.model).resolve()
        if config.save_path is not None and not config.save_path.is_absolute():
            updates["save_path"] = (Path(base_dir) / config.save_path).resolve()
        start = config.planner.start
        if start is not None:
            start_updates = {}
            if "/" in start.python and not Path(start.python).is_absolute():
                start_updates["python"] = str((Path(base_dir) / start.python).resolve())
            if start.log_file is not None and not Path(start.log_file).is_absolute():
                start_updates["log_file"] = str((Path(base_dir) / start.log_file).resolve())
            if start_updates:
                updates["planner"] = dataclasses.replace(
                    config.planner, start=dataclasses.replace(start, **start_updates))
        if updates:
            config = dataclasses.replace(config, **updates)
    return config


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent YAML file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"agent config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    try:
        return agent_config_from_dict(data, base_dir=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def split_setup_argument(path_to_conf_file: str) -> tuple[str, str | None]:
    """``"<config>"`` -> (config, None); Bench2Drive's ``"<config>+<save_name>"`` -> (config, save_name).

    Bench2Drive's evaluator appends ``+<save_name>`` once per route to the same argument string, so
    a later route sees ``"<config>+<name1>+<name2>"``: the config is the first part and the save
    name the last.
    """
    parts = str(path_to_conf_file).split("+")
    config = parts[0]
    save_name = parts[-1] if len(parts) > 1 and parts[-1] else None
    return config, save_name

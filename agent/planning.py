"""Where the agent's plans come from: plan requests, plans, per-request seeds and the planner config.

The :class:`Planner` is what the driving loop calls. It turns one tick's model inputs into a
:class:`PlanRequest` with its own seed and hands it to a backend, which is either

- in-process: ``agent.plan_runner.PlanRunner`` (torch, the model in the agent's own process; the
  evaluator must then run the project's Python, >= 3.10), or
- a model server: ``agent.plan_client.ServerClient`` talks to ``python -m agent.serve`` running in
  the project's environment, so the evaluator itself may be Python 3.7.

Both backends compute a request the same way (``PlanRunner.run_batch``), so the same request gives
the same plan in both modes. The seed of the k-th request of a route is ``plan_seed(seed, k)``: a
plan depends only on its own request, not on what ran before it or what it was batched with.

This module is part of the evaluator side: Python 3.7+, numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

PLANNER_MODES = ("inprocess", "server")
_MASK64 = (1 << 64) - 1


class PlanError(RuntimeError):
    """The model returned something unusable (wrong shape, NaN/inf), or rejected the request."""


class PlannerUnavailable(RuntimeError):
    """The model server cannot be reached or did not answer in time (the agent brakes meanwhile)."""


@dataclass(frozen=True)
class ModelGeometry:
    """What the agent must know about the model: cameras, image size (H, W) in pixels, waypoints
    per plan and their spacing ``waypoint_dt`` (s)."""

    num_cameras: int
    image_size: Tuple[int, int]
    num_waypoints: int
    waypoint_dt: float


@dataclass(frozen=True)
class Plan:
    """One model plan.

    Attributes:
        trajectory: float64 [T, 2], waypoints in the ego frame of the tick that made it (m, x forward,
            y right), ``waypoint_dt`` apart, the first ``waypoint_dt`` ahead.
        timings: latencies in ms: the pipeline's stages, "call" (the model call of the batch that held
            the request) and, through a server, "server" (request handling there) and "round_trip".
    """

    trajectory: np.ndarray
    timings: Dict[str, float]


@dataclass(frozen=True)
class PlanRequest:
    """The model inputs of one plan.

    Attributes:
        images: uint8 [N_cam, H, W, 3] RGB, cameras in the rig's order, at the model's (H, W).
        command: RoadOption value (-1, 1..6).
        speed: ego speed (m/s); acceleration: longitudinal acceleration (m/s^2).
        target_point: float64 [2], the route target in the ego frame (m, x forward, y right).
        seed: seed of this request's diffusion noise, 0 <= seed < 2**63.
        num_inference_steps: diffusion steps (None: the model's default).
        num_samples: diffusion draws reduced to the plan (>= 1).
        slowest_fraction: the plan is the mean of this share of the draws, the slowest ones (shortest
            path); 1.0, the default: the mean of all draws (``agent.model.pipeline.reduce_samples``).
    """

    images: np.ndarray
    command: int
    speed: float
    acceleration: float
    target_point: np.ndarray
    seed: int
    num_inference_steps: Optional[int] = None
    num_samples: int = 1
    slowest_fraction: float = 1.0

    def check(self, geometry: ModelGeometry) -> None:
        """Raise :class:`PlanError` naming the first field that does not fit ``geometry``."""
        expected = (geometry.num_cameras, geometry.image_size[0], geometry.image_size[1], 3)
        images = self.images
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape != expected:
            got = (images.dtype, images.shape) if isinstance(images, np.ndarray) else type(images).__name__
            raise PlanError("images: expected uint8 {}, got {}".format(expected, got))
        if isinstance(self.command, bool) or not isinstance(self.command, (int, np.integer)):
            raise PlanError("command: expected an integer RoadOption value, got {!r}".format(self.command))
        for name in ("speed", "acceleration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value):
                raise PlanError("{}: expected a finite number, got {!r}".format(name, value))
        target = np.asarray(self.target_point)
        if target.shape != (2,) or not np.isfinite(target.astype(np.float64)).all():
            raise PlanError("target_point: expected 2 finite numbers, got {!r}".format(self.target_point))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2 ** 63:
            raise PlanError("seed: expected an integer in [0, 2**63), got {!r}".format(self.seed))
        steps = self.num_inference_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise PlanError("num_inference_steps: expected None or an integer >= 1, got {!r}".format(steps))
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise PlanError("num_samples: expected an integer >= 1, got {!r}".format(self.num_samples))
        fraction = self.slowest_fraction
        if (isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating))
                or not 0.0 < fraction <= 1.0):
            raise PlanError("slowest_fraction: expected a number in (0, 1], got {!r}".format(fraction))

    @property
    def settings(self) -> Tuple[Optional[int], int, float]:
        """(num_inference_steps, num_samples, slowest_fraction): requests batch together only when
        these agree."""
        return self.num_inference_steps, self.num_samples, float(self.slowest_fraction)


def plan_seed(route_seed: int, index: int) -> int:
    """Seed of the ``index``-th request of a route seeded ``route_seed``: SplitMix64 of the pair,
    in [0, 2**63) (what ``torch.Generator.manual_seed`` takes). Pure integer arithmetic, so the
    evaluator side and the model server agree on every platform."""
    z = (int(route_seed) * 0x9E3779B97F4A7C15 + int(index) + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def blank_request(geometry: ModelGeometry, seed: int, num_inference_steps: Optional[int],
                  num_samples: int, slowest_fraction: float = 1.0) -> PlanRequest:
    """Grey images, lane follow at rest, a target 10 m ahead: the warm-up request."""
    h, w = geometry.image_size
    return PlanRequest(images=np.zeros((geometry.num_cameras, h, w, 3), dtype=np.uint8), command=4, speed=0.0,
                       acceleration=0.0, target_point=np.array([10.0, 0.0]), seed=seed,
                       num_inference_steps=num_inference_steps, num_samples=num_samples,
                       slowest_fraction=slowest_fraction)


class Planner:
    """Seeds one route's requests and runs them on a backend.

    ``backend`` has ``geometry`` (:class:`ModelGeometry`), ``run(request) -> Plan`` and ``close()``.
    The k-th call of :meth:`plan` (counting from 0, probes included) uses seed ``plan_seed(seed, k)``.
    """

    def __init__(self, backend: Any, seed: int = 0, num_inference_steps: Optional[int] = None,
                 num_samples: int = 1, slowest_fraction: float = 1.0) -> None:
        self.backend = backend
        self.seed = int(seed)
        self.num_inference_steps = num_inference_steps
        self.num_samples = int(num_samples)
        self.slowest_fraction = float(slowest_fraction)
        self.requests = 0

    @property
    def geometry(self) -> ModelGeometry:
        return self.backend.geometry

    def request(self, images: np.ndarray, command: int, speed: float, acceleration: float,
                target_point: np.ndarray) -> PlanRequest:
        """The next request of the route (advances the seed counter)."""
        request = PlanRequest(images=images, command=int(command), speed=float(speed),
                              acceleration=float(acceleration),
                              target_point=np.asarray(target_point, dtype=np.float64).reshape(-1),
                              seed=plan_seed(self.seed, self.requests),
                              num_inference_steps=self.num_inference_steps, num_samples=self.num_samples,
                              slowest_fraction=self.slowest_fraction)
        self.requests += 1
        return request

    def plan(self, images: np.ndarray, command: int, speed: float, acceleration: float,
             target_point: np.ndarray) -> Plan:
        """Plan from uint8 RGB ``images`` [N_cam, H, W, 3], a RoadOption ``command``, ``speed`` (m/s),
        ``acceleration`` (m/s^2) and ``target_point`` [2] (ego frame, m)."""
        return self.backend.run(self.request(images, command, speed, acceleration, target_point))

    def warm_up(self) -> Plan:
        """One plan on blank inputs, outside the route's seed sequence (first-call allocations happen
        here, and a setting the model rejects, e.g. too many diffusion steps, fails here)."""
        return self.backend.run(blank_request(self.geometry, plan_seed(self.seed, 2 ** 62),
                                              self.num_inference_steps, self.num_samples, self.slowest_fraction))

    def close(self) -> None:
        self.backend.close()


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ServerStartConfig:
    """How the agent starts a model server when none answers at ``planner.address``.

    Attributes:
        python: the interpreter of the project's environment (Python >= 3.10 with torch), e.g.
            ``/opt/ik-drive/.venv/bin/python``; a value with a ``/`` is relative to the YAML file,
            a bare name is looked up on PATH.
        ready_timeout_s: how long ``setup`` waits for the server to load the model and answer (s).
        keep_running: False: ``destroy`` stops the server this agent started (by PID), and the server
            also exits when this evaluator process does. True: it stays for the next routes and
            exits after ``idle_exit_s`` without requests.
        idle_exit_s: with ``keep_running``, the server exits after this long without a request (s).
        max_batch: largest batch the server forms from concurrent requests.
        max_wait_ms: longest a request waits for others to batch with (ms).
        max_restarts: restarts of a server that died, per route.
        log_file: server output goes here (appended; None: the evaluator's own stderr).
    """

    python: str
    ready_timeout_s: float = 120.0
    keep_running: bool = False
    idle_exit_s: float = 600.0
    max_batch: int = 8
    max_wait_ms: float = 3.0
    max_restarts: int = 3
    log_file: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.python:
            raise ValueError("python: the interpreter path of the project's environment is required")
        for name in ("ready_timeout_s", "idle_exit_s"):
            if not getattr(self, name) > 0:
                raise ValueError("{}: must be > 0, got {}".format(name, getattr(self, name)))
        if self.max_batch < 1:
            raise ValueError("max_batch: must be >= 1, got {}".format(self.max_batch))
        if not 0 <= self.max_wait_ms <= 1000:
            raise ValueError("max_wait_ms: must be in [0, 1000], got {}".format(self.max_wait_ms))
        if self.max_restarts < 0:
            raise ValueError("max_restarts: must be >= 0, got {}".format(self.max_restarts))


@dataclass(frozen=True)
class PlannerConfig:
    """Where the agent's plans are computed.

    Attributes:
        mode: "inprocess" (the model runs in the evaluator's process; needs the project's Python) or
            "server" (a model server, ``python -m agent.serve``, computes them).
        address: the server's address, ``ipc:///absolute/path`` or ``tcp://127.0.0.1:PORT`` (server
            mode only; local addresses only).
        request_timeout_s: a plan that takes longer counts as a server failure (s).
        start: how to start a server when none answers at ``address`` (None: attach only; setup
            fails when no server answers).
    """

    mode: str = "inprocess"
    address: Optional[str] = None
    request_timeout_s: float = 5.0
    start: Optional[ServerStartConfig] = None

    def __post_init__(self) -> None:
        if self.mode not in PLANNER_MODES:
            raise ValueError("mode: {!r} is not one of {}".format(self.mode, list(PLANNER_MODES)))
        if self.mode == "inprocess":
            for name in ("address", "start"):
                if getattr(self, name) is not None:
                    raise ValueError("{}: only used with mode: server".format(name))
            return
        if self.address is None:
            raise ValueError("address: required with mode: server (ipc:///path or tcp://127.0.0.1:PORT)")
        from agent.plan_wire import WireError, check_address

        try:
            check_address(self.address)
        except WireError as exc:
            raise ValueError("address: {}".format(exc)) from None
        if not self.request_timeout_s > 0:
            raise ValueError("request_timeout_s: must be > 0, got {}".format(self.request_timeout_s))

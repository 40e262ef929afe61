"""Which GPU each worker gets, and the per-worker backend options that follow from the run.

``--gpus 0,1,2,3 --workers-per-gpu 2`` gives worker slots 0 and 1 GPU 0, slots 2 and 3 GPU 1, and
so on (slot ``i`` -> ``gpus[i // workers_per_gpu]``). A worker's GPU reaches

- the agent: ``CUDA_VISIBLE_DEVICES=<gpu>`` in the worker process (in-process agents) and in the
  CARLA evaluator's environment (the evaluator loads the agent);
- the simulator: the CARLA backend's ``gpu`` option, i.e. ``-graphicsadapter=<gpu>`` for a server
  it starts, or Bench2Drive's ``--gpu-rank=<gpu>`` (CARLA ignores ``CUDA_VISIBLE_DEVICES``).

On Ray each actor declares ``num_gpus = 1 / workers_per_gpu``; Ray picks the device and sets
``CUDA_VISIBLE_DEVICES`` itself, and the actor passes ``ray.get_gpu_ids()[0]`` on as ``gpu``.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Sequence

from carla_eval.run_config import BackendSpec


def parse_gpus(text: str) -> tuple[int, ...]:
    """``"0,1,3"`` -> (0, 1, 3); every id a non-negative integer, no repeats."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--gpus {text!r} names no GPU")
    try:
        gpus = tuple(int(t) for t in items)
    except ValueError:
        raise ValueError(f"--gpus {text!r}: GPU ids are integers, e.g. 0,1,2,3") from None
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus {text!r}: ids must be >= 0 and distinct")
    return gpus


def gpu_for_slot(slot: int, gpus: Sequence[int], workers_per_gpu: int = 1) -> int | None:
    """GPU of worker ``slot`` (None when no GPUs are given). Raises when the slot has none."""
    if not gpus:
        return None
    if workers_per_gpu < 1:
        raise ValueError(f"workers per GPU must be >= 1, got {workers_per_gpu}")
    k = slot // workers_per_gpu
    if k >= len(gpus):
        raise ValueError(f"worker slot {slot} has no GPU: {len(gpus)} GPU(s) x {workers_per_gpu} worker(s) per GPU")
    return int(gpus[k])


def _accepts(name: str, option: str) -> bool:
    from carla_eval.backend_factory import BackendError, resolve_backend_class

    try:
        cls = resolve_backend_class(name)
        return option in inspect.signature(cls).parameters
    except (BackendError, TypeError, ValueError):
        return False


def spec_for_gpu(spec: BackendSpec, gpu: int | None) -> BackendSpec:
    """``spec`` with ``gpu`` set, for a backend that takes a ``gpu`` option (others are unchanged)."""
    if gpu is None or not _accepts(spec.name, "gpu"):
        return spec
    return replace(spec, options={**spec.options, "gpu": int(gpu)})


def clean_timeout_s(route_timeout_s: float) -> float:
    """The backend's own time limit for an attempt: enough below ``--route-timeout`` that the backend
    stops its processes before the harness kills the worker (20 %, at most 60 s, earlier)."""
    return max(0.5 * route_timeout_s, route_timeout_s - min(60.0, 0.2 * route_timeout_s))


def spec_for_run(spec: BackendSpec, route_timeout_s: float | None) -> BackendSpec:
    """Pass ``--route-timeout`` down as the backend's ``route_wall_timeout_s`` (when it has that
    option and the user did not set it); None or 0 (no limit) passes nothing."""
    if not route_timeout_s or "route_wall_timeout_s" in spec.options or not _accepts(spec.name, "route_wall_timeout_s"):
        return spec
    return replace(spec, options={**spec.options, "route_wall_timeout_s": clean_timeout_s(route_timeout_s)})

"""Trainer state on disk without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder ``<output_dir>/checkpoints/step_<N>/`` holds::

    model/                     the trained module, saved by the task (``save_pretrained`` style, safetensors)
    optimizer.safetensors      every tensor of ``optimizer.state_dict()["state"]`` as "state.<param>.<name>"
    optimizer.json             the rest of the optimizer state (param_groups, non-tensor per-param values)
    trainer_state.json         {"step": N, "config": {...}, "metrics": {...}}

It is written to ``step_<N>.tmp`` and renamed, so a crash never leaves a half checkpoint under the
final name. Nothing here calls ``pickle`` or ``torch.load``. (``accelerate``'s ``save_state`` is not
used: it stores RNG states and, for optimizers, ``torch.save`` pickles.) The trainer re-seeds every
step from (seed, step), so no RNG state needs saving for an exact resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

STEP_PREFIX = "step_"


def _encode(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    raise TypeError(f"optimizer state value of type {type(obj).__name__} cannot be stored as JSON")


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v) for v in obj["__tuple__"])
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def optimizer_state_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into (tensors for safetensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = _encode(value)
    rest = {"param_groups": _encode(state["param_groups"]), "scalars": scalars, "param_ids": [str(p) for p in state["state"]]}
    return tensors, rest


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_state_to_files` (param ids come back as ints)."""
    state: dict[int, dict[str, Any]] = {}
    for pid in rest["param_ids"]:
        state[int(pid)] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in rest["scalars"].items():
        state.setdefault(int(pid), {}).update({k: _decode(v) for k, v in values.items()})
    return {"state": state, "param_groups": _decode(rest["param_groups"])}


def save_checkpoint(
    root: str | Path,
    step: int,
    save_model: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep_last: int = 2,
) -> Path:
    """Write ``root/step_<step>`` atomically (see module doc); keep the newest ``keep_last``."""
    root = Path(root)
    final = root / f"{STEP_PREFIX}{step:07d}"
    tmp = root / f"{STEP_PREFIX}{step:07d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(tmp / "model")
    tensors, rest = optimizer_state_to_files(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(rest))
    (tmp / "trainer_state.json").write_text(json.dumps({**trainer_state, "step": step}, indent=2, sort_keys=True))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep_last > 0:
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first (``*.tmp`` ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX) and not p.name.endswith(".tmp")]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def load_trainer_state(ckpt: str | Path) -> dict[str, Any]:
    """``trainer_state.json`` of a checkpoint folder."""
    path = Path(ckpt) / "trainer_state.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a checkpoint folder (no trainer_state.json): {ckpt}")
    return json.loads(path.read_text())


def load_optimizer(ckpt: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore ``optimizer`` from a checkpoint folder (tensors mapped to the optimizer's device)."""
    ckpt = Path(ckpt)
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    rest = json.loads((ckpt / "optimizer.json").read_text())
    optimizer.load_state_dict(optimizer_state_from_files(tensors, rest))

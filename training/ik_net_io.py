"""A trained IK net on disk, apart from its model: what ``model.ik_net_from`` of stage (b) loads.

``ik_net.safetensors`` holds the IK net's tensors (``ik_net.*``) and the trajectory normaliser's
(``normalizer.*``); ``ik_net.json`` what they were trained for (:func:`ik_net_meta`: the IK config,
the vision config, the future horizons, the number of waypoints). Loading is strict: a model that
differs in any of those is refused, naming the field. Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import torch

IK_WEIGHTS = "ik_net.safetensors"
IK_META = "ik_net.json"


def ik_net_meta(ik_config: dict[str, Any], vision_config: dict[str, Any], horizons: Sequence[float],
                num_waypoints: int) -> dict[str, Any]:
    """What a saved IK net must match in the model that loads it."""
    return {"ik_net": ik_config, "vision": vision_config, "horizons_s": [float(h) for h in horizons],
            "num_waypoints": int(num_waypoints)}


def save_ik_net(path: str | Path, net: torch.nn.Module, normalizer: torch.nn.Module, meta: dict[str, Any]) -> None:
    """``ik_net.safetensors`` (``ik_net.*`` and ``normalizer.*`` tensors) and ``ik_net.json``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"ik_net.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"normalizer.{k}": v for k, v in normalizer.state_dict().items()})
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path / IK_WEIGHTS))
    from carla_eval.atomic_io import atomic_write_text

    atomic_write_text(path / IK_META, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_ik_net(model: Any, path: str | Path) -> None:
    """Load a saved IK net and its normaliser into an IK model (strict; see :func:`ik_net_meta`)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / IK_WEIGHTS).is_file() or not (path / IK_META).is_file():
        raise FileNotFoundError(f"{path}: not a saved IK net folder (needs {IK_WEIGHTS} and {IK_META})")
    saved = json.loads((path / IK_META).read_text())
    cfg = model.config
    want = ik_net_meta(dataclasses.asdict(cfg.ik_net), cfg.vision.to_dict(), cfg.future.horizons_s, cfg.num_waypoints)
    want = json.loads(json.dumps(want))  # tuples as JSON reads them back
    for key in want:
        a, b = saved.get(key), want[key]
        if key == "vision":
            a, b = {k: v for k, v in (a or {}).items() if k != "freeze"}, {k: v for k, v in b.items() if k != "freeze"}
        if a != b:
            raise ValueError(f"{path}: the IK net was trained for {key} {a}, the model has {b}")
    tensors = load_file(str(path / IK_WEIGHTS))
    for prefix, module in (("ik_net.", model.ik_net), ("normalizer.", model.normalizer)):
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)

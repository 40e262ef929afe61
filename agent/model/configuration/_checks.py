"""Validation helpers shared by the model configs, and the transformers backbone-dict helpers.

Every check raises ``ValueError`` naming the owner and the field (``VisionConfig.image_size: ...``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from typing import Any, Mapping

# Keys of a transformers config dict that describe the file, not the architecture.
_BACKBONE_META_KEYS = frozenset(
    {
        "transformers_version",
        "architectures",
        "model_type",
        "dtype",
        "torch_dtype",
        "_name_or_path",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "use_cache",
        "id2label",
        "label2id",
        "problem_type",
        "chunk_size_feed_forward",
        "is_encoder_decoder",
    }
)


def _fail(owner: str, name: str, message: str) -> None:
    raise ValueError(f"{owner}.{name}: {message}")


def _check_keys(cls: type, data: Mapping[str, Any], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")


def _positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(owner, name, f"must be an integer >= {minimum}, got {value!r}")


def _positive_float(owner: str, name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        _fail(owner, name, f"must be a finite number {bound}, got {value!r}")


def _choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(owner, name, f"unknown value {value!r}; choose one of {list(choices)}")


def backbone_init_keys(config_cls: type) -> frozenset[str]:
    """Keyword arguments accepted by a transformers config class (architecture keys)."""
    params = inspect.signature(config_cls.__init__).parameters
    names = {n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    return frozenset(names - _BACKBONE_META_KEYS)


def backbone_dict_from_config(hf_config: Any) -> dict[str, Any]:
    """Architecture keys of a transformers config object, as a plain JSON-able dict.

    Keys that the config class does not take as constructor arguments (derived attributes such as
    ``stage_names``) and file meta data (``transformers_version``, ``dtype`` ...) are dropped.
    """
    keys = backbone_init_keys(type(hf_config))
    full = hf_config.to_dict()
    out = {k: v for k, v in full.items() if k in keys}
    # DINOv3 stores backbone stage selection under private names in __init__.
    for private in ("_out_features", "_out_indices"):
        out.pop(private, None)
    return json.loads(json.dumps(out))


def _validate_backbone(owner: str, backbone: Mapping[str, Any], config_cls: type, required: tuple[str, ...]) -> None:
    if not isinstance(backbone, Mapping):
        _fail(owner, "backbone", f"must be a dict of {config_cls.__name__} arguments")
    allowed = backbone_init_keys(config_cls)
    unknown = sorted(set(backbone) - allowed)
    if unknown:
        _fail(owner, "backbone", f"unknown {config_cls.__name__} argument(s) {unknown}")
    for key in required:
        if key not in backbone:
            _fail(owner, "backbone", f"missing required key {key!r}")


def _as_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(value)  # type: ignore[return-value]
    return value

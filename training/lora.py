"""Low-rank adapters (LoRA) for the VLA's LLM, merged into plain weights whenever the model is saved.

For a frozen linear layer W (out x in) an adapter adds a trainable update of rank r::

    y = W x + b + (alpha / r) * B (A dropout(x))        A [r, in] ~ Kaiming-uniform, B [out, r] = 0

so training starts from the pretrained function exactly. A saved model is always the merged one
(W' = W + (alpha / r) B A in the layer's own ``weight``), loadable by ``agent.model.load_pipeline``
without this module; the adapters are saved next to it (``lora_adapters.safetensors``) so a run can
resume. Resuming rebuilds the pretrained W from the local LLM folder, loads A and B, and checks
that W + (alpha / r) B A reproduces the saved W' (a different LLM folder is an error).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

ADAPTERS_NAME = "lora_adapters.safetensors"


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a rank-``rank`` trainable update (see the module doc)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"lora.rank must be >= 1, got {rank}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = float(alpha) / float(rank)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.dropout(x) @ self.lora_A.t().to(x.dtype)  # [..., r]
        return self.base(x) + (update @ self.lora_B.t().to(x.dtype)) * self.scaling  # [..., out]

    def merged_weight(self) -> torch.Tensor:
        """W + (alpha / r) B A, [out, in] (detached)."""
        with torch.no_grad():
            return self.base.weight + self.scaling * (self.lora_B.float() @ self.lora_A.float()).to(self.base.weight.dtype)


def apply_lora(llm: nn.Module, target_modules: Sequence[str], rank: int, alpha: float, dropout: float = 0.0) -> list[str]:
    """Freeze every weight of ``llm`` and wrap its ``nn.Linear`` layers whose attribute name is in
    ``target_modules`` (e.g. q_proj). Returns the wrapped layers' names; raises if none matched."""
    for p in llm.parameters():
        p.requires_grad_(False)
    targets = set(target_modules)
    wrapped = []
    for name, module in list(llm.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, rank, alpha, dropout))
                wrapped.append(f"{name}.{child_name}" if name else child_name)
    if not wrapped:
        raise ValueError(f"lora.target_modules {sorted(targets)}: no linear layer of that name in the LLM")
    return wrapped


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def has_lora(model: nn.Module) -> bool:
    return bool(lora_layers(model))


@contextlib.contextmanager
def merged_view(model: nn.Module) -> Iterator[dict[str, nn.Linear]]:
    """Temporarily replace every adapter by a plain ``nn.Linear`` holding the merged weight (the
    model then has the architecture and state-dict keys of the model without adapters)."""
    swapped: list[tuple[nn.Module, str, LoRALinear]] = []
    plain: dict[str, nn.Linear] = {}
    try:
        for name, layer in lora_layers(model):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            base = layer.base
            linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                               device=base.weight.device, dtype=base.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(layer.merged_weight())
                if base.bias is not None:
                    linear.bias.copy_(base.bias)
            setattr(parent, attr, linear)
            swapped.append((parent, attr, layer))
            plain[name] = linear
        yield plain
    finally:
        for parent, attr, layer in swapped:
            setattr(parent, attr, layer)


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.{p}": getattr(m, p).detach().contiguous().cpu() for n, m in lora_layers(model) for p in ("lora_A", "lora_B")}


def save_with_adapters(model: nn.Module, path: str | Path) -> Path:
    """``model.save_pretrained(path)`` of the merged model, plus the adapters (safetensors)."""
    from safetensors.torch import save_file

    path = Path(path)
    with merged_view(model):
        saved = model.save_pretrained(path)
    save_file(adapter_state(model), str(path / ADAPTERS_NAME))
    return Path(saved) if saved is not None else path


def load_with_adapters(model: nn.Module, path: str | Path, atol: float = 1e-4) -> None:
    """Load a folder written by :func:`save_with_adapters` into ``model`` (which has the same
    adapters on the pretrained LLM); strict, see the module doc for the check."""
    from safetensors.torch import load_file

    from agent.model.checkpoint import WEIGHTS_NAME, load_state_dict_strict

    path = Path(path)
    adapters_file = path / ADAPTERS_NAME
    if not adapters_file.is_file():
        raise FileNotFoundError(f"{path}: no {ADAPTERS_NAME} (not saved from a LoRA run)")
    adapters = load_file(str(adapters_file))
    expected = set(adapter_state(model))
    if set(adapters) != expected:
        missing, extra = sorted(expected - set(adapters))[:3], sorted(set(adapters) - expected)[:3]
        raise ValueError(f"{adapters_file}: adapters do not match the model (missing {missing}, unexpected {extra})")
    with merged_view(model) as plain:
        load_state_dict_strict(model, path / WEIGHTS_NAME)
        saved_weights = {n: lin.weight.detach().clone() for n, lin in plain.items()}
    layers = dict(lora_layers(model))
    with torch.no_grad():
        for key, tensor in adapters.items():
            name, _, param = key.rpartition(".")
            getattr(layers[name], param).copy_(tensor)
    for name, layer in layers.items():
        err = float((layer.merged_weight() - saved_weights[name]).abs().max())
        if err > atol:
            raise ValueError(f"{path}: layer {name} differs from base + adapters by {err:.3g} "
                             "(resumed with another LLM folder than the run was started from?)")

"""Checkpoint folders: config.json + model.safetensors + tokenizer files, written atomically.

Loading is strict: a tensor missing from the file, a tensor the model does not have, or a shape
mismatch raises :class:`CheckpointError` naming the tensor(s). Nothing is ever unpickled.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from torch import nn

from .configuration import CONFIG_NAME

WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint does not match the model it is loaded into."""


def _names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def save_state_dict(module: nn.Module, path: Path) -> None:
    """Write the module's state dict (persistent tensors) as safetensors."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})


def load_state_dict_strict(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load safetensors weights into ``module``; every tensor must match by name and shape."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    state = load_file(str(path), device="cpu")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensor(s): {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensor(s): {_names(unexpected)}")
    mismatched = [
        f"{name} (file {tuple(state[name].shape)}, model {tuple(expected[name].shape)})"
        for name in sorted(set(state) & set(expected))
        if state[name].shape != expected[name].shape
    ]
    if mismatched:
        problems.append(f"shape mismatch: {_names(mismatched)}")
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def write_folder_atomically(directory: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` then move ``tmp_dir`` to ``directory`` (replacing an old checkpoint).

    An existing ``directory`` is replaced only if it is empty or holds a ``config.json`` (a
    checkpoint); anything else raises ``FileExistsError`` so a wrong path never wipes a folder.
    """
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise FileExistsError(f"{directory}: exists and is not a folder")
        if any(directory.iterdir()) and not (directory / CONFIG_NAME).is_file():
            raise FileExistsError(f"{directory}: not empty and not a model checkpoint; refusing to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        write(tmp)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / directory.name)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def checkpoint_files(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(config.json, model.safetensors) paths of a checkpoint folder; raise if either is absent."""
    directory = Path(directory)
    config, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (config, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{directory}: not a model checkpoint (no {p.name})")
    return config, weights


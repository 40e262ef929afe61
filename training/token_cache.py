"""Token cache: the frozen vision encoder's tokens of every frame, computed once per dataset.

Stage (b) trains on a frozen encoder, so a frame's tokens never change: encoding the images again
at every step (current and F future frames per sample) is most of a CPU step. ``build_token_cache``
runs the encoder once over every kept frame of every episode and stores, per episode, one
safetensors file ``<cache_dir>/<episode stem>.<key>.safetensors`` holding ``tokens`` float16
[N, K, D] (N kept frames, K = N_cam * P tokens per frame, D the encoder width). ``key`` is a hash
of the encoder's weights, its vision config, the cameras and the episode's content checksum: a
different encoder, image size, camera list or episode never reads a stale file. Files are written
to ``*.tmp`` and renamed. Images are preprocessed exactly as :class:`training.dataset.DrivingDataset`
does (``training.dataset.frame_images``), so a cached token equals the token of the dataset's
image up to float16 rounding.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from training.dataset import frame_images
from training.episodes import Episode


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """SHA-256 of the encoder's vision config and every tensor of its state dict (name, shape, bytes)."""
    h = hashlib.sha256()
    config = getattr(encoder, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        cfg = dict(config.to_dict())
        cfg.pop("freeze", None)
        h.update(json.dumps(cfg, sort_keys=True).encode())
    for name, value in sorted(encoder.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


class TokenCache:
    """Tokens of every kept frame of a list of episodes: ``get(e, frame) -> float32 [K, D]``."""

    def __init__(self, tokens: Sequence[np.ndarray], fingerprint: str) -> None:
        self._tokens = list(tokens)
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self._tokens)

    def get(self, episode: int, frame: int) -> np.ndarray:
        return self._tokens[episode][frame].astype(np.float32)

    @property
    def token_shape(self) -> tuple[int, int]:
        return tuple(self._tokens[0].shape[1:]) if self._tokens else (0, 0)  # type: ignore[return-value]


def _cache_key(fingerprint: str, ep: Episode, image_size: tuple[int, int], cameras: Sequence[int]) -> str:
    h = hashlib.sha256()
    h.update(fingerprint.encode())
    h.update(json.dumps({"image_size": list(image_size), "cameras": list(cameras),
                         "content": ep.meta.content_sha256, "frames": ep.num_frames}, sort_keys=True).encode())
    return h.hexdigest()[:20]


@torch.no_grad()
def encode_episode(encoder: torch.nn.Module, ep: Episode, image_size: tuple[int, int], cameras: Sequence[int],
                   batch_size: int = 64, device: torch.device | str = "cpu") -> np.ndarray:
    """float16 [N, K, D]: the encoder's tokens of every kept frame of ``ep`` (eval mode)."""
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for start in range(0, ep.num_frames, batch_size):
            frames = range(start, min(start + batch_size, ep.num_frames))
            images = np.stack([frame_images(ep, f, cameras, image_size) for f in frames])  # uint8 [b, C, 3, H, W]
            tokens = encoder(torch.from_numpy(images.astype(np.float32) / 255.0).to(device))  # [b, K, D]
            out.append(tokens.float().cpu().numpy().astype(np.float16))
    finally:
        encoder.train(was_training)
    return np.concatenate(out) if out else np.zeros((0,), np.float16)


def build_token_cache(
    encoder: torch.nn.Module,
    episodes: Sequence[Episode],
    image_size: tuple[int, int],
    camera_ids: Sequence[Sequence[int]],
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    log=None,
) -> TokenCache:
    """Encode every kept frame of ``episodes`` once (or read the files a previous call wrote).

    ``camera_ids[e]``: the stored camera indices of episode ``e`` in the model's order (as
    ``DrivingDataset.camera_ids``). Files go to ``cache_dir``, or without it to ``token_cache/``
    beside each episode file.
    """
    if len(camera_ids) != len(episodes):
        raise ValueError(f"camera_ids: {len(camera_ids)} lists for {len(episodes)} episodes")
    fingerprint = encoder_fingerprint(encoder)
    tokens, built = [], 0
    for ep, cams in zip(episodes, camera_ids):
        folder = Path(cache_dir) if cache_dir is not None else Path(ep.path).parent / "token_cache"
        path = folder / f"{Path(ep.path).stem}.{_cache_key(fingerprint, ep, image_size, cams)}.safetensors"
        if path.is_file():
            data = load_file(str(path))["tokens"]
            if data.shape[0] == ep.num_frames:
                tokens.append(data)
                continue
        data = encode_episode(encoder, ep, image_size, cams, batch_size, device)
        built += 1
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({"tokens": np.ascontiguousarray(data)}, str(tmp))
        os.replace(tmp, path)
        tokens.append(data)
    if log is not None:
        log(f"token cache: {built} episodes encoded, {len(episodes) - built} read from the cache")
    return TokenCache(tokens, fingerprint)

"""Procedural textures of the perspective scene (grass, asphalt), made once from fixed seeds.

Each is a tileable uint8 RGB image built from a few octaves of smoothed noise, so the off-road
ground and the road surface show texture that moves with the car (a flat colour would not).
"""

from __future__ import annotations

import cv2
import numpy as np


def _tileable_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """[size, size] float noise in [0, 1], periodic over the tile (bicubic upsampling of a wrapped grid)."""
    grid = rng.random((cells, cells)).astype(np.float32)
    wrapped = np.pad(grid, 2, mode="wrap")
    scale = size / cells
    big = cv2.resize(wrapped, (int(round((cells + 4) * scale)),) * 2, interpolation=cv2.INTER_CUBIC)
    off = int(round(2 * scale))
    return np.clip(big[off : off + size, off : off + size], 0.0, 1.0)


def _octaves(size: int, rng: np.random.Generator, cells: tuple[int, ...], weights: tuple[float, ...]) -> np.ndarray:
    total = sum(w * _tileable_noise(size, c, rng) for c, w in zip(cells, weights))
    return total / sum(weights)


def grass_texture(size: int = 128, seed: int = 7) -> np.ndarray:
    """[size, size, 3] uint8 RGB: patchy green-brown ground."""
    rng = np.random.default_rng(seed)
    n = _octaves(size, rng, (4, 16, 64), (0.5, 0.3, 0.2))
    dry = _octaves(size, rng, (3, 8), (0.6, 0.4))
    green = np.array([70, 105, 48], np.float32)
    brown = np.array([118, 104, 70], np.float32)
    mix = np.clip((dry - 0.35) * 2.0, 0.0, 1.0)[..., None]
    rgb = (green * (1 - mix) + brown * mix) * (0.7 + 0.6 * n[..., None])
    return np.clip(rgb, 0, 255).astype(np.uint8)


def asphalt_texture(size: int = 128, seed: int = 11) -> np.ndarray:
    """[size, size, 3] uint8 RGB: grey asphalt with fine grain and darker patches."""
    rng = np.random.default_rng(seed)
    grain = _octaves(size, rng, (32, 64), (0.5, 0.5))
    patches = _octaves(size, rng, (4, 8), (0.6, 0.4))
    v = 92.0 + 26.0 * (grain - 0.5) - 18.0 * np.clip(patches - 0.55, 0.0, 1.0) * 2.0
    rgb = np.stack([v, v, v * 1.03], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)

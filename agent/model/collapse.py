"""Collapse check for visual tokens (the future-state target must not become constant).

A trainable encoder can make the future-state loss trivially zero by emitting the same tokens for
every frame. :func:`collapse_stats` summarises tokens of many frames; :func:`is_collapsed` applies
documented thresholds.

Statistics of ``tokens`` [N_frames, K, D] (N_frames >= 2):

* ``frame_std``: sqrt of the variance across frames, averaged over (k, d): how much the token at a
  given position changes from frame to frame.
* ``token_rms``: root mean square of all entries (the scale).
* ``relative_frame_std`` = frame_std / token_rms: scale-free frame-to-frame variation.
* ``mean_dim_std``: std of each feature dimension over all N*K tokens, averaged over d.
* ``effective_rank``: exp(entropy of the normalised singular values) of the frame-centred tokens
  (each position's mean over frames removed), [N*K, D]. It counts the directions in which frames
  differ: about D for healthy random features, about 1 when every frame differs along one direction.
"""

from __future__ import annotations

import torch

#: Default thresholds of :func:`is_collapsed`.
MIN_RELATIVE_FRAME_STD = 0.05
MIN_EFFECTIVE_RANK = 2.0


def effective_rank(matrix: torch.Tensor, eps: float = 1e-12) -> float:
    """Roy & Vetterli's effective rank exp(H(p)), p = singular values / their sum; 0 for a zero matrix."""
    m = matrix.double()
    if m.shape[0] > m.shape[1]:
        # Tall matrix (many tokens, few dims): singular values from the small D x D Gram matrix.
        s = torch.linalg.eigvalsh(m.T @ m).clamp_min(0.0).sqrt()
    else:
        s = torch.linalg.svdvals(m)
    total = s.sum()
    if total <= eps:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_stats(tokens: torch.Tensor) -> dict[str, float]:
    """Collapse statistics of tokens [N_frames, K, D] (see the module docstring)."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens: expected [N_frames, K, D], got shape {tuple(tokens.shape)}")
    n, k, d = tokens.shape
    if n < 2:
        raise ValueError(f"tokens: need at least 2 frames to measure variation, got {n}")
    x = tokens.detach().double().cpu()
    if not torch.isfinite(x).all():
        raise ValueError("tokens: contain NaN or inf")
    frame_var = x.var(dim=0, unbiased=False)  # [K, D]
    frame_std = float(frame_var.mean().sqrt())
    token_rms = float(x.pow(2).mean().sqrt())
    flat = x.reshape(n * k, d)
    centred = (x - x.mean(dim=0, keepdim=True)).reshape(n * k, d)  # frame-to-frame variation only
    return {
        "frame_std": frame_std,
        "token_rms": token_rms,
        "relative_frame_std": frame_std / token_rms if token_rms > 0 else 0.0,
        "mean_dim_std": float(flat.std(dim=0, unbiased=False).mean()),
        "effective_rank": effective_rank(centred),
        "num_frames": float(n),
    }


def is_collapsed(
    stats: dict[str, float],
    min_relative_frame_std: float = MIN_RELATIVE_FRAME_STD,
    min_effective_rank: float = MIN_EFFECTIVE_RANK,
) -> bool:
    """True when tokens barely change across frames or change along fewer than ~2 directions.

    Collapsed if ``relative_frame_std < 0.05`` (frames differ by less than 5 % of the token scale)
    or ``effective_rank < 2`` (the frame-to-frame variation spans fewer than two directions).
    """
    return stats["relative_frame_std"] < min_relative_frame_std or stats["effective_rank"] < min_effective_rank

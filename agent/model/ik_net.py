"""The IK net: a cross-attention conditional diffusion denoiser for trajectories.

It recovers the motion between visual states, the current frame and the F predicted future frames
("inverse kinematics"), and nothing else: its only inputs are tensors of noisy waypoints, the
diffusion timestep and the token grids. There is no argument through which ego status, the
route command or text could reach it.

Queries (one per waypoint): Linear(noisy (x, y)) + timestep embedding + waypoint-index embedding.
Keys/values: Linear(LayerNorm(tokens)) + token-position embedding (which camera patch; shared by all
frames) + a type embedding (0 = current, 1..F = future frame f), for the K current and F x K future
tokens. Token matcher (``flow_heads`` >= 1): per head and future frame, a shared projection of both
frames' tokens, a softmax over the future tokens of the same camera for every current token, and the
expected grid position of the match minus the token's own position (patches) plus the match's peak
weight (and, with ``flow_values`` V > 0, V learned features of the soft match minus the same features
of the token: what changed, e.g. how much closer a depth-trained token's object came); an MLP of
these (3 + V) x heads x F numbers is added to the current tokens' memory entries. It is the motion between the two
frames made explicit (the displacement field of the camera grid), computed from the tokens alone.
Memory encoder (``memory_layers`` >= 1, pre-norm): self-attention over the (1 + F) K visual tokens +
MLP, so each current token can find its match among the future tokens before the decoder reads them.
Blocks (pre-norm): self-attention over waypoints, cross-attention to the (1 + F) K visual tokens, MLP.
Output: LayerNorm + Linear -> [B, T, 2], the diffusion target (clean normalised trajectory for
``prediction_type="sample"``, the noise for ``"epsilon"``). The scheduler lives outside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import IKNetConfig

CURRENT, FUTURE = 0, 1


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of diffusion timesteps [B] (as in DDPM / transformer positions)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    angles = timesteps.float()[:, None] * torch.exp(exponent)[None, :]  # [B, half]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # [B, 2 * half]
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class Attention(nn.Module):
    """Multi-head attention (no mask) with scaled_dot_product_attention."""

    def __init__(self, width: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, h, M, w/h] of a context [B, M, w] (reusable while the context is fixed)."""
        b, m, w = context.shape
        h = self.num_heads
        k, v = self.kv(context).view(b, m, 2, h, w // h).permute(2, 0, 3, 1, 4)  # 2 x [B, h, M, w/h]
        return k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Attention of ``x`` [B, N, w] to ``context`` [B, M, w], or to precomputed ``kv``."""
        b, n, w = x.shape
        h = self.num_heads
        q = self.q(x).view(b, n, h, w // h).transpose(1, 2)  # [B, h, N, w/h]
        k, v = kv if kv is not None else self.keys_values(context)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # [B, h, N, w/h]
        return self.out(y.transpose(1, 2).reshape(b, n, w))  # [B, N, w]


def feed_forward(width: int, mlp_ratio: float, dropout: float) -> nn.Sequential:
    """The blocks' MLP: width -> width * mlp_ratio -> width, GELU."""
    hidden = int(round(width * mlp_ratio))
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))


class IKNetBlock(nn.Module):
    def __init__(self, width: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = Attention(width, num_heads, dropout)
        self.norm_cross = nn.LayerNorm(width)
        self.cross_attn = Attention(width, num_heads, dropout)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = feed_forward(width, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        y = self.norm_self(x)
        x = x + self.self_attn(y, y)  # waypoints attend to each other
        x = x + self.cross_attn(self.norm_cross(x), memory, kv)  # waypoints read the frames
        return x + self.mlp(self.norm_mlp(x))


class MemoryBlock(nn.Module):
    """Pre-norm self-attention + MLP over the joint memory of the two frames."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(width)
        self.attn = Attention(width, num_heads, dropout)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = feed_forward(width, mlp_ratio, dropout)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        y = self.norm_attn(memory)
        memory = memory + self.attn(y, y)  # [B, 2K, W]
        return memory + self.mlp(self.norm_mlp(memory))


def grid_coordinates(rows: int, cols: int) -> torch.Tensor:
    """[rows * cols, 2] (row, col) of each patch in row-major token order, in patches."""
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32), indexing="ij")
    return torch.stack([r.flatten(), c.flatten()], dim=-1)


class TokenMatcher(nn.Module):
    """Soft matching of current tokens to future tokens, camera by camera (see module doc).

    Args:
        vision_size: D of the tokens. width: output width. heads: matching heads.
        grid: (cameras, rows, cols) of the token layout (K = cameras * rows * cols, camera-major).
    """

    def __init__(self, vision_size: int, width: int, heads: int, grid: tuple[int, int, int], num_frames: int = 1,
                 values: int = 0) -> None:
        super().__init__()
        self.heads = heads
        self.grid = grid
        self.num_frames = num_frames
        self.values = values
        self.head_size = max(16, vision_size // heads)
        self.norm = nn.LayerNorm(vision_size)
        self.proj = nn.Linear(vision_size, heads * self.head_size)  # shared by both frames
        self.log_scale = nn.Parameter(torch.zeros(heads))  # learned sharpness of each head's softmax
        self.register_buffer("coords", grid_coordinates(grid[1], grid[2]), persistent=False)  # [P, 2]
        self.value_proj = nn.Linear(vision_size, heads * values) if values > 0 else None  # shared by both frames
        self.out = nn.Sequential(nn.Linear((3 + values) * heads * num_frames, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, current: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """current [B, K, D], future [B, F K, D] (frame-major) -> [B, K, width] features of each
        current token's matches in the F future frames."""
        b, k, d = current.shape
        n_cam, rows, cols = self.grid
        p, h, e, nf = rows * cols, self.heads, self.head_size, self.num_frames

        def project(x: torch.Tensor, frames: int) -> torch.Tensor:
            y = self.proj(self.norm(x)).view(b * frames * n_cam, p, h, e).transpose(1, 2)  # [B F N, h, P, e]
            return F.normalize(y, dim=-1)

        q = project(current, 1).view(b, 1, n_cam, h, p, e)
        f = project(future, nf).view(b, nf, n_cam, h, p, e)
        scale = torch.exp(self.log_scale).view(1, 1, 1, h, 1, 1) * math.sqrt(e)
        weights = torch.softmax(scale * (q @ f.transpose(-1, -2)), dim=-1)  # [B, F, N, h, P, P]
        coords = self.coords.to(weights.dtype)
        displacement = weights @ coords - coords  # [B, F, N, h, P, 2], patches
        peak = weights.amax(dim=-1, keepdim=True)  # [B, F, N, h, P, 1]
        parts = [displacement, peak]
        if self.value_proj is not None:
            v = self.values

            def values_of(x: torch.Tensor, frames: int) -> torch.Tensor:
                return self.value_proj(self.norm(x)).view(b, frames, n_cam, p, h, v).permute(0, 1, 2, 4, 3, 5)

            own = values_of(current, 1)  # [B, 1, N, h, P, V]
            matched = weights @ values_of(future, nf)  # [B, F, N, h, P, V]
            parts.append(matched - own)
        feats = torch.cat(parts, dim=-1)  # [B, F, N, h, P, 3 + V]
        feats = feats.permute(0, 2, 4, 1, 3, 5).reshape(b, k, -1)  # [B, K, (3 + V) h F]
        return self.out(feats)  # [B, K, width]


class IKNet(nn.Module):
    """Denoiser eps_theta / x0_theta(noisy_traj, t | current tokens, future tokens).

    Args:
        config: width, depth, heads.
        vision_size: D_vision of the visual tokens.
        num_tokens: K, tokens per frame.
        num_waypoints: T.
        token_grid: (cameras, rows, cols) of the K tokens (needed when ``config.flow_heads`` > 0).
        num_future_frames: F, future frames read (the future tokens are [B, F K, D], frame-major).
    """

    def __init__(
        self,
        config: IKNetConfig,
        vision_size: int,
        num_tokens: int,
        num_waypoints: int,
        token_grid: tuple[int, int, int] | None = None,
        num_future_frames: int = 1,
    ) -> None:
        super().__init__()
        if num_future_frames < 1:
            raise ValueError(f"num_future_frames: must be >= 1, got {num_future_frames}")
        self.config = config
        self.num_future_frames = int(num_future_frames)
        self.vision_size = vision_size
        self.num_tokens = num_tokens
        self.num_waypoints = num_waypoints
        width = config.hidden_size
        self.traj_in = nn.Linear(2, width)
        self.waypoint_embedding = nn.Parameter(torch.empty(num_waypoints, width))
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.memory_norm_in = nn.LayerNorm(vision_size)
        self.memory_in = nn.Linear(vision_size, width)
        self.token_position_embedding = nn.Parameter(torch.empty(num_tokens, width))
        self.type_embedding = nn.Embedding(1 + self.num_future_frames, width)
        self.matcher: TokenMatcher | None = None
        if config.flow_heads > 0:
            if token_grid is None or token_grid[0] * token_grid[1] * token_grid[2] != num_tokens:
                raise ValueError(f"token_grid: {token_grid} does not lay out num_tokens={num_tokens} (flow_heads > 0 needs it)")
            self.matcher = TokenMatcher(vision_size, width, config.flow_heads, tuple(token_grid), self.num_future_frames,
                                        values=config.flow_values)
        self.memory_blocks = nn.ModuleList(
            MemoryBlock(width, config.num_heads, config.mlp_ratio, config.dropout) for _ in range(config.memory_layers)
        )
        self.memory_norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(
            IKNetBlock(width, config.num_heads, config.mlp_ratio, config.dropout) for _ in range(config.num_layers)
        )
        self.norm_out = nn.LayerNorm(width)
        self.out = nn.Linear(width, 2)
        for p in (self.waypoint_embedding, self.token_position_embedding, self.type_embedding.weight):
            nn.init.normal_(p, std=0.02)

    def encode_memory(self, current_tokens: torch.Tensor, future_tokens: torch.Tensor) -> torch.Tensor:
        """The cross-attention memory [B, (1 + F) K, W] from current tokens [B, K, D_vision] and
        future tokens [B, F K, D_vision] (frame-major).

        It does not depend on the noisy trajectory or the timestep, so a sampling loop computes it
        once and reuses it for every denoising step.
        """
        k, d, nf = self.num_tokens, self.vision_size, self.num_future_frames
        if current_tokens.ndim != 3 or tuple(current_tokens.shape[1:]) != (k, d):
            raise ValueError(f"current_tokens: expected [B, K={k}, D={d}], got {tuple(current_tokens.shape)}")
        if future_tokens.ndim != 3 or tuple(future_tokens.shape[1:]) != (nf * k, d):
            raise ValueError(f"future_tokens: expected [B, F*K={nf}*{k}, D={d}], got {tuple(future_tokens.shape)}")
        if current_tokens.shape[0] != future_tokens.shape[0]:
            raise ValueError(
                f"current_tokens/future_tokens: batch sizes differ ({current_tokens.shape[0]} vs {future_tokens.shape[0]})"
            )
        dtype = self.memory_in.weight.dtype
        b = current_tokens.shape[0]
        frames = torch.cat([current_tokens[:, None], future_tokens.view(b, nf, k, d)], dim=1).to(dtype)  # [B, 1+F, K, D]
        mem = self.memory_in(self.memory_norm_in(frames))  # [B, 1+F, K, W]
        mem = mem + self.token_position_embedding[None, None] + self.type_embedding.weight[None, :, None]
        if self.matcher is not None:
            flow = self.matcher(current_tokens.to(dtype), future_tokens.to(dtype))  # [B, K, W]
            mem = torch.cat([mem[:, :1] + flow[:, None], mem[:, 1:]], dim=1)  # current entries carry the match
        mem = mem.flatten(1, 2)  # [B, (1+F) K, W]
        for block in self.memory_blocks:
            mem = block(mem)
        return self.memory_norm(mem)  # [B, (1+F) K, W]

    def memory_keys_values(self, memory: torch.Tensor, repeats: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every block's cross-attention keys and values of ``memory`` [B, M, W], each
        [B * repeats, h, M, W/h] (every batch element repeated ``repeats`` times, as
        ``repeat_interleave``): computed once per plan and reused by every denoising step and draw."""
        out = []
        for block in self.blocks:
            k, v = block.cross_attn.keys_values(memory)
            if repeats > 1:
                k, v = k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)
            out.append((k, v))
        return out

    def denoise(self, noisy_traj: torch.Tensor, timestep: torch.Tensor, memory: torch.Tensor | None,
                memory_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """One network evaluation given a precomputed memory (see :meth:`encode_memory`).

        Args:
            noisy_traj: [B, T, 2] normalised noisy waypoints x_t.
            timestep: int [B] or scalar diffusion step t.
            memory: [B, (1 + F) K, W] from :meth:`encode_memory` (may be None with ``memory_kv``).
            memory_kv: the blocks' keys and values of the memory (:meth:`memory_keys_values`),
                the same result without recomputing them.
        Returns:
            [B, T, 2] prediction of the configured target (clean sample or noise).
        """
        b = noisy_traj.shape[0]
        if noisy_traj.ndim != 3 or tuple(noisy_traj.shape[1:]) != (self.num_waypoints, 2):
            raise ValueError(f"noisy_traj: expected [B, T={self.num_waypoints}, 2], got {tuple(noisy_traj.shape)}")
        if memory_kv is None and memory is None:
            raise ValueError("memory: None, and no memory_kv were given instead")
        if memory_kv is not None and (len(memory_kv) != len(self.blocks) or memory_kv[0][0].shape[0] != b):
            raise ValueError(f"memory_kv: expected {len(self.blocks)} (keys, values) of batch {b}")
        if memory_kv is None and memory.shape[0] != b:
            raise ValueError(f"memory: batch {memory.shape[0]} does not match noisy_traj batch {b}")
        timestep = torch.as_tensor(timestep, device=noisy_traj.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        if tuple(timestep.shape) != (b,):
            raise ValueError(f"timestep: expected a scalar or [B={b}], got {tuple(timestep.shape)}")
        width = self.config.hidden_size
        dtype = self.traj_in.weight.dtype
        t_emb = self.time_mlp(timestep_embedding(timestep, width).to(dtype))  # [B, W]
        x = self.traj_in(noisy_traj.to(dtype))  # [B, T, W]
        x = x + self.waypoint_embedding[None] + t_emb[:, None, :]  # [B, T, W]
        for j, block in enumerate(self.blocks):
            x = block(x, memory, None if memory_kv is None else memory_kv[j])  # [B, T, W]
        return self.out(self.norm_out(x)).float()  # [B, T, 2]

    def forward(
        self,
        noisy_traj: torch.Tensor,
        timestep: torch.Tensor,
        current_tokens: torch.Tensor,
        future_tokens: torch.Tensor,
    ) -> torch.Tensor:
        """[B, T, 2] prediction from noisy waypoints, timestep, current [B, K, D] and future [B, F K, D] tokens."""
        return self.denoise(noisy_traj, timestep, self.encode_memory(current_tokens, future_tokens))

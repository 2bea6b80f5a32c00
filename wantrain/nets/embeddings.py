"""Timestep embeddings (sinusoidal -> MLP) and rotary position helpers."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (B,) timesteps -> (B, dim) float32 (cos first, as in diffusers' flip_sin_to_cos)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    """`time_embedding`: sinusoidal features of the diffusion timestep followed by a 2-layer SiLU MLP."""

    def __init__(self, freq_dim: int, out_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        """(B,) int/float timesteps -> (B, out_dim)."""
        freqs = sinusoidal_embedding(timesteps, self.freq_dim)
        return self.mlp(freqs.to(self.mlp[0].weight.dtype))


def rotary_cos_sin(
    length: int, dim: int, device: torch.device, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for positions 0..length-1 and an even head dim -> (cos, sin), each (length, dim) float32."""
    if dim % 2:
        raise ValueError(f"rotary positions need an even head dim, got {dim}; choose an even head_dim")
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))  # (dim/2,)
    angles = torch.arange(length, dtype=torch.float32, device=device)[:, None] * inv[None]  # (L, dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, dim), rotate-half layout
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., L, dim) queries/keys by position (rotate-half convention); computed in float32."""
    dtype = x.dtype
    x = x.float()
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(dtype)


class MicroConditioning(nn.Module):
    """SVD-style micro-conditioning: per-sample scalars (e.g. fps, motion) -> sinusoidal features of each,
    concatenated -> 2-layer SiLU MLP -> added to the timestep embedding. The last layer starts at zero, so a model
    with it behaves exactly as one without until it learns to use them."""

    def __init__(self, names: list[str] | tuple[str, ...], freq_dim: int, out_dim: int) -> None:
        super().__init__()
        self.names, self.freq_dim = tuple(str(n) for n in names), freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim * len(self.names), out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, values: dict[str, torch.Tensor] | None, batch: int, device: torch.device) -> torch.Tensor:
        """{name: (B,) values} (missing names count as 0) -> (B, out_dim)."""
        values = values or {}
        feats = [sinusoidal_embedding(values[n].reshape(-1).to(device).float().expand(batch) if n in values
                                      else torch.zeros(batch, device=device), self.freq_dim) for n in self.names]
        return self.mlp(torch.cat(feats, dim=-1).to(self.mlp[0].weight.dtype))

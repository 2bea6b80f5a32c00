"""Attention blocks of the UNet: spatial self-attn + cross-attn transformer, temporal ("frame alignment") attn.

All attention goes through `F.scaled_dot_product_attention` (flash / memory-efficient kernels on GPU).
Internal activations use the frames-as-batch layout `(B*T, C, H, W)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wantrain.nets.embeddings import apply_rotary, rotary_cos_sin


def resolve_heads(channels: int, head_dim: int | None, num_heads: int | None) -> tuple[int, int]:
    """Pick (heads, head_dim) for `channels` from exactly one of head_dim / num_heads."""
    if (head_dim is None) == (num_heads is None):
        raise ValueError("give exactly one of head_dim or num_heads for the UNet attention")
    if head_dim is not None:
        if channels % head_dim:
            raise ValueError(f"channels {channels} not divisible by head_dim {head_dim}; change head_dim or channels")
        return channels // head_dim, head_dim
    if channels % num_heads:
        raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}; change num_heads or channels")
    return num_heads, channels // num_heads


class Attention(nn.Module):
    """Multi-head attention on token sequences (N, L, C); optional context, key mask, bias and rotary positions."""

    def __init__(
        self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, null_kv: bool = False
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        # A learned always-visible "null" key/value (zero at init): fully masked rows stay well defined.
        self.null_kv = nn.Parameter(torch.zeros(2, inner)) if null_kv else None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        return x.view(n, length, self.heads, self.head_dim).transpose(1, 2)  # (N, heads, L, hd)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x (N, Lq, C), context (N, Lk, Dc) | None, mask (N, Lk) bool (True = attend), bias (heads, Lq, Lk)."""
        ctx = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(ctx), self.to_v(ctx)
        if self.null_kv is not None:
            null = self.null_kv.to(k.dtype)[:, None, None, :].expand(2, k.shape[0], 1, k.shape[-1])
            k, v = torch.cat([k, null[0]], dim=1), torch.cat([v, null[1]], dim=1)
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        attn_mask = None
        if mask is not None:
            attn_mask = mask[:, None, None, :]  # (N, 1, 1, Lk) bool
        if bias is not None:
            bias = bias.to(q.dtype)[None]  # (1, heads, Lq, Lk)
            attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (N, heads, Lq, hd)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.to_out(out)


class FeedForward(nn.Module):
    """GEGLU feed-forward (as in Stable Diffusion's transformer blocks)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * mult * dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, C) -> (N, L, C)."""
        h, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(self.drop(h * F.gelu(gate)))


class SpatialTransformer(nn.Module):
    """Per-frame spatial self-attention, `cross_attention` to the fusion context, feed-forward; zero-init output."""

    def __init__(
        self, channels: int, heads: int, head_dim: int, context_dim: int, dropout: float = 0.0, groups: int = 32
    ) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.self_attention = Attention(channels, heads, head_dim)
        self.norm2 = nn.LayerNorm(channels)
        self.cross_attention = Attention(channels, heads, head_dim, context_dim=context_dim, null_kv=True)
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, dropout=dropout)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self, x: torch.Tensor, num_frames: int, context: torch.Tensor, context_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x (B*T, C, H, W), context (B, L, D), context_mask (B, L) bool | None -> (B*T, C, H, W)."""
        bt, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B*T, HW, C)
        tokens = self.proj_in(tokens)
        tokens = tokens + self.self_attention(self.norm1(tokens))
        # Cross-attention: queries of all frames of a sample share that sample's context -> (B, T*HW, C).
        packed = self.norm2(tokens).reshape(bt // num_frames, num_frames * h * w, c)
        tokens = tokens + self.cross_attention(packed, context=context, mask=context_mask).reshape(bt, h * w, c)
        tokens = tokens + self.ff(self.norm3(tokens))
        tokens = self.proj_out(tokens)
        return x + tokens.transpose(1, 2).reshape(bt, c, h, w)


def relative_position_bucket(relative: torch.Tensor, num_buckets: int = 32, max_distance: int = 64) -> torch.Tensor:
    """T5-style bidirectional log-bucketing of (key - query) offsets -> bucket ids in [0, num_buckets)."""
    num_buckets //= 2
    bucket = (relative > 0).long() * num_buckets
    distance = relative.abs()
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    large = max_exact + (
        torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).long()
    large = large.clamp(max=num_buckets - 1)
    return bucket + torch.where(is_small, distance, large)


class TemporalAttention(nn.Module):
    """Frame alignment: self-attention across frames at every pixel; rotary or relative-bias positions.

    The output projection starts at zero, so a fresh module is the identity (per-frame features unchanged).
    """

    def __init__(
        self, channels: int, heads: int, head_dim: int, positions: str = "rope", num_buckets: int = 32,
        max_distance: int = 64,
    ) -> None:
        super().__init__()
        if positions not in ("rope", "relative_bias"):
            raise ValueError(f"temporal_positions must be 'rope' or 'relative_bias', got {positions!r}")
        self.positions = positions
        self.norm = nn.LayerNorm(channels)
        self.attention = Attention(channels, heads, head_dim)
        nn.init.zeros_(self.attention.to_out.weight)
        nn.init.zeros_(self.attention.to_out.bias)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        if positions == "relative_bias":
            self.relative_bias = nn.Embedding(num_buckets, heads)
            nn.init.zeros_(self.relative_bias.weight)

    def _positions(self, t: int, device: torch.device) -> dict:
        if self.positions == "rope":
            return {"rope": rotary_cos_sin(t, self.attention.head_dim, device)}
        pos = torch.arange(t, device=device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return {"bias": self.relative_bias(buckets).permute(2, 0, 1)}  # (heads, T, T)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x (B*T, C, H, W) -> (B*T, C, H, W); identity for single-frame clips (T = 1: images)."""
        if num_frames == 1:
            return x
        bt, c, h, w = x.shape
        b = bt // num_frames
        tokens = x.view(b, num_frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, num_frames, c)
        out = self.attention(self.norm(tokens), **self._positions(num_frames, x.device))  # (B*HW, T, C)
        out = out.view(b, h * w, num_frames, c).permute(0, 2, 3, 1).reshape(bt, c, h, w)
        return x + out

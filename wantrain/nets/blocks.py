"""Convolutional UNet blocks: residual block (2D spatial + 1D temporal conv), down/upsampling.

Activations use the frames-as-batch layout `(B*T, C, H, W)` so spatial layers are plain image layers
(image-pretrained weights load directly); temporal layers regroup frames and start as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def zero_(module: nn.Module) -> nn.Module:
    """Zero every parameter of `module` in place and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _pad_time(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero-pad dim 1 (time) of a (B, T, C, H, W) tensor."""
    return F.pad(x, (0, 0, 0, 0, 0, 0, before, after))


class TemporalConv(nn.Module):
    """1D convolution across frames (kernel 3, zero padding) as a residual branch, zero-initialised.

    Implemented as one 1x1 GEMM producing the three taps, then summed with a one-frame shift, which
    avoids transposing the (B*T, C, H, W) activations.
    """

    def __init__(self, channels: int, groups: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        self.taps = zero_(nn.Conv2d(channels, 3 * channels, 1))  # taps for frames t-1, t, t+1

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x (B*T, C, H, W) -> (B*T, C, H, W); identity for single-frame clips (T = 1: images)."""
        if num_frames == 1:
            return x
        bt, c, h, w = x.shape
        y = self.taps(self.drop(F.silu(self.norm(x)))).view(bt // num_frames, num_frames, 3, c, h, w)
        out = y[:, :, 1] + _pad_time(y[:, :-1, 0], 1, 0) + _pad_time(y[:, 1:, 2], 0, 1)  # (B, T, C, H, W)
        return x + out.reshape(bt, c, h, w)


class ResBlock(nn.Module):
    """Residual block: GN-SiLU-conv3x3, scale-shift from (timestep + pooled) embedding, GN-SiLU-dropout-conv3x3,
    then a zero-initialised temporal conv residual."""

    def __init__(
        self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0, groups: int = 32
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        self.temporal = TemporalConv(out_channels, groups=groups, dropout=dropout)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x (B*T, C_in, H, W), emb (B, E) -> (B*T, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb_proj(F.silu(emb)).repeat_interleave(num_frames, dim=0)[:, :, None, None].chunk(2, 1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.temporal(self.skip(x) + h, num_frames)


class Downsample(nn.Module):
    """Spatial /2 with a stride-2 3x3 conv (time untouched)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H/2, W/2)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Spatial x2: nearest-neighbour then 3x3 conv (time untouched)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, 2H, 2W)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

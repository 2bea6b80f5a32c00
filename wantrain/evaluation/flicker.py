"""Flicker of a restored clip against its reference: low-frequency brightness changes over time that the
reference does not have (plain PyTorch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flicker(pred: torch.Tensor, target: torch.Tensor, block: int = 4) -> torch.Tensor:
    """Mean |Δt blockmean(pred) − Δt blockmean(target)| of clips (B, 3, T, H, W) in [-1, 1], in 0..255 units.

    Frames are averaged over `block`×`block` patches first, so fine detail that moves with the camera (which
    `temporal_error` also counts) mostly cancels and what remains is patch brightness pumping from frame to
    frame: 0 for a clip that changes exactly as the reference does, and for T == 1."""
    if pred.shape[2] < 2:
        return pred.new_zeros((), dtype=torch.float32)
    k = max(1, min(block, pred.shape[-1], pred.shape[-2]))
    pool = lambda v: F.avg_pool3d(v.float(), (1, k, k))  # noqa: E731  (B, 3, T, H/k, W/k)
    dp, dt = pool(pred).diff(dim=2), pool(target).diff(dim=2)
    return (dp - dt).abs().mean() * 127.5

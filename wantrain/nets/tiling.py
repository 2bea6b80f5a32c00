"""Tiled ×s inference: overlapping spatial tiles and temporal chunks blended with feather weights."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

VideoFn = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced start offsets of windows of size `tile`, overlapping by >= `overlap`, covering [0, length)."""
    if tile >= length:
        return [0]
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile size {tile}: lower the overlap")
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def feather(length: int, ramp_lo: int, ramp_hi: int, margin: int = 0) -> torch.Tensor:
    """1-D blend weights (length,): linear ramps of `ramp_lo`/`ramp_hi` samples at the ends, 1 inside.

    The first `margin` samples of each ramp get (almost) no weight: they are the ones a tile
    computes without full context (receptive field cut by the tile edge).
    """
    w = torch.ones(length, dtype=torch.float64)
    eps = 1e-3
    for ramp, idx in ((ramp_lo, torch.arange(length)), (ramp_hi, torch.arange(length).flip(0))):
        if ramp <= 0:
            continue
        m = min(margin, max(ramp - 1, 0))
        r = ((idx.double() - m + 1) / (ramp - m + 1)).clamp(eps, 1.0)
        w = torch.minimum(w, r)
    return w


def tiled_forward(
    fn: VideoFn,
    x: torch.Tensor,
    *,
    scale: int = 2,
    tile: int | None = 64,
    overlap: int = 16,
    chunk: int | None = None,
    chunk_overlap: int = 4,
    margin: int | None = None,
    out_device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run `fn` ((B,C,t,th,tw) -> (B,C',t,s*th,s*tw)) over tiles of `x` (B, C, T, H, W) and blend seamlessly.

    Peak memory inside `fn` is bounded by `tile`×`tile`×`chunk`; only the output (B, C', T, sH, sW)
    and a (T, sH, sW) weight map scale with the clip (put them on `out_device`, e.g. "cpu", to spare
    GPU memory). `tile=None` / `chunk=None` means no tiling along that axis.
    """
    if x.dim() != 5:
        raise ValueError(f"tiled_forward expects a video (B, C, T, H, W), got shape {tuple(x.shape)}")
    b, _, t, h, w = x.shape
    tile_h = h if tile is None else min(tile, h)
    tile_w = w if tile is None else min(tile, w)
    tile_t = t if chunk is None else min(chunk, t)
    ov_s = min(overlap, max(tile_h, tile_w) - 1) if tile is not None else 0
    ov_t = min(chunk_overlap, tile_t - 1) if chunk is not None else 0
    m = ov_s // 4 if margin is None else margin
    out_device = x.device if out_device is None else torch.device(out_device)

    ts = tile_starts(t, tile_t, min(ov_t, tile_t - 1)) if tile_t < t else [0]
    hs = tile_starts(h, tile_h, min(ov_s, tile_h - 1)) if tile_h < h else [0]
    ws = tile_starts(w, tile_w, min(ov_s, tile_w - 1)) if tile_w < w else [0]

    out: torch.Tensor | None = None
    wsum = torch.zeros(t, h * scale, w * scale, device=out_device, dtype=torch.float32)
    for t0 in ts:
        # temporal weights: ramp only where a neighbouring chunk overlaps
        wt = feather(tile_t, ov_t if t0 > 0 else 0, ov_t if t0 + tile_t < t else 0, margin=ov_t // 4)
        for h0 in hs:
            wh = feather(tile_h * scale, ov_s * scale if h0 > 0 else 0,
                         ov_s * scale if h0 + tile_h < h else 0, margin=m * scale)
            for w0 in ws:
                ww = feather(tile_w * scale, ov_s * scale if w0 > 0 else 0,
                             ov_s * scale if w0 + tile_w < w else 0, margin=m * scale)
                y = fn(x[:, :, t0:t0 + tile_t, h0:h0 + tile_h, w0:w0 + tile_w])  # (B, C', t, s*th, s*tw)
                if out is None:
                    acc = torch.promote_types(y.dtype, torch.float32)  # never accumulate in bf16/fp16
                    out = torch.zeros(b, y.shape[1], t, h * scale, w * scale, device=out_device, dtype=acc)
                wgt = (wt[:, None, None] * wh[None, :, None] * ww[None, None, :]).to(out_device, torch.float32)
                sl = (slice(t0, t0 + tile_t), slice(h0 * scale, (h0 + tile_h) * scale),
                      slice(w0 * scale, (w0 + tile_w) * scale))
                out[(slice(None), slice(None)) + sl] += y.to(out_device, out.dtype) * wgt.to(out.dtype)
                wsum[sl] += wgt
                del y
    assert out is not None
    return out / wsum.to(out.dtype)

"""Tiled inference: coverage, seamless agreement with untiled, memory bounded by the tile size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wantrain.nets.tiling import feather, tile_starts, tiled_forward
from wantrain.nets.upsampler import UpsampleStage


def _stage() -> UpsampleStage:
    stage = UpsampleStage(channels=8, num_blocks=2, detail_blocks=1)
    gen = torch.Generator().manual_seed(3)
    for p in stage.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return stage.eval()


def test_tile_starts_cover_and_feather_weights() -> None:
    for length, tile, ov in [(100, 32, 8), (64, 64, 8), (33, 16, 4), (10, 16, 4), (128, 64, 16), (97, 20, 5)]:
        starts = tile_starts(length, tile, ov)
        covered = torch.zeros(length, dtype=torch.bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[0] == 0 and starts[-1] + min(tile, length) == length
        assert all(b - a <= tile - ov for a, b in zip(starts, starts[1:]))  # overlaps never below `overlap`
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 8, 8)
    w = feather(16, 4, 0)
    assert w[-1] == 1 and w[0] < w[1] < w[2] < w[3] <= 1 and (w[4:] == 1).all()


def test_tiled_matches_untiled_spatially_and_temporally() -> None:
    stage = _stage()
    x = torch.rand(1, 3, 6, 32, 40) * 2 - 1
    with torch.no_grad():
        ref = stage(x)
        spatial = stage.tiled(x, tile=16, overlap=8)
        both = stage.tiled(x, tile=16, overlap=8, chunk=4, chunk_overlap=2)
    assert spatial.shape == ref.shape == both.shape
    residual = (ref - torch.nn.functional.interpolate(x[0].transpose(0, 1), scale_factor=2, mode="bilinear")
                .transpose(0, 1)[None]).abs().mean()
    assert residual > 0.02  # the comparison is meaningful: G contributes
    assert (spatial - ref).abs().max() < 5e-3
    assert (both - ref).abs().max() < 2e-2
    assert (both - ref).abs().mean() < 1e-3
    # no seams: the error at tile borders is not larger than the tiny overall error by orders of magnitude
    col = (spatial - ref).abs().amax(dim=(0, 1, 2, 3))  # per output column
    assert col.max() < 10 * col.mean() + 1e-3


def test_no_overlap_would_leave_seams() -> None:
    stage = _stage()
    x = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = stage(x)
        hard = stage.tiled(x, tile=16, overlap=0)
        soft = stage.tiled(x, tile=16, overlap=8)
    assert (hard - ref).abs().max() > 5 * (soft - ref).abs().max()


class _MaxActivation:
    """Largest tensor (elements) produced by any submodule during forward."""

    def __init__(self, model: nn.Module) -> None:
        self.max = 0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()]

    def _hook(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(out, torch.Tensor):
            self.max = max(self.max, out.numel())

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def test_tiled_peak_activation_does_not_grow_with_frame_size() -> None:
    stage = _stage()
    peaks_tiled, peaks_full = [], []
    for size in (20, 40):
        x = torch.rand(1, 3, 3, size, size)
        probe = _MaxActivation(stage)
        with torch.no_grad():
            stage.tiled(x, tile=16, overlap=4, chunk=2, chunk_overlap=1)
        peaks_tiled.append(probe.max)
        probe.max = 0
        with torch.no_grad():
            stage(x)
        peaks_full.append(probe.max)
        probe.close()
    assert peaks_tiled[0] == peaks_tiled[1]
    assert peaks_tiled[0] <= 8 * 2 * 32 * 32  # channels x chunk x (2*tile)^2
    assert peaks_full[1] == 4 * peaks_full[0]  # the untiled forward does grow (the probe can fail)


def test_generic_function_and_out_device() -> None:
    x = torch.rand(2, 3, 5, 20, 28)

    def nearest(v: torch.Tensor) -> torch.Tensor:
        return v.repeat_interleave(3, dim=-1).repeat_interleave(3, dim=-2)

    y = tiled_forward(nearest, x, scale=3, tile=8, overlap=3, chunk=2, chunk_overlap=1, out_device="cpu")
    assert torch.allclose(y, nearest(x), atol=1e-6)
    with pytest.raises(ValueError, match="video"):
        tiled_forward(nearest, x[:, :, 0])

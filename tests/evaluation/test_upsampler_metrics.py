"""Upsampler metrics (evaluation/upsampler.py): PSNR/SSIM on RGB and Y, temporal error, tLP, bicubic, frames."""

from __future__ import annotations

import math

import torch

from wantrain.evaluation.upsampler import bicubic, comparison_frames, rgb_to_y, sr_metrics, temporal_error, tlp
from wantrain.losses.perceptual import LPIPSLoss


def _clip(seed: int, t: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(2, 3, t, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_identical_clips_score_perfectly_and_noise_costs():
    hr = _clip(0)
    perfect = sr_metrics(hr, hr)
    assert set(perfect) == {"psnr", "psnr_y", "ssim", "ssim_y", "tdiff", "flicker"}
    assert perfect["psnr"] == 100.0 and perfect["tdiff"] == 0
    assert math.isclose(perfect["ssim"].item(), 1.0, abs_tol=1e-5)
    noisy = (hr + 0.1 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    scores = sr_metrics(noisy, hr)
    assert 20 < scores["psnr"] < 30 and scores["ssim"] < 0.99 and scores["tdiff"] > 0


def test_luma_range_and_temporal_error():
    assert torch.allclose(rgb_to_y(torch.zeros(1, 3, 2, 2)), torch.full((1, 1, 2, 2), 16 / 255))
    assert torch.allclose(rgb_to_y(torch.ones(1, 3, 2, 2)), torch.full((1, 1, 2, 2), 235 / 255), atol=1e-4)
    hr = _clip(2)
    shifted = (hr + 0.2).clamp(-1, 1)  # the same motion, brighter: small temporal error
    frozen = hr[:, :, :1].expand_as(hr)  # no motion at all
    assert temporal_error(shifted, hr) < temporal_error(frozen, hr)
    assert temporal_error(hr[:, :, :1], hr[:, :, :1]) == 0


def test_lpips_and_tlp_in_fp32():
    lpips = LPIPSLoss(allow_random_weights=True)
    hr = _clip(3, size=32)
    values = sr_metrics(hr, hr, lpips)
    assert values["lpips"].abs() < 1e-6 and values["tlp"].abs() < 1e-6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tlp(lpips, _clip(4, size=32), hr)
    assert out.dtype == torch.float32 and out > 0


def test_bicubic_baseline_and_comparison_frames():
    lr = _clip(5, t=2, size=8)
    up = bicubic(lr)
    assert up.shape == (2, 3, 2, 16, 16) and up.abs().max() <= 1
    frames = comparison_frames(lr, up, up, up)
    assert frames.shape == (2, 2 * 16, 4 * 16, 3) and frames.dtype == torch.uint8

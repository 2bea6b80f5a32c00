"""Degradation HR -> LR: sizes, ranges, determinism, and each operator doing what it says."""

from __future__ import annotations

import math

import pytest
import torch

from wantrain.degradations.ops import (
    add_noise,
    codec_compress,
    downsample,
    gaussian_blur,
    jpeg_compress,
    noise_augment,
    random_crop,
)
from wantrain.degradations.pipeline import DegradeConfig, degrade


def _smooth(b: int = 2, t: int = 3, size: int = 32) -> torch.Tensor:
    """Smooth coloured gradients + a soft disk: (b, 3, t, size, size) in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = torch.empty(b, 3, t, size, size)
    for i in range(b):
        for k in range(t):
            disk = torch.sigmoid(8 * (0.5 - ((xx - 0.1 * k) ** 2 + yy ** 2).sqrt()))
            out[i, 0, k], out[i, 1, k], out[i, 2, k] = 0.8 * xx, 0.8 * yy * (i + 1) / b, disk * 1.6 - 0.8
    return out


@pytest.mark.parametrize("mode", ["area", "bicubic", "bilinear"])
def test_downsample_sizes_and_range(mode: str) -> None:
    x = torch.rand(2, 3, 4, 32, 24) * 2 - 1
    y = downsample(x, 2, mode)
    assert y.shape == (2, 3, 4, 16, 12) and y.min() >= -1 and y.max() <= 1
    const = torch.full((1, 3, 2, 8, 8), 0.3)
    assert torch.allclose(downsample(const, 2, mode), torch.full((1, 3, 2, 4, 4), 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="not divisible"):
        downsample(torch.zeros(1, 3, 1, 9, 8))


def test_area_downsample_is_block_mean() -> None:
    x = torch.arange(16.0).view(1, 1, 1, 4, 4) / 16
    assert torch.allclose(downsample(x)[0, 0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]) / 16)


def test_blur_noise_and_compression_change_the_signal_by_the_right_amount() -> None:
    x = _smooth()
    rough = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    blurred = gaussian_blur(rough, torch.tensor([0.0, 1.5]))
    assert torch.allclose(blurred[0], rough[0], atol=1e-6) and blurred[1].std() < 0.5 * rough[1].std()
    gen = torch.Generator().manual_seed(0)
    noisy = add_noise(torch.zeros(2, 3, 3, 32, 32), torch.tensor([0.0, 0.1]), gen)
    assert float(noisy[0].abs().max()) == 0.0 and abs(float(noisy[1].std()) - 0.1) < 0.01
    low, high = jpeg_compress(x, torch.tensor([5, 5])), jpeg_compress(x, torch.tensor([95, 95]))
    assert low.shape == x.shape and (high - x).abs().mean() < (low - x).abs().mean()
    assert (high - x).abs().mean() < 0.03
    coded = codec_compress(x, torch.tensor([18, 45]))
    assert coded.shape == x.shape and coded.min() >= -1 and coded.max() <= 1
    assert (coded[0] - x[0]).abs().mean() < (coded[1] - x[1]).abs().mean()


def test_noise_augment_is_variance_preserving() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 2, 32, 32, generator=gen)
    y = noise_augment(x, torch.tensor([0.0, 0.5, 1.0]), gen)
    assert torch.equal(y[0], x[0])
    corr = [float(torch.corrcoef(torch.stack([y[i].flatten(), x[i].flatten()]))[0, 1]) for i in (1, 2)]
    assert abs(float(y[1].std()) - 1) < 0.05 and abs(corr[0] - math.cos(math.pi / 4)) < 0.05
    assert abs(corr[1]) < 0.05  # level 1: pure noise


def test_degrade_pipeline_sizes_levels_and_determinism() -> None:
    hr = _smooth(4, 3, 32)
    lr, level = degrade(hr)
    assert lr.shape == (4, 3, 3, 16, 16) and torch.equal(level, torch.zeros(4))
    assert torch.equal(lr, downsample(hr))
    cfg = DegradeConfig(mode="bicubic", blur_prob=0.5, noise_prob=0.5, jpeg_prob=0.5, codec_prob=0.5,
                        noise_aug_max=0.3)
    a = degrade(hr, cfg, torch.Generator().manual_seed(7))
    b = degrade(hr, cfg, torch.Generator().manual_seed(7))
    c = degrade(hr, cfg, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert a[0].shape == (4, 3, 3, 16, 16) and ((a[1] >= 0) & (a[1] <= 0.3)).all()
    clean, _ = degrade(hr, DegradeConfig(mode="bicubic", blur_prob=0.5, noise_prob=0.5, jpeg_prob=0.5,
                                         codec_prob=0.5), torch.Generator().manual_seed(7))
    assert clean.min() >= -1 and clean.max() <= 1


def test_random_crop_shared_over_time_and_aligned() -> None:
    x = torch.arange(64.0).view(1, 1, 1, 8, 8).repeat(3, 1, 4, 1, 1) + torch.arange(4.0).view(1, 1, 4, 1, 1) * 100
    gen = torch.Generator().manual_seed(0)
    c = random_crop(x, 4, gen, multiple=2)
    assert c.shape == (3, 1, 4, 4, 4)
    corner = c[:, 0, :, 0, 0]  # (B, T)
    assert torch.equal(corner - corner[:, :1], torch.arange(4.0).expand(3, 4) * 100)  # same offset every frame
    assert ((corner[:, 0] % 8) % 2 == 0).all() and ((corner[:, 0] // 8) % 2 == 0).all()
    with pytest.raises(ValueError, match="larger than the frames"):
        random_crop(x, 16, gen)

"""UpsampleStage: shapes, global residual, architecture rules, conditioning, config round trip, training.
(Running stages in a cascade: tests/inference/test_jobs_and_cascade.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wantrain.degradations.ops import downsample
from wantrain.evaluation.upsampler import bicubic
from wantrain.evaluation.video_metrics import psnr
from wantrain.inference.checkpoints import build
from wantrain.nets.upsampler import UpsampleStage, noise_level_features


def _bilinear(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    f = F.interpolate(x.transpose(1, 2).flatten(0, 1), scale_factor=2, mode="bilinear", align_corners=False)
    return f.unflatten(0, (b, -1)).transpose(1, 2)


def _randomize(m: nn.Module, std: float = 0.05) -> None:
    gen = torch.Generator().manual_seed(1)
    for p in m.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen) * std)


def test_shapes_video_image_and_noise_level() -> None:
    stage = UpsampleStage(channels=8, num_blocks=2, noise_conditioning=True)
    x = torch.rand(2, 3, 5, 12, 16) * 2 - 1
    assert stage(x).shape == (2, 3, 5, 24, 32)
    assert stage(x, torch.tensor([0.0, 0.3])).shape == (2, 3, 5, 24, 32)
    assert stage(x[:, :, 0]).shape == (2, 3, 24, 32)
    ps = UpsampleStage(channels=8, num_blocks=1, upsample="pixelshuffle")
    assert ps(x).shape == (2, 3, 5, 24, 32)
    with pytest.raises(ValueError, match="expects"):
        stage(torch.zeros(1, 4, 2, 8, 8))


def test_fresh_stage_is_exactly_bilinear_and_learns_a_residual() -> None:
    stage = UpsampleStage(channels=8, num_blocks=2)
    x = torch.rand(1, 3, 3, 10, 10) * 2 - 1
    assert torch.equal(stage(x), _bilinear(x))
    _randomize(stage)
    assert (stage(x) - _bilinear(x)).abs().max() > 1e-3


def test_no_batchnorm_no_transposed_conv_and_named_parts() -> None:
    for mode in ("nearest", "pixelshuffle"):
        stage = UpsampleStage(channels=8, num_blocks=2, upsample=mode, noise_conditioning=True)
        kinds = {type(m) for m in stage.modules()}
        forbidden = (nn.modules.batchnorm._BatchNorm, nn.modules.conv._ConvTransposeNd, nn.GroupNorm, nn.LayerNorm)
        assert not [k for k in kinds if issubclass(k, forbidden)]
    assert "detail_enhancer" in dict(stage.named_modules())


def test_config_node_rebuilds_the_same_network() -> None:
    stage = UpsampleStage(channels=8, num_blocks=1, upsample="pixelshuffle", noise_conditioning=True, emb_dim=16)
    rebuilt = build(stage.config_node())  # what an export's config.json holds
    assert type(rebuilt) is UpsampleStage and rebuilt.config == stage.config
    rebuilt.load_state_dict(stage.state_dict(), strict=True)


def test_noise_level_features_match_the_trained_embedding() -> None:
    """The shared `sinusoidal_embedding` (cos first) gives the features stages were trained with (sin first)."""
    level = torch.rand(32)
    for dim in (16, 64, 128):
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = level.float()[:, None] * 1000.0 * freqs[None]
        assert torch.equal(noise_level_features(level, dim), torch.cat([torch.sin(args), torch.cos(args)], dim=1))


def test_temporal_mixing_links_neighbouring_frames_only_within_receptive_field() -> None:
    stage = UpsampleStage(channels=8, num_blocks=2, temporal_kernel=3)  # temporal radius 2 frames
    _randomize(stage)
    x = torch.rand(1, 3, 6, 8, 8) * 2 - 1
    x2 = x.clone()
    x2[:, :, 0] += 0.5
    d = (stage(x2) - stage(x)).abs().amax(dim=(0, 1, 3, 4))  # (T,)
    assert d[1] > 1e-4 and d[2] > 1e-6  # neighbours see frame 0
    assert d[3:].max() == 0  # beyond the receptive field: untouched
    per_frame = UpsampleStage(channels=8, num_blocks=2, temporal_kernel=1)
    _randomize(per_frame)
    d = (per_frame(x2) - per_frame(x)).abs().amax(dim=(0, 1, 3, 4))
    assert d[1:].max() == 0


def test_noise_level_conditioning_changes_output_once_trained() -> None:
    stage = UpsampleStage(channels=8, num_blocks=1, noise_conditioning=True)
    x = torch.rand(2, 3, 2, 8, 8) * 2 - 1
    lo, hi = torch.zeros(2), torch.full((2,), 0.5)
    _randomize(stage)
    assert (stage(x, lo) - stage(x, hi)).abs().max() > 1e-4
    plain = UpsampleStage(channels=8, num_blocks=1)
    _randomize(plain)
    assert torch.equal(plain(x, lo), plain(x, hi))


def test_gradient_checkpointing_matches() -> None:
    a = UpsampleStage(channels=8, num_blocks=2)
    _randomize(a)
    b = UpsampleStage(channels=8, num_blocks=2, gradient_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 3, 8, 8)
    la, lb = a(x).square().mean(), b(x).square().mean()
    la.backward()
    lb.backward()
    assert torch.allclose(la, lb)
    assert torch.allclose(a.conv_in.weight.grad, b.conv_in.weight.grad, atol=1e-6)


def texture_clip(gen: torch.Generator, n: int, size: int, frames: int = 4, waves: int = 6) -> torch.Tensor:
    """Band-limited drifting texture: (n, 3, frames, size, size) in [-1, 1], sum of random plane waves."""
    yy, xx = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    out = torch.zeros(n, 3, frames, size, size)
    for i in range(n):
        for _ in range(waves):
            f, th, ph = (torch.rand(3, generator=gen) * torch.tensor([0.18, math.pi, 2 * math.pi])).tolist()
            col = torch.rand(3, generator=gen) * 2 - 1
            vx, vy = (torch.rand(2, generator=gen) * 2 - 1).tolist()  # drift in px / frame
            for k in range(frames):
                u = (xx - vx * k) * math.cos(th) + (yy - vy * k) * math.sin(th)
                out[i, :, k] += col[:, None, None] * torch.sin(2 * math.pi * (0.04 + f) * u + ph)
    return (out / math.sqrt(waves)).clamp(-1, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of the whole batch (one MSE) through the one PSNR."""
    return float(psnr(a.clamp(-1, 1).flatten()[None], b.flatten()[None])[0])


@pytest.mark.slow
def test_short_l1_training_beats_bicubic_on_held_out_clip() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    pool = texture_clip(gen, 32, 48)  # training clips, random 32x32 crops
    held_out = texture_clip(torch.Generator().manual_seed(1234), 2, 48)
    lr_held = downsample(held_out)
    stage = UpsampleStage(channels=16, num_blocks=2, detail_blocks=1)
    opt = torch.optim.Adam(stage.parameters(), 2e-3, betas=(0.9, 0.99))
    for _ in range(120):
        idx = torch.randint(0, len(pool), (4,), generator=gen)
        y0, x0 = torch.randint(0, 17, (2,), generator=gen).tolist()
        hr = pool[idx, :, :, y0:y0 + 32, x0:x0 + 32]
        loss = F.l1_loss(stage(downsample(hr)), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        sr = _psnr(stage(lr_held), held_out)
    bic = _psnr(bicubic(lr_held), held_out)
    print(f"held-out PSNR: stage {sr:.2f} dB, bicubic {bic:.2f} dB")
    assert sr > bic + 1.0

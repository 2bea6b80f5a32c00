"""End to end in plain PyTorch: overfit a tiny `VideoDiffusion` on one clip, then DDIM reproduces it.

Proves that noising, targets, the conditioning path (fusion + first frame) and the sampler of the one diffusion
core agree, with no Lightning involved.
"""

from __future__ import annotations

import math

import pytest
import torch

from wantrain.diffusion.model import Conditions, VideoDiffusion
from wantrain.diffusion.schedule import NoiseSchedule
from wantrain.diffusion.space import PIXELS
from wantrain.evaluation.video_metrics import psnr
from wantrain.nets.fusion import ConditionFusion
from wantrain.nets.unet import SpatioTemporalUNet

T, H, W, STEPS, BATCH = 8, 16, 16, 300, 4


def moving_square() -> torch.Tensor:
    """(1, 3, T, H, W) clip in [-1, 1]: a coloured square moving right over a dark background."""
    clip = torch.full((3, T, H, W), -0.8)
    for t in range(T):
        clip[:, t, 4:12, t:t + 8] = torch.tensor([0.9, 0.2, -0.5])[:, None, None]
    return clip[None]


@pytest.mark.slow
def test_overfit_one_clip_then_ddim_reproduces_it() -> None:
    torch.manual_seed(0)
    clip = moving_square()
    unet = SpatioTemporalUNet(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,),
                              head_dim=32, context_dim=16, pooled_dim=16)
    fusion = ConditionFusion(text_dim=8, image_dim=8, width=16, num_layers=1, num_heads=2,
                             p_drop_text=0.0, p_drop_image=0.0, p_drop_both=0.0)
    schedule = NoiseSchedule(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                             prediction_type="v_prediction")
    model = VideoDiffusion(unet, fusion, schedule)
    # the fixed "caption" and image tokens, and the clip's first frame
    frames = PIXELS.first_frames(clip[:, :, 0], T)
    cond = Conditions(torch.randn(1, 4, 8), torch.ones(1, 4, dtype=torch.bool), torch.randn(1, 5, 8), frames)

    def reproduce() -> float:
        model.eval()
        out = PIXELS.decode(model.sample_from_seeds(cond, [1], sampler="ddim", num_steps=25))
        model.train()
        return psnr(out, clip).item()

    untrained = reproduce()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    lr = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / 20) * 0.5 * (1 + math.cos(math.pi * i / STEPS)))
    gen = torch.Generator().manual_seed(0)
    x0, batch_cond = clip.expand(BATCH, -1, -1, -1, -1), cond.repeat(BATCH)
    losses = []
    for _ in range(STEPS):
        loss = model.loss(x0, batch_cond, generator=gen)[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last <= 0.1 * first, (first, last)
    trained = reproduce()
    print(f"loss {first:.4f} -> {last:.4f}; DDIM-25 PSNR untrained {untrained:.1f} dB, trained {trained:.1f} dB")
    assert trained > 20.0, (untrained, trained)
    assert untrained < 10.0, untrained

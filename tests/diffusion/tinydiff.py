"""A tiny real `VideoDiffusion` (UNet + fusion at CPU size) and its conditions, for the diffusion-core tests
(a module of its own: a bare `from conftest import` can pick another folder's conftest)."""

from __future__ import annotations

import torch

from wantrain.diffusion.model import Conditions, VideoDiffusion
from wantrain.nets.fusion import ConditionFusion
from wantrain.nets.unet import SpatioTemporalUNet

SHAPE = (2, 3, 4, 8, 8)  # (B, C, T, H, W)


def tiny_diffusion(schedule, micro=(), cond_aug=None) -> VideoDiffusion:
    """UNet + fusion with every zero-initialised weight randomised (so each input, micro included, changes the
    output)."""
    torch.manual_seed(0)
    unet = SpatioTemporalUNet(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,),
                              head_dim=8, context_dim=16, pooled_dim=16, norm_groups=4, micro_conditioning=micro)
    fusion = ConditionFusion(text_dim=8, image_dim=8, width=16, num_layers=1, num_heads=2)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in [*unet.parameters(), *fusion.parameters()]:
            if torch.count_nonzero(p) == 0:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return VideoDiffusion(unet, fusion, schedule, cond_aug=cond_aug).eval()


def tiny_conditions(frames: torch.Tensor | None = None) -> Conditions:
    """Conditions of SHAPE's B clips: pixel-space conditioning (the first frame repeated), unless `frames` given."""
    g = torch.Generator().manual_seed(2)
    b, c, t, h, w = SHAPE
    if frames is None:
        frames = (torch.rand(b, c, 1, h, w, generator=g) * 2 - 1).expand(-1, -1, t, -1, -1)
    return Conditions(torch.randn(b, 5, 8, generator=g), torch.ones(b, 5, dtype=torch.bool),
                      torch.randn(b, 4, 8, generator=g), frames)

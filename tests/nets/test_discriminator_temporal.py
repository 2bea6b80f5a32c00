"""The temporal discriminator option: per-pixel logits like the UNet, but it sees the order of frames."""

from __future__ import annotations

import torch

from wantrain.losses.adversarial import discriminator_loss, r1_penalty
from wantrain.nets.discriminator import build_discriminator


def test_unet_temporal_sees_frame_order_and_trains() -> None:
    torch.manual_seed(0)
    d = build_discriminator("unet_temporal", channels=8)
    x = torch.randn(2, 3, 4, 16, 16, requires_grad=True)
    d.eval()  # spectral norm's power iteration moves the weights on every training-mode call
    logits = d(x)
    assert logits.shape == (2, 1, 4, 16, 16)
    order = torch.tensor([2, 0, 3, 1])
    # the per-frame UNet alone commutes with a frame shuffle; the temporal branch does not
    spatial = d.spatial(x)
    assert torch.allclose(d.spatial(x[:, :, order]), spatial[:, :, order], atol=1e-5)
    assert not torch.allclose(d(x[:, :, order]), logits[:, :, order], atol=1e-3)
    d.train()
    logits = d(x)
    loss = discriminator_loss(logits, d(torch.randn(2, 3, 4, 16, 16))) + r1_penalty(logits, x)
    loss.backward()
    assert all(p.grad is not None for p in d.temporal.parameters() if p.requires_grad)

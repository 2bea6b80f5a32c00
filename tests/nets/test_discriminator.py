"""Discriminators: output layouts, spectral norm, per-frame independence, no BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from wantrain.nets.discriminator import PatchDiscriminator3D, UNetDiscriminatorSN, build_discriminator


def _sn_layers(model: nn.Module) -> int:
    return sum(1 for m in model.modules()
               if parametrize.is_parametrized(m, "weight")
               and any("SpectralNorm" in type(p).__name__ for p in m.parametrizations.weight))


def test_unet_discriminator_per_frame_logits_and_spectral_norm() -> None:
    d = build_discriminator("unet", channels=8)
    assert isinstance(d, UNetDiscriminatorSN) and _sn_layers(d) == 8
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())
    x = torch.rand(2, 3, 3, 32, 24) * 2 - 1
    d.eval()  # freeze the power-iteration vectors so that two calls are comparable
    y = d(x)
    assert y.shape == (2, 1, 3, 32, 24)
    x2 = x.clone()
    x2[:, :, 1] = 0
    d2 = d(x2)
    assert torch.equal(d2[:, :, 0], y[:, :, 0]) and not torch.equal(d2[:, :, 1], y[:, :, 1])  # per frame
    assert d(x[:, :, 0]).shape == (2, 1, 32, 24)
    with pytest.raises(ValueError, match="divisible by 8"):
        d(torch.zeros(1, 3, 1, 30, 32))


def test_spectral_norm_bounds_the_layer_gain() -> None:
    d = UNetDiscriminatorSN(channels=8)
    d.train()
    for _ in range(15):  # power iterations converge in training mode
        d(torch.rand(1, 3, 1, 16, 16))
    with torch.no_grad():
        d.conv1.parametrizations.weight.original.mul_(7.0)  # raw gain ~7x larger
        for _ in range(5):
            d(torch.rand(1, 3, 1, 16, 16))
        sigma = torch.linalg.matrix_norm(d.conv1.weight.flatten(1), ord=2)  # normalised weight
        raw = torch.linalg.matrix_norm(d.conv1.parametrizations.weight.original.flatten(1), ord=2)
    assert abs(float(sigma) - 1.0) < 0.05 and float(raw) > 2.0


def test_patch3d_discriminator_sees_time_and_gets_gradients() -> None:
    d = build_discriminator("patch3d", channels=8, num_layers=2)
    assert isinstance(d, PatchDiscriminator3D) and _sn_layers(d) == 2
    x = (torch.rand(1, 3, 6, 32, 32) * 2 - 1).requires_grad_(True)
    y = d(x)
    assert y.shape[:3] == (1, 1, 6) and y.shape[3] > 1
    y[:, :, 3].sum().backward()
    frame_grad = x.grad.abs().amax(dim=(0, 1, 3, 4))
    assert frame_grad[2] > 0 and frame_grad[4] > 0  # temporal receptive field spans neighbours
    with pytest.raises(ValueError, match="unknown discriminator"):
        build_discriminator("stylegan")

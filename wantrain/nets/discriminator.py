"""Discriminators for the upsampler GAN: per-frame UNet with spectral norm (default), a 3-D patch option and the
UNet + temporal branch option (against flicker)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN UNet discriminator applied per frame: (B, C, T, H, W) -> per-pixel logits (B, 1, T, H, W)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        c = channels
        sn = spectral_norm
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(in_channels, c, 3, 1, 1)
        self.conv1 = sn(nn.Conv2d(c, c * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(c * 2, c * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(c * 4, c * 8, 4, 2, 1, bias=False))
        self.conv4 = sn(nn.Conv2d(c * 8, c * 4, 3, 1, 1, bias=False))
        self.conv5 = sn(nn.Conv2d(c * 4, c * 2, 3, 1, 1, bias=False))
        self.conv6 = sn(nn.Conv2d(c * 2, c, 3, 1, 1, bias=False))
        self.conv7 = sn(nn.Conv2d(c, c, 3, 1, 1, bias=False))
        self.conv8 = sn(nn.Conv2d(c, c, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(c, 1, 3, 1, 1)

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> logits (N, 1, H, W)."""
        act = lambda v: F.leaky_relu(v, 0.2)  # noqa: E731
        up = lambda v: F.interpolate(v, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        x4 = x4 + x2 if self.skip_connection else x4
        x5 = act(self.conv5(up(x4)))
        x5 = x5 + x1 if self.skip_connection else x5
        x6 = act(self.conv6(up(x5)))
        x6 = x6 + x0 if self.skip_connection else x6
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) [or (B, C, H, W)], H and W divisible by 8 -> logits of the same layout, 1 channel."""
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"UNetDiscriminatorSN needs H and W divisible by 8, got {tuple(x.shape[-2:])}: crop")
        if x.dim() == 4:
            return self._frames(x)
        b, c, t, h, w = x.shape
        y = self._frames(x.transpose(1, 2).reshape(b * t, c, h, w))  # (B*T, 1, H, W)
        return y.view(b, t, 1, h, w).transpose(1, 2)


class PatchDiscriminator3D(nn.Module):
    """Spatio-temporal PatchGAN with spectral norm: (B, C, T, H, W) -> patch logits (B, 1, T', H', W')."""

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3,
                 temporal_kernel: int = 3) -> None:
        super().__init__()
        pad_t = temporal_kernel // 2
        layers: list[nn.Module] = [nn.Conv3d(in_channels, channels, (temporal_kernel, 4, 4), (1, 2, 2),
                                             (pad_t, 1, 1)), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, num_layers + 1):
            nxt = channels * min(2 ** i, 8)
            stride = (1, 2, 2) if i < num_layers else (1, 1, 1)
            layers += [spectral_norm(nn.Conv3d(ch, nxt, (temporal_kernel, 4, 4), stride, (pad_t, 1, 1),
                                               bias=False)), nn.LeakyReLU(0.2)]
            ch = nxt
        layers.append(nn.Conv3d(ch, 1, (temporal_kernel, 4, 4), 1, (pad_t, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) -> logits (B, 1, T, H', W')."""
        if x.dim() != 5:
            raise ValueError(f"PatchDiscriminator3D expects a video (B, C, T, H, W), got {tuple(x.shape)}")
        return self.net(x)


class TemporalUNetDiscriminator(nn.Module):
    """Per-frame UNet logits + a spatio-temporal branch that sees the frames and their differences over time
    (flicker, temporally inconsistent detail): (B, C, T, H, W) -> per-pixel logits (B, 1, T, H, W), the sum of
    the two branches' logits (a product of experts), so every GAN loss and R1 use it unchanged."""

    def __init__(self, in_channels: int = 3, channels: int = 64, temporal_channels: int | None = None,
                 temporal_layers: int = 2) -> None:
        super().__init__()
        self.spatial = UNetDiscriminatorSN(in_channels, channels)
        self.temporal = PatchDiscriminator3D(2 * in_channels, temporal_channels or channels, temporal_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) -> logits (B, 1, T, H, W)."""
        if x.dim() != 5:
            raise ValueError(f"TemporalUNetDiscriminator expects a video (B, C, T, H, W), got {tuple(x.shape)}")
        motion = torch.cat([torch.zeros_like(x[:, :, :1]), x.diff(dim=2)], dim=2)  # Δt x, 0 at frame 0
        temporal = self.temporal(torch.cat([x, motion], dim=1))  # (B, 1, T, H', W')
        return self.spatial(x) + F.interpolate(temporal, size=x.shape[2:], mode="nearest")


def build_discriminator(kind: str = "unet", **kwargs: int | bool) -> nn.Module:
    """Discriminator by name: 'unet' (per-frame UNet, spectral norm), 'patch3d' (spatio-temporal patches) or
    'unet_temporal' (per-frame UNet + a temporal branch on frames and frame differences)."""
    if kind == "unet":
        return UNetDiscriminatorSN(**kwargs)
    if kind == "patch3d":
        return PatchDiscriminator3D(**kwargs)
    if kind == "unet_temporal":
        return TemporalUNetDiscriminator(**kwargs)
    raise ValueError(f"unknown discriminator kind {kind!r}: use 'unet', 'patch3d' or 'unet_temporal'")

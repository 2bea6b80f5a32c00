"""One ×2 stage of the cascaded video upsampler (`upsampler_module[i]`): bilinear (or bicubic) + residual generator G.

Running a trained stage (noise augmentation, tiling, clamp) is `wantrain.inference.cascade.upsample`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from wantrain.nets.embeddings import sinusoidal_embedding
from wantrain.nets.tiling import tiled_forward


def noise_level_features(level: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features (B, dim) of a noise-augmentation level (B,) in [0, 1], read as timestep 1000·level.

    `sinusoidal_embedding` puts cos first; stages were trained with sin first, so the halves are swapped back.
    """
    cos, sin = sinusoidal_embedding(level.float() * 1000.0, dim).chunk(2, dim=1)
    return torch.cat([sin, cos], dim=1)


class ResidualBlock(nn.Module):
    """Per-frame EDSR-style block: x + s·conv(act(FiLM(conv(x)))); no normalisation layers."""

    def __init__(self, channels: int, emb_dim: int | None = None, res_scale: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.res_scale = res_scale
        self.film = nn.Linear(emb_dim, 2 * channels) if emb_dim else None
        if self.film is not None:  # a fresh block ignores the noise level
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, C, H, W), emb (N, E) | None -> (N, C, H, W)."""
        h = self.act(self.conv1(x))
        if self.film is not None and emb is not None:
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return x + self.res_scale * self.conv2(h)


class TemporalMix(nn.Module):
    """Residual temporal conv across neighbouring frames: x + conv_t(act(x)), kernel (k, 1, 1)."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0),
                              padding_mode="replicate")
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x (B*T, C, H, W) -> (B*T, C, H, W), mixing along T."""
        bt, c, h, w = x.shape
        v = x.view(bt // frames, frames, c, h, w).transpose(1, 2)  # (B, C, T, H, W)
        v = self.conv(self.act(v)).transpose(1, 2).reshape(bt, c, h, w)
        return x + v


class SpatioTemporalBlock(nn.Module):
    """A spatial residual block followed by a residual temporal mix."""

    def __init__(self, channels: int, emb_dim: int | None, res_scale: float, temporal_kernel: int) -> None:
        super().__init__()
        self.spatial = ResidualBlock(channels, emb_dim, res_scale)
        self.temporal = TemporalMix(channels, temporal_kernel) if temporal_kernel > 1 else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None, frames: int) -> torch.Tensor:
        """x (B*T, C, H, W) -> (B*T, C, H, W)."""
        x = self.spatial(x, emb)
        return self.temporal(x, frames) if self.temporal is not None else x


class UpsampleStage(nn.Module):
    """One ×2 stage: video (B, 3, T, h, w) -> (B, 3, T, 2h, 2w) = skip(x) + G(x), skip bilinear (BasicVSR,
    RealBasicVSR) or bicubic (then a fresh stage is the bicubic baseline itself)."""

    scale = 2

    def __init__(
        self,
        in_channels: int = 3,
        channels: int = 64,
        num_blocks: int = 8,
        temporal_kernel: int = 3,
        upsample: str = "nearest",
        detail_channels: int | None = None,
        detail_blocks: int = 1,
        res_scale: float = 0.2,
        noise_conditioning: bool = False,
        emb_dim: int = 128,
        zero_init_last: bool = True,
        gradient_checkpointing: bool = False,
        in_size: int | None = None,
        skip: str = "bilinear",
    ) -> None:
        super().__init__()
        # constructor arguments: an export's config.json rebuilds the stage from them (`config_node`)
        self.config: dict[str, Any] = dict(
            in_channels=in_channels, channels=channels, num_blocks=num_blocks, temporal_kernel=temporal_kernel,
            upsample=upsample, detail_channels=detail_channels, detail_blocks=detail_blocks, res_scale=res_scale,
            noise_conditioning=noise_conditioning, emb_dim=emb_dim, zero_init_last=zero_init_last,
            gradient_checkpointing=gradient_checkpointing, in_size=in_size, skip=skip)
        if upsample not in ("nearest", "pixelshuffle"):
            raise ValueError(f"upsample={upsample!r} is not supported: use 'nearest' or 'pixelshuffle'")
        if skip not in ("bilinear", "bicubic"):
            raise ValueError(f"skip={skip!r} is not supported: use 'bilinear' or 'bicubic'")
        self.skip = skip
        self.in_channels = in_channels
        self.in_size = in_size
        self.gradient_checkpointing = gradient_checkpointing
        self.emb_dim = emb_dim if noise_conditioning else None
        self.noise_mlp = (nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
                          if noise_conditioning else None)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            SpatioTemporalBlock(channels, self.emb_dim, res_scale, temporal_kernel) for _ in range(num_blocks))
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.upsample_mode = upsample
        if upsample == "nearest":
            self.conv_up = nn.Conv2d(channels, channels, 3, padding=1)
        else:
            self.conv_up = nn.Conv2d(channels, 4 * channels, 3, padding=1)
        dch = detail_channels or channels
        self.conv_hr = nn.Conv2d(channels, dch, 3, padding=1)
        self.detail_enhancer = nn.ModuleList(ResidualBlock(dch, None, res_scale) for _ in range(detail_blocks))
        self.conv_out = nn.Conv2d(dch, in_channels, 3, padding=1)
        if zero_init_last:  # a fresh stage is exactly its skip (bilinear / bicubic upsampling)
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    @property
    def noise_conditioned(self) -> bool:
        """Whether G takes the noise-augmentation level (trained with `degrade.noise_aug_max` > 0)."""
        return self.noise_mlp is not None

    def config_node(self) -> dict[str, Any]:
        """`{_target_, **constructor arguments}`: what `wantrain.inference.checkpoints.build` rebuilds it from."""
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **self.config}

    def _upsample(self, f: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, C, 2h, 2w) by nearest + conv or pixel shuffle."""
        if self.upsample_mode == "nearest":
            return self.act(self.conv_up(F.interpolate(f, scale_factor=2, mode="nearest")))
        return self.act(F.pixel_shuffle(self.conv_up(f), 2))

    def generator(self, frames: torch.Tensor, t: int, noise_level: torch.Tensor | None) -> torch.Tensor:
        """G: frames (B*T, 3, h, w) -> residual (B*T, 3, 2h, 2w)."""
        emb = None
        if self.noise_mlp is not None:
            if noise_level is None:
                noise_level = torch.zeros(frames.shape[0] // t, device=frames.device)
            emb = self.noise_mlp(noise_level_features(noise_level.to(frames.device), self.noise_mlp[0].in_features))
            emb = emb.repeat_interleave(t, dim=0).to(frames.dtype)  # (B*T, E)
        f0 = self.conv_in(frames)
        f = f0
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and f.requires_grad:
                f = checkpoint(block, f, emb, t, use_reentrant=False)
            else:
                f = block(f, emb, t)
        f = self.conv_body(f) + f0
        f = self.conv_hr(self._upsample(f))
        for block in self.detail_enhancer:
            f = block(f)
        return self.conv_out(self.act(f))

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3, T, h, w) [or image (B, 3, h, w)], noise_level (B,) in [0, 1] -> (B, 3, T, 2h, 2w)."""
        image = x.dim() == 4
        if image:
            x = x.unsqueeze(2)
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"UpsampleStage expects (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, 3, h, w)
        base = F.interpolate(frames, scale_factor=2, mode=self.skip, align_corners=False)
        y = base + self.generator(frames, t, noise_level)
        y = y.view(b, t, c, 2 * h, 2 * w).transpose(1, 2)  # (B, 3, T, 2h, 2w)
        return y[:, :, 0] if image else y

    def tiled(self, x: torch.Tensor, noise_level: torch.Tensor | None = None, *, tile: int | None = 64,
              overlap: int = 16, chunk: int | None = None, chunk_overlap: int = 4,
              out_device: torch.device | str | None = None) -> torch.Tensor:
        """Tiled forward for large clips (x (B, 3, T, h, w)); memory inside G bounded by tile×tile×chunk."""
        dev = self.conv_in.weight.device
        return tiled_forward(lambda v: self(v.to(dev), noise_level), x, scale=2, tile=tile, overlap=overlap,
                             chunk=chunk, chunk_overlap=chunk_overlap, out_device=out_device)


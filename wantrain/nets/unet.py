"""SpatioTemporalUNet: the video denoiser, and `frame_condition` for image-to-video channel conditioning."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from wantrain.nets.attention import SpatialTransformer, TemporalAttention, resolve_heads
from wantrain.nets.blocks import Downsample, ResBlock, Upsample, zero_
from wantrain.nets.embeddings import MicroConditioning, TimestepEmbedding


def frame_condition(frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """First-frame conditioning clip (B, C, T, H, W) -> (B, C + 1, T, H, W): the clip + a mask channel that is 1 on
    frame 0; all zeros for samples where `keep` (B,) bool is False (image dropped / text-to-video)."""
    b, _, t, h, w = frames.shape
    mask = torch.zeros(b, 1, t, h, w, dtype=frames.dtype, device=frames.device)
    mask[:, :, 0] = 1.0
    cond = torch.cat([frames, mask], dim=1)
    if keep is not None:
        cond = cond * keep.to(frames.dtype).view(b, 1, 1, 1, 1)
    return cond


class UNetBlock(nn.Module):
    """One UNet block: optional ResBlock, spatial transformer + temporal attention, and down/upsampler."""

    def __init__(
        self,
        res: ResBlock | None = None,
        spatial: SpatialTransformer | None = None,
        temporal: TemporalAttention | None = None,
        resample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.res, self.spatial, self.temporal, self.resample = res, spatial, temporal, resample

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, num_frames: int, context: torch.Tensor,
        context_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (B*T, C, H, W) -> (B*T, C', H', W')."""
        if self.res is not None:
            x = self.res(x, emb, num_frames)
        if self.spatial is not None:
            x = self.spatial(x, num_frames, context, context_mask)
        if self.temporal is not None:
            x = self.temporal(x, num_frames)
        if self.resample is not None:
            x = self.resample(x)
        return x


class SpatioTemporalUNet(nn.Module):
    """Video UNet on (B, C, T, H, W): residual 2D+1D conv blocks, spatial self/cross-attention and temporal
    attention at `attention_levels`, timestep (+ pooled condition) scale-shift in every residual block."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        concat_channels: int = 4,
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (1, 2),
        head_dim: int | None = 64,
        num_heads: int | None = None,
        context_dim: int = 512,
        pooled_dim: int | None = None,
        temporal_positions: str = "rope",
        dropout: float = 0.0,
        gradient_checkpointing: bool = False,
        norm_groups: int = 32,
        micro_conditioning: Sequence[str] = (),
    ) -> None:
        super().__init__()
        channel_mult = tuple(channel_mult)
        attention_levels = tuple(attention_levels)
        bad = [lvl for lvl in attention_levels if not 0 <= lvl < len(channel_mult)]
        if bad:
            raise ValueError(f"attention_levels {bad} out of range for {len(channel_mult)} levels "
                             f"(0..{len(channel_mult) - 1})")
        for ch in {model_channels * m for m in channel_mult}:
            if ch % norm_groups:
                raise ValueError(f"channels {ch} not divisible by norm_groups {norm_groups}; change model_channels")
        self.in_channels, self.out_channels, self.concat_channels = in_channels, out_channels, concat_channels
        self.context_dim, self.pooled_dim = context_dim, pooled_dim
        self.gradient_checkpointing = gradient_checkpointing
        self.downscale = 2 ** (len(channel_mult) - 1)
        emb_dim = 4 * model_channels
        self.time_embedding = TimestepEmbedding(model_channels, emb_dim)
        self.pooled_projection = nn.Linear(pooled_dim, emb_dim) if pooled_dim else None
        # per-sample scalars (batch keys, e.g. [fps, motion]) added to the timestep embedding; zero-initialised
        self.micro_conditioning = tuple(str(n) for n in micro_conditioning)
        self.micro_embedding = (MicroConditioning(self.micro_conditioning, model_channels, emb_dim)
                                if self.micro_conditioning else None)

        def attn(ch: int) -> tuple[SpatialTransformer, TemporalAttention]:
            heads, hd = resolve_heads(ch, head_dim, num_heads)
            return (
                SpatialTransformer(ch, heads, hd, context_dim, dropout=dropout, groups=norm_groups),
                TemporalAttention(ch, heads, hd, positions=temporal_positions),
            )

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout=dropout, groups=norm_groups)

        self.conv_in = nn.Conv2d(in_channels + concat_channels, model_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels, ch = [model_channels], model_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = model_channels * mult
                s, t = attn(out) if level in attention_levels else (None, None)
                self.down.append(UNetBlock(res(ch, out), s, t))
                ch = out
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.down.append(UNetBlock(resample=Downsample(ch)))
                skip_channels.append(ch)
        s, t = attn(ch)
        self.mid = nn.ModuleList([UNetBlock(res(ch, ch), s, t), UNetBlock(res(ch, ch))])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                out = model_channels * mult
                s, t = attn(out) if level in attention_levels else (None, None)
                up = Upsample(out) if level != 0 and i == num_res_blocks else None
                self.up.append(UNetBlock(res(ch + skip_channels.pop(), out), s, t, up))
                ch = out
        self.norm_out = nn.GroupNorm(norm_groups, ch, eps=1e-6)
        self.conv_out = zero_(nn.Conv2d(ch, out_channels, 3, padding=1))

    def _run(self, block: UNetBlock, *args) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _check(self, x: torch.Tensor, context: torch.Tensor, concat: torch.Tensor | None) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.downscale or w % self.downscale:
            raise ValueError(
                f"H, W = {h}, {w} must be divisible by {self.downscale} (2**(len(channel_mult)-1)); "
                "resize/crop the video or use fewer levels"
            )
        if context.ndim != 3 or context.shape[-1] != self.context_dim:
            raise ValueError(f"expected context (B, L, {self.context_dim}), got {tuple(context.shape)}")
        if concat is not None and concat.shape[1] != self.concat_channels:
            raise ValueError(f"concat has {concat.shape[1]} channels, the model expects {self.concat_channels}")

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,
        concat: torch.Tensor | None = None,
        micro: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x (B, C, T, H, W), timesteps (B,), context (B, L, D), context_mask (B, L) bool (True = real token),
        pooled (B, D_p), concat (B, concat_channels, T, H, W) (None = zeros), micro {name: (B,)} micro-conditioning
        scalars (missing = 0) -> (B, C_out, T, H, W)."""
        self._check(x, context, concat)
        b, _, t, h, w = x.shape
        if concat is None:
            concat = x.new_zeros(b, self.concat_channels, t, h, w)
        timesteps = timesteps.reshape(-1).expand(b) if timesteps.numel() == 1 else timesteps
        emb = self.time_embedding(timesteps)  # (B, E)
        if self.pooled_projection is not None and pooled is not None:
            emb = emb + self.pooled_projection(pooled.to(emb.dtype))
        if self.micro_embedding is not None:
            emb = emb + self.micro_embedding(micro, b, x.device).to(emb.dtype)
        hidden = torch.cat([x, concat.to(x.dtype)], dim=1).transpose(1, 2).reshape(b * t, -1, h, w)  # (B*T, C, H, W)
        hidden = self.conv_in(hidden)
        skips = [hidden]
        for block in self.down:
            hidden = self._run(block, hidden, emb, t, context, context_mask)
            skips.append(hidden)
        for block in self.mid:
            hidden = self._run(block, hidden, emb, t, context, context_mask)
        for block in self.up:
            hidden = self._run(block, torch.cat([hidden, skips.pop()], dim=1), emb, t, context, context_mask)
        out = self.conv_out(torch.nn.functional.silu(self.norm_out(hidden)))  # (B*T, C_out, H, W)
        return out.reshape(b, t, self.out_channels, h, w).transpose(1, 2)

"""Condition fusion: project text / image tokens, cross-attend text -> image, pool, and drop for CFG."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over real tokens: (B, L, D), mask (B, L) bool -> (B, D)."""
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.to(tokens.dtype)[..., None]  # (B, L, 1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def check_dropout_rates(rates: tuple[float, float, float]) -> tuple[float, float, float]:
    """Condition dropout rates (text only, image only, both): each >= 0, summing to <= 1."""
    if min(rates) < 0 or sum(rates) > 1:
        raise ValueError(f"dropout rates (text, image, both) = {rates} must be >= 0 and sum to <= 1")
    return rates


def draw_dropout(batch_size: int, rates: tuple[float, float, float], device: torch.device | str | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample CFG dropout as exclusive events text-only / image-only / both at `rates`
    -> (drop_text (B,) bool, drop_image (B,) bool)."""
    gen_device = generator.device if generator is not None else "cpu"
    u = torch.rand(batch_size, generator=generator, device=gen_device).to(device or "cpu")
    t, i, both = rates
    text_only = u < t
    image_only = (u >= t) & (u < t + i)
    drop_both = (u >= t + i) & (u < t + i + both)
    return text_only | drop_both, image_only | drop_both


class SpatialPooling(nn.Module):
    """Global image vector: mean over image tokens, (B, N, D) -> (B, D)."""

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pool (B, N, D) tokens (optionally masked) to (B, D)."""
        return masked_mean(tokens, mask)


class CrossAttentionLayer(nn.Module):
    """Pre-norm cross-attention (queries attend to a context) + MLP, both residual."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width={width} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(width, 2 * width)
        self.to_out = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, L, W) attends to context (B, N, W) (context_mask (B, N) bool, True = real) -> (B, L, W)."""
        b, n, w = x.shape
        h = self.num_heads
        q = self.to_q(self.norm_q(x)).view(b, n, h, w // h).transpose(1, 2)  # (B, h, L, W/h)
        k, v = self.to_kv(self.norm_kv(context)).chunk(2, dim=-1)
        k = k.view(b, -1, h, w // h).transpose(1, 2)  # (B, h, N, W/h)
        v = v.view(b, -1, h, w // h).transpose(1, 2)
        attn_mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, L, W/h)
        x = x + self.to_out(out.transpose(1, 2).reshape(b, n, w))
        return x + self.mlp(self.norm_mlp(x))


class ConditionFusion(nn.Module):
    """text_projection + image_projection to `width`, cross_attention (text attends to image), spatial_pooling.

    forward -> context tokens (B, L + N, width) = [fused text tokens, projected image tokens],
    context_mask (B, L + N) bool, and pooled (B, width) to add to the timestep embedding.
    Dropped text becomes one learned null token (rest masked); dropped image tokens become a
    learned null token repeated N times; for classifier-free guidance.
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        width: int,
        num_layers: int = 2,
        num_heads: int = 4,
        p_drop_text: float = 0.05,
        p_drop_image: float = 0.05,
        p_drop_both: float = 0.05,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.p_drop_text, self.p_drop_image, self.p_drop_both = check_dropout_rates(
            (p_drop_text, p_drop_image, p_drop_both))
        self.width, self.text_dim, self.image_dim = width, text_dim, image_dim
        self.text_projection = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, width))
        self.image_projection = nn.Sequential(nn.LayerNorm(image_dim), nn.Linear(image_dim, width))
        self.cross_attention = nn.ModuleList(
            [CrossAttentionLayer(width, num_heads, mlp_ratio) for _ in range(num_layers)]
        )
        self.spatial_pooling = SpatialPooling()
        self.pooled_projection = nn.Sequential(
            nn.LayerNorm(2 * width), nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.null_text = nn.Parameter(torch.randn(width) * 0.02)  # (width,)
        self.null_image = nn.Parameter(torch.randn(width) * 0.02)  # (width,)

    def sample_dropout(
        self, batch_size: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample CFG dropout at the configured rates -> (drop_text (B,) bool, drop_image (B,) bool)."""
        return draw_dropout(batch_size, (self.p_drop_text, self.p_drop_image, self.p_drop_both), device, generator)

    def forward(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor | None,
        image: torch.Tensor,
        drop_text: torch.Tensor | None = None,
        drop_image: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """text (B, L, D_t), text_mask (B, L) bool, image (B, N, D_i), drop_* (B,) bool
        -> (context (B, L+N, width), context_mask (B, L+N) bool, pooled (B, width))."""
        b, length, _ = text.shape
        n = image.shape[1]
        if text_mask is None:
            text_mask = torch.ones(b, length, dtype=torch.bool, device=text.device)
        text_mask = text_mask.bool()
        text_tokens = self.text_projection(text)  # (B, L, W)
        image_tokens = self.image_projection(image)  # (B, N, W)
        if drop_image is not None:
            null = self.null_image.to(image_tokens.dtype).expand(b, n, -1)
            image_tokens = torch.where(drop_image.view(b, 1, 1), null, image_tokens)
        if drop_text is not None:
            null_mask = torch.zeros(length, dtype=torch.bool, device=text.device)
            null_mask[0] = True  # one learned null token, the rest masked out
            null = null_mask[None, :, None].to(text_tokens.dtype) * self.null_text.to(text_tokens.dtype)  # (1, L, W)
            text_tokens = torch.where(drop_text.view(b, 1, 1), null, text_tokens)
            text_mask = torch.where(drop_text.view(b, 1), null_mask[None], text_mask)
        keep = text_mask[..., None].to(text_tokens.dtype)  # (B, L, 1): padding stays exactly 0
        text_tokens = text_tokens * keep
        for layer in self.cross_attention:
            text_tokens = layer(text_tokens, image_tokens) * keep
        context = torch.cat([text_tokens, image_tokens], dim=1)  # (B, L+N, W)
        image_mask = torch.ones(b, n, dtype=torch.bool, device=text_mask.device)
        context_mask = torch.cat([text_mask, image_mask], dim=1)  # (B, L+N)
        pooled = torch.cat([masked_mean(text_tokens, text_mask), self.spatial_pooling(image_tokens)], dim=-1)
        return context, context_mask, self.pooled_projection(pooled)  # pooled (B, W)

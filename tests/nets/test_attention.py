"""Attention parts: key masks, rotary relativity, relative-position buckets, temporal identity init."""

from __future__ import annotations

import pytest
import torch

from wantrain.nets.attention import Attention, TemporalAttention, relative_position_bucket, resolve_heads
from wantrain.nets.embeddings import apply_rotary, rotary_cos_sin, sinusoidal_embedding


def test_mask_equals_truncated_context() -> None:
    torch.manual_seed(0)
    attn = Attention(16, heads=2, head_dim=8, context_dim=12, null_kv=True)
    torch.nn.init.normal_(attn.null_kv)
    x, ctx = torch.randn(1, 5, 16), torch.randn(1, 7, 12)
    mask = torch.tensor([[True, True, True, False, False, False, False]])
    assert torch.allclose(attn(x, ctx, mask), attn(x, ctx[:, :3]), atol=1e-6)
    assert not torch.allclose(attn(x, ctx), attn(x, ctx[:, :3]), atol=1e-4)


def test_rotary_scores_depend_on_offset_only() -> None:
    cos, sin = rotary_cos_sin(10, 8, torch.device("cpu"))
    q, k = torch.randn(8), torch.randn(8)
    rq = apply_rotary(q.expand(10, 8), cos, sin)
    rk = apply_rotary(k.expand(10, 8), cos, sin)
    assert torch.allclose(rq[2] @ rk[5], rq[6] @ rk[9], atol=1e-5)
    assert not torch.allclose(rq[2] @ rk[5], rq[2] @ rk[7], atol=1e-3)
    with pytest.raises(ValueError, match="even head dim"):
        rotary_cos_sin(4, 7, torch.device("cpu"))


def test_relative_buckets() -> None:
    rel = torch.arange(-40, 41)
    b = relative_position_bucket(rel, num_buckets=32, max_distance=64)
    assert b.min() >= 0 and b.max() < 32
    assert len(set(b[rel < 0].tolist()) & set(b[rel > 0].tolist())) == 0  # past and future separate
    assert len(set(b[(rel.abs() < 8)].tolist())) == 15  # exact buckets for small offsets


@pytest.mark.parametrize("positions", ["rope", "relative_bias"])
def test_temporal_attention_identity_then_order_aware(positions: str) -> None:
    torch.manual_seed(0)
    layer = TemporalAttention(16, heads=2, head_dim=8, positions=positions)
    x = torch.randn(2 * 6, 16, 3, 5)  # (B*T, C, H, W), T=6
    assert torch.equal(layer(x, 6), x)  # zero-init output: identity
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    out = layer(x, 6)
    reversed_in = x.view(2, 6, 16, 3, 5).flip(1).reshape(12, 16, 3, 5)
    reversed_out = layer(reversed_in, 6).view(2, 6, 16, 3, 5).flip(1).reshape(12, 16, 3, 5)
    assert (out - x).abs().max() > 1e-3
    assert (out - reversed_out).abs().max() > 1e-4  # positions make the layer order-aware


def test_heads_and_embedding() -> None:
    assert resolve_heads(64, 16, None) == (4, 16)
    assert resolve_heads(64, None, 2) == (2, 32)
    with pytest.raises(ValueError, match="exactly one"):
        resolve_heads(64, 16, 4)
    with pytest.raises(ValueError, match="not divisible"):
        resolve_heads(48, 32, None)
    emb = sinusoidal_embedding(torch.tensor([0, 1, 999]), 32)
    assert emb.shape == (3, 32) and torch.allclose(emb[0, :16], torch.ones(16))
    assert (emb[1] - emb[2]).abs().max() > 0.1

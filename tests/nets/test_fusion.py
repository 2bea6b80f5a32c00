"""ConditionFusion: shapes, masking, learned-null dropout for classifier-free guidance."""

from __future__ import annotations

import pytest
import torch

from wantrain.nets.fusion import ConditionFusion, masked_mean

B, L, N, DT, DI, W = 4, 7, 5, 24, 20, 32


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _inputs():
    text = torch.randn(B, L, DT)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, 1:] = False
    return text, mask, torch.randn(B, N, DI)


def _fusion(**kw):
    return ConditionFusion(DT, DI, W, num_layers=2, num_heads=4, **kw)


def test_shapes_and_mask_and_names():
    fusion = _fusion()
    text, mask, image = _inputs()
    context, context_mask, pooled = fusion(text, mask, image)
    assert context.shape == (B, L + N, W) and context_mask.shape == (B, L + N) and pooled.shape == (B, W)
    assert torch.equal(context_mask[:, :L], mask) and context_mask[:, L:].all()
    assert torch.all(context[:, :L][~mask] == 0)
    for name in ("text_projection", "image_projection", "spatial_pooling", "cross_attention"):
        assert hasattr(fusion, name)
    context.sum().backward()
    assert fusion.text_projection[1].weight.grad.abs().sum() > 0


def test_masked_text_tokens_do_not_affect_the_output():
    fusion = _fusion()
    text, mask, image = _inputs()
    ref = fusion(text, mask, image)
    noisy = text.clone()
    noisy[~mask] = torch.randn_like(noisy[~mask]) * 100
    got = fusion(noisy, mask, image)
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[2], ref[2])
    # unmasked tokens do matter
    changed = text.clone()
    changed[1, 0] = torch.randn(DT)
    assert not torch.allclose(fusion(changed, mask, image)[2][1], ref[2][1])


def test_text_attends_to_image():
    fusion = _fusion()
    text, mask, image = _inputs()
    ref, _, _ = fusion(text, mask, image)
    image2 = image.clone()
    image2[0] = torch.randn(N, DI)
    got, _, _ = fusion(text, mask, image2)
    assert not torch.allclose(got[0, :L], ref[0, :L])  # fused text tokens depend on the image
    torch.testing.assert_close(got[1:], ref[1:])  # and only on their own sample's image


def test_dropout_uses_learned_null_embeddings():
    fusion = _fusion()
    text, mask, image = _inputs()
    drop_text = torch.tensor([True, False, False, True])
    drop_image = torch.tensor([False, True, False, True])
    ref = fusion(text, mask, image)
    got = fusion(text, mask, image, drop_text=drop_text, drop_image=drop_image)
    other = fusion(torch.randn_like(text), mask, torch.randn_like(image), drop_text=drop_text, drop_image=drop_image)
    # dropped parts do not depend on the input
    torch.testing.assert_close(got[0][3], other[0][3])
    torch.testing.assert_close(got[2][3], other[2][3])
    torch.testing.assert_close(got[0][1, L:], other[0][1, L:])
    torch.testing.assert_close(got[0][0, L:], ref[0][0, L:])  # sample 0 keeps its image tokens
    torch.testing.assert_close(got[0][2], ref[0][2])  # sample 2 untouched
    # dropped text is one learned null token
    assert got[1][0, :L].tolist() == [True] + [False] * (L - 1)
    assert got[1][3, :L].tolist() == [True] + [False] * (L - 1)
    # dropped image tokens are the learned null_image, repeated
    assert torch.allclose(got[0][1, L:], fusion.null_image.expand(N, W))
    # the null embeddings are learned
    got[2].sum().backward()
    assert fusion.null_text.grad.abs().sum() > 0 and fusion.null_image.grad.abs().sum() > 0


def test_sample_dropout_rates_and_generator():
    fusion = _fusion(p_drop_text=0.1, p_drop_image=0.2, p_drop_both=0.3)
    g = torch.Generator().manual_seed(0)
    drop_text, drop_image = fusion.sample_dropout(20000, "cpu", generator=g)
    assert drop_text.dtype == torch.bool and drop_text.shape == (20000,)
    both = (drop_text & drop_image).float().mean()
    assert abs(both - 0.3) < 0.015
    assert abs((drop_text & ~drop_image).float().mean() - 0.1) < 0.015
    assert abs((drop_image & ~drop_text).float().mean() - 0.2) < 0.015
    again = fusion.sample_dropout(20000, "cpu", generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], drop_text) and torch.equal(again[1], drop_image)
    none = _fusion(p_drop_text=0, p_drop_image=0, p_drop_both=0).sample_dropout(100)
    assert not none[0].any() and not none[1].any()
    with pytest.raises(ValueError, match="sum to <= 1"):
        _fusion(p_drop_text=0.6, p_drop_image=0.6)


def test_masked_mean_pools_only_real_tokens() -> None:
    tokens = torch.randn(4, 6, 8)
    torch.testing.assert_close(masked_mean(tokens, None), tokens.mean(1))
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, :3] = True
    torch.testing.assert_close(masked_mean(tokens, mask), tokens[:, :3].mean(1))

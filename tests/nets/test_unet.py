"""SpatioTemporalUNet: shapes, identity temporal init, checkpointing, bf16, context mask, frame conditioning."""

from __future__ import annotations

import pytest
import torch

from wantrain.nets.unet import SpatioTemporalUNet, frame_condition

CTX, POOLED = 8, 8


def tiny_unet(**kw) -> SpatioTemporalUNet:
    """A small UNet that runs in milliseconds on CPU."""
    torch.manual_seed(0)
    cfg = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(0, 1), head_dim=8,
               context_dim=CTX, pooled_dim=POOLED, norm_groups=4)
    cfg.update(kw)
    return SpatioTemporalUNet(**cfg)


def perturb(model: torch.nn.Module, temporal: bool) -> None:
    """Randomise the zero-initialised parameters: the temporal ones (temporal=True) or all the others."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_temporal = ".temporal." in name
            if is_temporal == temporal and torch.count_nonzero(p) == 0:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def inputs(b: int = 2, t: int = 5, h: int = 8, w: int = 12):
    """Random model inputs (x, timesteps, context, mask, pooled, concat)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(b, 3, t, h, w, generator=g)
    ctx = torch.randn(b, 6, CTX, generator=g)
    mask = torch.ones(b, 6, dtype=torch.bool)
    mask[0, 4:] = False
    image = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    concat = frame_condition(image[:, :, None].expand(-1, -1, t, -1, -1), torch.tensor([True, False][:b]))
    return x, torch.tensor([3, 900][:b]), ctx, mask, torch.randn(b, POOLED, generator=g), concat


@pytest.mark.parametrize("positions", ["rope", "relative_bias"])
def test_odd_frames_non_square(positions: str) -> None:
    model = tiny_unet(temporal_positions=positions)
    perturb(model, temporal=False)
    perturb(model, temporal=True)
    x, t, ctx, mask, pooled, concat = inputs(t=5, h=8, w=12)
    out = model(x, t, ctx, mask, pooled, concat)
    assert out.shape == (2, 3, 5, 8, 12)
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    # concat=None means zeros (text-to-video)
    zeros = torch.zeros_like(concat)
    assert torch.allclose(model(x, t, ctx, mask, pooled, None), model(x, t, ctx, mask, pooled, zeros))


def test_fresh_output_is_zero_and_bad_size_error() -> None:
    model = tiny_unet(channel_mult=(1, 2, 2))
    x, t, ctx, mask, pooled, concat = inputs(h=8, w=12)
    assert model(x, t, ctx, mask, pooled, concat).abs().max() == 0  # zero-initialised output conv
    x, t, ctx, mask, pooled, concat = inputs(h=8, w=10)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(x, t, ctx, mask, pooled, concat)


def test_fresh_temporal_layers_keep_frames_independent() -> None:
    """With only spatial weights trained, the video output equals running every frame alone."""
    model = tiny_unet().eval()
    perturb(model, temporal=False)
    x, t, ctx, mask, pooled, concat = inputs(t=5)
    with torch.no_grad():
        video = model(x, t, ctx, mask, pooled, concat)
        frames = torch.cat([model(x[:, :, i:i + 1], t, ctx, mask, pooled, concat[:, :, i:i + 1]) for i in range(5)], 2)
        assert video.abs().mean() > 1e-3
        assert torch.allclose(video, frames, atol=1e-5)
        perturb(model, temporal=True)  # now frames interact
        video = model(x, t, ctx, mask, pooled, concat)
        frames = torch.cat([model(x[:, :, i:i + 1], t, ctx, mask, pooled, concat[:, :, i:i + 1]) for i in range(5)], 2)
        assert (video - frames).abs().max() > 1e-3


def test_temporal_layers_are_identity_for_single_frames() -> None:
    """T = 1 (images): trained temporal layers change nothing and receive no gradient."""
    model = tiny_unet().eval()
    perturb(model, temporal=False)
    x, t, ctx, mask, pooled, concat = inputs(t=1)
    spatial_only = model(x, t, ctx, mask, pooled, concat).detach()
    perturb(model, temporal=True)
    out = model(x, t, ctx, mask, pooled, concat)
    assert spatial_only.abs().mean() > 1e-3 and torch.equal(out, spatial_only)
    out.square().mean().backward()
    temporal = [n for n, p in model.named_parameters() if ".temporal." in n]
    assert temporal and all(p.grad is None for n, p in model.named_parameters() if ".temporal." in n)


def test_gradient_checkpointing_same_gradients() -> None:
    grads = []
    for ckpt in (False, True):
        model = tiny_unet(gradient_checkpointing=ckpt, dropout=0.0).train()
        perturb(model, temporal=False)
        perturb(model, temporal=True)
        model(*inputs()).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4), name


def test_bf16_autocast_cpu() -> None:
    model = tiny_unet()
    perturb(model, temporal=False)
    perturb(model, temporal=True)
    x, t, ctx, mask, pooled, concat = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, ctx, mask, pooled, concat)
    ref = model(x, t, ctx, mask, pooled, concat)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    assert (out.float() - ref).abs().mean() < 0.05 * ref.abs().mean()
    out.float().sum().backward()


def test_context_mask_respected() -> None:
    model = tiny_unet().eval()
    perturb(model, temporal=False)
    x, t, ctx, mask, pooled, concat = inputs()
    with torch.no_grad():
        ref = model(x, t, ctx, mask, pooled, concat)
        masked_changed = ctx.clone()
        masked_changed[0, 4:] += 5.0  # masked tokens of sample 0
        assert torch.allclose(model(x, t, masked_changed, mask, pooled, concat), ref, atol=1e-6)
        real_changed = ctx.clone()
        real_changed[0, 1] += 5.0  # a real token
        assert (model(x, t, real_changed, mask, pooled, concat)[0] - ref[0]).abs().max() > 1e-4
        none_kept = torch.zeros_like(mask)  # fully masked context stays finite (learned null key/value)
        assert torch.isfinite(model(x, t, ctx, none_kept, pooled, concat)).all()


def test_frame_condition() -> None:
    image = torch.rand(2, 3, 4, 6) * 2 - 1
    cond = frame_condition(image[:, :, None].expand(-1, -1, 3, -1, -1), torch.tensor([True, False]))
    assert cond.shape == (2, 4, 3, 4, 6)
    for f in range(3):
        assert torch.equal(cond[0, :3, f], image[0])
    assert torch.equal(cond[0, 3, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert cond[1].abs().max() == 0

"""fps / motion micro-conditioning: zero-initialised (a fresh model ignores it), learnable, carried by Conditions."""

from __future__ import annotations

import torch

from wantrain.diffusion.model import Conditions
from wantrain.nets.unet import SpatioTemporalUNet

CTX = 8


def _unet(micro=()) -> SpatioTemporalUNet:
    """A tiny UNet whose zero-initialised layers (output conv, residual branches) are randomised, except the micro
    embedding's last layer, so gradients reach the timestep embedding at once."""
    torch.manual_seed(0)
    unet = SpatioTemporalUNet(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,),
                              head_dim=8, context_dim=CTX, pooled_dim=None, norm_groups=4, micro_conditioning=micro)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if not name.startswith("micro_embedding.") and torch.count_nonzero(p) == 0:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return unet


def _inputs(b: int = 2):
    g = torch.Generator().manual_seed(2)
    return torch.randn(b, 3, 3, 8, 8, generator=g), torch.tensor([10, 500]), torch.randn(b, 4, CTX, generator=g)


def test_a_fresh_micro_embedding_changes_nothing_and_a_trained_one_tells_frame_rates_apart():
    plain, micro = _unet(), _unet(["fps", "motion"])
    missing, unexpected = micro.load_state_dict(plain.state_dict(), strict=False)  # same weights, plus micro
    assert not unexpected and missing and all(k.startswith("micro_embedding.") for k in missing)
    x, t, ctx = _inputs()
    slow, fast = {"fps": torch.tensor([4.0, 4.0])}, {"fps": torch.tensor([24.0, 24.0]), "motion": torch.ones(2)}
    with torch.no_grad():
        base = plain(x, t, ctx)
        assert torch.equal(micro(x, t, ctx, micro=slow), base) and torch.equal(micro(x, t, ctx), base)
    opt = torch.optim.Adam(micro.micro_embedding.parameters(), lr=1e-2)
    for _ in range(5):  # only the micro embedding trains: add +1 at 24 fps and nothing at 4 fps
        loss = (micro(x, t, ctx, micro=fast) - base - 1).pow(2).mean()
        loss = loss + (micro(x, t, ctx, micro=slow) - base).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert micro.micro_embedding.mlp[2].weight.abs().sum() > 0
    with torch.no_grad():
        gap = (micro(x, t, ctx, micro=fast) - micro(x, t, ctx, micro=slow)).mean()
    assert gap > 0.25  # 0.51 measured (target gap 1.0)


def test_conditions_carry_micro_values_through_repeat_and_to():
    cond = Conditions(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 1, 4),
                      torch.zeros(2, 4, 1, 8, 8), {"fps": torch.tensor([8, 16])})
    tiled = cond.repeat(3).to("cpu")
    assert tiled.micro["fps"].tolist() == [8.0, 16.0] * 3 and tiled.micro["fps"].dtype == torch.float32
    assert Conditions(*[torch.zeros(1)] * 4).repeat(2).micro is None

"""GAN losses: values, signs of gradients, and the R1 penalty."""

from __future__ import annotations

import math

import pytest
import torch

from wantrain.losses.adversarial import AdversarialLoss, discriminator_loss, generator_loss, r1_penalty


@pytest.mark.parametrize("kind", ["nonsaturating", "hinge", "lsgan"])
def test_generator_gradient_pushes_fake_logits_up(kind: str) -> None:
    fake = torch.tensor([-2.0, 0.0, 0.5], requires_grad=True)
    generator_loss(fake, kind).backward()
    assert (fake.grad < 0).all()  # descending the loss raises D(G(z))


@pytest.mark.parametrize("kind", ["nonsaturating", "hinge", "lsgan"])
def test_discriminator_gradient_separates_real_and_fake(kind: str) -> None:
    real = torch.tensor([0.2, 0.5, 0.8], requires_grad=True)  # between the targets of every kind
    fake = torch.tensor([0.2, 0.5, 0.8], requires_grad=True)
    discriminator_loss(real, fake, kind).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()


def test_known_values() -> None:
    z = torch.zeros(4)
    assert math.isclose(float(generator_loss(z)), math.log(2), rel_tol=1e-6)  # -log sigmoid(0)
    assert math.isclose(float(discriminator_loss(z, z)), 2 * math.log(2), rel_tol=1e-6)
    big = torch.full((4,), 10.0)
    assert float(discriminator_loss(big, -big)) < 1e-3  # a perfect D has ~0 loss
    assert float(discriminator_loss(big, -big, "hinge")) == 0.0
    assert float(generator_loss(torch.ones(3), "lsgan")) == 0.0
    assert float(AdversarialLoss("hinge")(torch.full((2,), 3.0))) == -3.0
    with pytest.raises(ValueError, match="unknown GAN loss"):
        AdversarialLoss("wgan")


def test_r1_penalty_matches_analytic_gradient() -> None:
    x = torch.randn(3, 2, 4, requires_grad=True)
    w = torch.randn(2, 4, requires_grad=True)  # the "discriminator" parameters
    logits = (x * w).sum(dim=(1, 2))  # dD/dx = w for every sample (2 channels, 4 positions)
    pen = r1_penalty(logits, x)
    assert torch.allclose(pen, w.pow(2).sum() / 4)  # squared gradient norm per input position
    pen.backward()  # differentiable (create_graph) w.r.t. D's parameters
    assert torch.allclose(w.grad, 2 * w.detach() / 4)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(logits, x.detach())


@pytest.mark.parametrize("video", [False, True])
def test_r1_penalty_does_not_depend_on_the_crop_size(video: bool) -> None:
    """Bug 4: per-pixel logits summed made R1 grow with the crop area; per sample it is a per-position average."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 1, 3, padding=1, padding_mode="circular")  # linear, translation-invariant D

    def d(x: torch.Tensor) -> torch.Tensor:  # per-frame logits (B, 1, [T,] H, W)
        if x.dim() == 4:
            return conv(x)
        b, c, t, h, w = x.shape
        return conv(x.transpose(1, 2).flatten(0, 1)).view(b, t, 1, h, w).transpose(1, 2)

    penalties = []
    for size in (8, 16, 32):
        shape = (2, 3, 4, size, size) if video else (2, 3, size, size)
        x = torch.randn(shape, requires_grad=True)
        penalties.append(r1_penalty(d(x), x))
    assert torch.allclose(penalties[0], penalties[1], rtol=1e-5)
    assert torch.allclose(penalties[1], penalties[2], rtol=1e-5)
    # the value: every position receives Σ_k w[:, k] (its 9 taps) from the neighbouring logits -> ‖Σ_k w_k‖²
    assert torch.allclose(penalties[0], conv.weight[0].sum(dim=(1, 2)).pow(2).sum(), rtol=1e-5)


def test_gan_schedule_warmup_ramp_d_ratio_and_lazy_r1() -> None:
    from wantrain.losses.adversarial import GANSchedule

    s = GANSchedule.from_config({"weight": 0.1, "warmup_batches": 2, "ramp_batches": 4, "d_updates": 2, "d_every": 3,
                                 "r1_gamma": 10.0, "r1_every": 4})
    assert [s.phase(b) for b in (0, 1, 2)] == ["pixel", "pixel", "gan"]
    assert [round(s.weight_at(b), 3) for b in (1, 2, 3, 5, 9)] == [0.0, 0.025, 0.05, 0.1, 0.1]
    assert [s.d_due(b) for b in (1, 2, 3, 4, 5, 6)] == [0, 0, 2, 0, 0, 2]  # D:G = 2:3 in the GAN phase
    assert [s.r1_weight(d) for d in (0, 1, 4)] == [20.0, 0.0, 20.0]  # γ/2 · r1_every every r1_every D steps
    assert GANSchedule.from_config(None) == GANSchedule()
    for bad, match in (({"wieght": 1}, r"unknown config key model.gan.wieght.*did you mean model.gan.weight"),
                       ({"d_every": 0}, "model.gan.d_every=0: out of range, use a value >= 1"),
                       ({"loss": "wgan"}, r"model.gan.loss='wgan': not allowed.*nonsaturating, hinge, lsgan")):
        with pytest.raises(ValueError, match=match):
            GANSchedule.from_config(bad)

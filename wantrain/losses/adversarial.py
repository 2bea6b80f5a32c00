"""GAN losses on discriminator logits (non-saturating, hinge, LSGAN) and the R1 penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("nonsaturating", "hinge", "lsgan")


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown GAN loss {kind!r}: use one of {', '.join(KINDS)}")


def generator_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """G loss on D(G(z)) logits: non-saturating −E[log σ(D)] = E[softplus(−D)], hinge −E[D], LSGAN E[(D−1)²]."""
    _check(kind)
    f = fake_logits.float()
    if kind == "nonsaturating":
        return F.softplus(-f).mean()
    if kind == "hinge":
        return -f.mean()
    return (f - 1).pow(2).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       kind: str = "nonsaturating") -> torch.Tensor:
    """D loss on real and (detached) fake logits; minimised when real logits are high and fake ones low."""
    _check(kind)
    r, f = real_logits.float(), fake_logits.float()
    if kind == "nonsaturating":
        return F.softplus(-r).mean() + F.softplus(f).mean()
    if kind == "hinge":
        return F.relu(1 - r).mean() + F.relu(1 + f).mean()
    return (r - 1).pow(2).mean() + f.pow(2).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """R1 per input position: mean over samples of (1/P)·‖∇_x Σ D(x)‖², P = positions (T·H·W) of a sample.

    real_inputs (B, C, [T,] H, W) must require grad; real_logits are D's logits of them (per pixel, per patch or
    one per sample). A local D's gradient at a position does not depend on the crop size, so averaging over
    positions (not summing) makes γ mean the same at every crop. Multiply by γ/2 outside.
    """
    if not real_inputs.requires_grad:
        raise ValueError("r1_penalty needs real_inputs.requires_grad_(True) before the discriminator forward")
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_inputs, create_graph=True)
    per_position = grad.float().pow(2).sum(1)  # (B, [T,] H, W): ‖∇‖² over channels
    return per_position.flatten(1).mean(1).mean()


class AdversarialLoss(nn.Module):
    """Holds the GAN loss kind; `generator(fake)` and `discriminator(real, fake)` return scalar losses."""

    def __init__(self, kind: str = "nonsaturating") -> None:
        super().__init__()
        _check(kind)
        self.kind = kind

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Generator loss on D(G(z))."""
        return generator_loss(fake_logits, self.kind)

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Discriminator loss on D(x) and D(G(z).detach())."""
        return discriminator_loss(real_logits, fake_logits, self.kind)

    def forward(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Same as `generator`."""
        return self.generator(fake_logits)

"""GAN losses on discriminator logits (non-saturating, hinge, LSGAN), the R1 penalty, and the GAN schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wantrain.schema import check_options, option

GAN_LOSSES = ("nonsaturating", "hinge", "lsgan")


def _check(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}: use one of {', '.join(GAN_LOSSES)}")


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


@dataclass
class GANSchedule:
    """The adversarial part of a run, counted in batches: pixel-only warm-up, λ ramp, D:G ratio, lazy R1."""

    loss: str = option("nonsaturating", "the GAN loss", choices=GAN_LOSSES)
    weight: float = option(0.1, "λ after the ramp", ge=0)
    warmup_batches: int = option(0, "content loss only before this many batches", ge=0)
    ramp_batches: int = option(0, "λ rises linearly from 0 over this many batches after the warm-up", ge=0)
    d_updates: int = option(1, "D updates per D-update batch", ge=1)
    d_every: int = option(1, "D updates every this many batches", ge=1)
    r1_gamma: float = option(0.0, "R1 weight γ (0: off)", ge=0)
    r1_every: int = option(16, "R1 every this many D steps (lazy; scaled by r1_every)", ge=1)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> GANSchedule:
        """From a `model.gan` mapping; OptionError (one line) naming an unknown key or a bad value."""
        check_options("model.gan", dict(config or {}), cls)
        return cls(**dict(config or {}))

    def phase(self, batches: int) -> str:
        """'pixel' during the content-loss-only warm-up, then 'gan'."""
        return "pixel" if batches < int(self.warmup_batches) else "gan"

    def weight_at(self, batches: int) -> float:
        """λ after `batches` batches: 0 in warm-up, then a linear ramp over `ramp_batches` up to `weight`."""
        into = batches - int(self.warmup_batches)
        if into < 0:
            return 0.0
        ramp = int(self.ramp_batches)
        return float(self.weight) * (min(1.0, (into + 1) / ramp) if ramp > 0 else 1.0)

    def d_due(self, batches: int) -> int:
        """D updates to run after G's update at this batch (0 outside the GAN phase)."""
        return int(self.d_updates) if self.phase(batches) == "gan" and batches % int(self.d_every) == 0 else 0

    def r1_weight(self, d_steps: int) -> float:
        """Weight of the R1 penalty at this D step: γ/2 · r1_every when due (lazy regularisation), else 0."""
        every = max(1, int(self.r1_every))
        return float(self.r1_gamma) / 2 * every if self.r1_gamma > 0 and d_steps % every == 0 else 0.0

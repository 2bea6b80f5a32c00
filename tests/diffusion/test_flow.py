"""Flow matching: noising and the velocity target agree, timestep sampling and shift, and both flow samplers
return x0 exactly from an oracle velocity, with and without guidance."""

from __future__ import annotations

import pytest
import torch

from wantrain.diffusion.flow import FlowMatching, shift_sigmas
from wantrain.diffusion.sampling import sample


def test_noising_and_target_invert_to_x0_and_noise() -> None:
    f = FlowMatching()
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 3, 2, 4, 4, generator=g), torch.randn(5, 3, 2, 4, 4, generator=g)
    t = torch.tensor([0.0, 100.0, 500.0, 900.0, 1000.0])
    x_t, v = f.add_noise(x0, noise, t), f.target(x0, noise, t)
    s = (t / 1000).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(x_t - s * v, x0)  # x0 = x_t - sigma v
    torch.testing.assert_close(x_t + (1 - s) * v, noise)  # noise = x_t + (1 - sigma) v
    assert torch.equal(x_t[0], x0[0]) and torch.equal(x_t[-1], noise[-1])


def test_timestep_sampling_and_shift() -> None:
    g = torch.Generator().manual_seed(0)
    uniform = FlowMatching(timestep_sampling="uniform").timesteps(4000, generator=g)
    logit = FlowMatching(timestep_sampling="logit_normal").timesteps(4000, generator=g)
    shifted = FlowMatching(timestep_sampling="logit_normal", shift=3.0).timesteps(4000, generator=g)
    for t in (uniform, logit, shifted):
        assert t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1000
    assert abs(uniform.mean() - 500) < 25 and logit.std() < uniform.std()  # logit-normal concentrates mid-way
    assert shifted.median() > logit.median() + 150  # shift > 1 spends more training at high noise
    s = torch.linspace(0, 1, 11)
    torch.testing.assert_close(shift_sigmas(s, 1.0), s)
    assert shift_sigmas(torch.tensor(0.5), 3.0) == 0.75
    with pytest.raises(ValueError, match="timestep_sampling"):
        FlowMatching(timestep_sampling="beta")


def test_cosmap_weighting_and_loss_reduction() -> None:
    f = FlowMatching(weighting="cosmap")
    t = torch.tensor([0.0, 500.0, 1000.0])
    torch.testing.assert_close(f.weight(t), 2 / (torch.pi * torch.tensor([1.0, 0.5, 1.0])))
    x0, noise = torch.zeros(3, 1, 1, 2, 2), torch.ones(3, 1, 1, 2, 2)
    assert torch.equal(f.loss(f.target(x0, noise, t), x0, noise, t, reduce=False), torch.zeros(3))


@pytest.mark.parametrize("kind", ["euler", "unipc"])
@pytest.mark.parametrize("scales", [(1.0, 1.0), (4.0, 1.5)])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_oracle_velocity_makes_both_samplers_return_x0(kind: str, scales: tuple[float, float], shift: float) -> None:
    """A network that returns the exact velocity of a known x0 at its (x_t, t) gives x0 back."""
    f = FlowMatching(shift=shift)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 3, 8, 8, generator=g) * 2 - 1

    def oracle(x: torch.Tensor, t: torch.Tensor, drop_text: torch.Tensor, drop_image: torch.Tensor) -> torch.Tensor:
        sigma = f.sigma(t).view(-1, 1, 1, 1, 1)
        return (x - x0.repeat(x.shape[0] // x0.shape[0], 1, 1, 1, 1)) / sigma

    out = sample(oracle, tuple(x0.shape), f.sampler(kind), num_steps=6, text_scale=scales[0], image_scale=scales[1],
                 generator=torch.Generator().manual_seed(2), model_timesteps=f.model_timesteps)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_timestep_range_cuts_the_distribution_for_one_expert() -> None:
    """Wan2.2 A14B's experts train over t >= 900 and t < 900 (boundary_ratio 0.9): draws stay in the range and follow
    the configured distribution cut there (inverse CDF, no rejection). With uniform sigmas and shift 5, 0.357 of the
    mass is at t >= 900: DiffSynth-Studio's --max_timestep_boundary 0.358 for the same split."""

    g = torch.Generator().manual_seed(0)
    for sampling in ("uniform", "logit_normal"):
        full = FlowMatching(timestep_sampling=sampling, shift=5.0).timesteps(200_000, generator=g)
        for lo, hi in ((900, 1000), (0, 900)):
            cut = FlowMatching(timestep_sampling=sampling, shift=5.0, timestep_range=[lo, hi]).timesteps(
                50_000, generator=g)
            assert lo <= cut.min() and cut.max() <= hi
            tail = full[(full >= lo) & (full < hi)]
            assert abs(cut.mean() - tail.mean()) < 2.0, (sampling, lo, cut.mean(), tail.mean())
    assert 1 - 0.9 / (5 - 4 * 0.9) == pytest.approx(0.357, abs=1e-3)
    high = FlowMatching(timestep_sampling="uniform", shift=5.0).timesteps(200_000, generator=g)
    assert (high >= 900).float().mean().item() == pytest.approx(0.357, abs=0.005)
    with pytest.raises(ValueError, match="timestep_range"):
        FlowMatching(timestep_range=[900, 800])

"""Training schedule: diffusers betas, noising, targets invertible, min-SNR weights, offset noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from wantrain.diffusion.schedule import NoiseSchedule, snr


def invert(x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor, s: NoiseSchedule,
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) recovered from a model output at (x_t, t), by the textbook formulas (independent of the package)."""
    a = s.alphas_cumprod[t].view(-1, *([1] * (x_t.ndim - 1)))
    sa, s1a = a.sqrt(), (1 - a).sqrt()
    if s.prediction_type == "epsilon":
        return (x_t - s1a * output) / sa, output
    if s.prediction_type == "v_prediction":
        return sa * x_t - s1a * output, s1a * x_t + sa * output
    return output, (x_t - sa * output) / s1a.clamp(min=1e-8)

SCHEDULES = [dict(beta_schedule="linear"), dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
             dict(beta_schedule="cosine"), dict(beta_schedule="linear", rescale_betas_zero_snr=True)]


@pytest.mark.parametrize("kw", SCHEDULES)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_target_inverts_to_x0_and_noise(kw: dict, prediction_type: str) -> None:
    if kw.get("rescale_betas_zero_snr") and prediction_type == "epsilon":
        with pytest.raises(ValueError, match="v_prediction"):
            NoiseSchedule(prediction_type=prediction_type, **kw)
        return
    s = NoiseSchedule(prediction_type=prediction_type, **kw)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 4, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 10, 250, 500, 900, 998])
    x_t = s.add_noise(x0, noise, t)
    ref = DDPMScheduler.from_config(s.config).add_noise(x0, noise, t)  # diffusers' own noising
    assert torch.allclose(x_t, ref, atol=1e-5)
    x0_hat, eps_hat = invert(x_t, s.target(x0, noise, t), t, s)
    assert torch.allclose(x0_hat, x0, atol=2e-3)
    assert torch.allclose(eps_hat[1:], noise[1:], atol=2e-3)  # t=0 has almost no noise to recover


def test_betas_follow_diffusers() -> None:
    cos = NoiseSchedule(beta_schedule="cosine")
    ref = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    assert torch.allclose(cos.alphas_cumprod, ref.alphas_cumprod.float())
    zero = NoiseSchedule(beta_schedule="linear", rescale_betas_zero_snr=True, prediction_type="v_prediction")
    assert zero.alphas_cumprod[-1] < 1e-6 and NoiseSchedule().alphas_cumprod[-1] > 1e-5
    with pytest.raises(ValueError, match="beta_schedule"):
        NoiseSchedule(beta_schedule="quadratic")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weight_is_min_snr_in_x0_space(prediction_type: str) -> None:
    """For any wrong output, weight * ||target error||^2 == min(SNR, gamma) * ||x0 error||^2 (Hang et al. 2023)."""
    s = NoiseSchedule(prediction_type=prediction_type, weighting="min_snr", snr_gamma=5.0)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 3, 2, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([5, 100, 300, 600, 950])
    x_t = s.add_noise(x0, noise, t)
    output = s.target(x0, noise, t) + 0.1 * torch.randn(x0.shape, generator=g)
    x0_err = (invert(x_t, output, t, s)[0] - x0).pow(2).flatten(1).mean(1)
    s_t = snr(t, s.alphas_cumprod)
    expected = torch.minimum(s_t, torch.tensor(5.0)) * x0_err
    assert torch.allclose(s.loss(output, x0, noise, t, reduce=False), expected, rtol=1e-3)
    assert (s_t[:2] > 5).all() and (s_t[-2:] < 5).all()  # both sides of gamma are exercised
    uniform = NoiseSchedule(prediction_type=prediction_type)
    assert torch.equal(uniform.weight(t), torch.ones(5))


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_min_snr_is_the_papers_weight_and_keeps_the_pure_noise_step(prediction_type: str) -> None:
    """Hang et al. 2023 / diffusers PR #6307 / kohya `apply_snr_weight`: v -> min(SNR, g) / (SNR + 1),
    x0 -> min(SNR, g), at every t of i2v_64's schedule (zero terminal SNR); the SNR = 0 step keeps a weight > 0
    (its neighbour's)."""
    s = NoiseSchedule(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                      prediction_type=prediction_type, rescale_betas_zero_snr=True, weighting="min_snr", snr_gamma=5.0)
    t = torch.arange(s.num_train_timesteps)
    s_t = snr(t, s.alphas_cumprod)
    paper = torch.minimum(s_t, torch.tensor(5.0)) / ((s_t + 1) if prediction_type == "v_prediction" else 1)
    w = s.weight(t)
    positive = s_t > 0
    assert positive.sum() == s.num_train_timesteps - 1  # only the last step is pure noise
    torch.testing.assert_close(w[positive], paper[positive], atol=1e-5, rtol=1e-5)
    assert w[-1] > 0 and w[-1] == w[-2]  # the pure-noise step: its neighbour's weight
    if prediction_type == "v_prediction":
        assert abs(w[500].item() - 0.24) < 0.01  # t=500: 0.24 (min(SNR+1, g)/(SNR+1) gave 1.00)


def test_min_snr_weight_has_no_data_dependent_shapes() -> None:
    """`bench plan` traces the loss with fake tensors, and a boolean-mask index would sync the GPU every step."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    s = NoiseSchedule(rescale_betas_zero_snr=True, prediction_type="v_prediction", weighting="min_snr")
    with FakeTensorMode(allow_non_fake_inputs=True):
        assert s.weight(torch.randint(0, 1000, (4,))).shape == (4,)


def test_offset_noise_and_seeds() -> None:
    x0 = torch.zeros(64, 3, 4, 8, 8)
    plain = NoiseSchedule().noise_like(x0, torch.Generator().manual_seed(0))
    offset = NoiseSchedule(offset_noise=0.5).noise_like(x0, torch.Generator().manual_seed(0))
    assert torch.equal(plain, NoiseSchedule().noise_like(x0, torch.Generator().manual_seed(0)))
    per_channel_mean = lambda n: n.mean(dim=(2, 3, 4)).std()  # noqa: E731
    assert per_channel_mean(plain) < 0.1 < per_channel_mean(offset)
    t = NoiseSchedule().timesteps(1000, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= 999 and t.float().std() > 250

"""Training schedule: diffusers betas, noising, targets invertible, min-SNR weights, offset noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from wantrain.diffusion.schedule import NoiseSchedule, predict_x0_eps, snr

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
    x0_hat, eps_hat = predict_x0_eps(x_t, s.target(x0, noise, t), t, s.alphas_cumprod, prediction_type)
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
    """For any wrong output, weight * ||target error||^2 == min(SNR, gamma) * ||x0 error||^2."""
    s = NoiseSchedule(prediction_type=prediction_type, weighting="min_snr", snr_gamma=5.0)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 3, 2, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([5, 100, 300, 600, 950])
    x_t = s.add_noise(x0, noise, t)
    output = s.target(x0, noise, t) + 0.1 * torch.randn(x0.shape, generator=g)
    x0_err = (s.predict_x0(x_t, output, t) - x0).pow(2).flatten(1).mean(1)
    s_t = snr(t, s.alphas_cumprod)
    expected = torch.minimum(s_t, torch.tensor(5.0)) * x0_err
    assert torch.allclose(s.loss(output, x0, noise, t, reduce=False), expected, rtol=1e-3)
    assert (s_t[:2] > 5).all() and (s_t[-2:] < 5).all()  # both sides of gamma are exercised
    uniform = NoiseSchedule(prediction_type=prediction_type)
    assert torch.equal(uniform.weight(t), torch.ones(5))


def test_offset_noise_and_seeds() -> None:
    x0 = torch.zeros(64, 3, 4, 8, 8)
    plain = NoiseSchedule().noise_like(x0, torch.Generator().manual_seed(0))
    offset = NoiseSchedule(offset_noise=0.5).noise_like(x0, torch.Generator().manual_seed(0))
    assert torch.equal(plain, NoiseSchedule().noise_like(x0, torch.Generator().manual_seed(0)))
    per_channel_mean = lambda n: n.mean(dim=(2, 3, 4)).std()  # noqa: E731
    assert per_channel_mean(plain) < 0.1 < per_channel_mean(offset)
    t = NoiseSchedule().timesteps(1000, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= 999 and t.float().std() > 250

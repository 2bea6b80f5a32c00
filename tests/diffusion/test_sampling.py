"""Samplers agree with the training schedule (an exact denoiser recovers x0), seeds, and CFG combination."""

from __future__ import annotations

import pytest
import torch
from tinydiff import tiny_conditions, tiny_diffusion

from wantrain.diffusion.guidance import guided_prediction
from wantrain.diffusion.sampling import make_sampler, sample
from wantrain.diffusion.schedule import NoiseSchedule, training_target
from wantrain.diffusion.space import LatentSpace, PixelSpace

SHAPE = (2, 3, 3, 8, 8)


def oracle(schedule: NoiseSchedule, x0: torch.Tensor):
    """pred_fn of the exact denoiser for a single data point x0 (in the schedule's prediction type)."""
    def pred_fn(x, t, drop_text, drop_image):
        a = schedule.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return training_target(x0.expand_as(x), eps, t, schedule.alphas_cumprod, schedule.prediction_type)
    return pred_fn


@pytest.mark.parametrize("kind", ["ddim", "dpm_solver"])
@pytest.mark.parametrize("kw", [dict(prediction_type="epsilon"), dict(prediction_type="v_prediction"),
                                dict(prediction_type="sample", beta_schedule="cosine"),
                                dict(prediction_type="v_prediction", rescale_betas_zero_snr=True)])
def test_exact_denoiser_recovers_x0(kind: str, kw: dict) -> None:
    s = NoiseSchedule(**kw)
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    out = sample(oracle(s, x0), SHAPE, make_sampler(s.config, kind), num_steps=10,
                 generator=torch.Generator().manual_seed(1))
    assert (out - x0).abs().max() < 1e-4
    sampler = make_sampler(s.config, kind)
    assert sampler.config.prediction_type == s.prediction_type
    assert torch.allclose(sampler.alphas_cumprod.float(), s.alphas_cumprod, atol=1e-6)  # DPM: 2**-24 at zero SNR


class OracleNet(torch.nn.Module):
    """An exact denoiser for one latent clip x0 in place of the UNet (conditioning ignored)."""

    def __init__(self, schedule: NoiseSchedule, x0: torch.Tensor) -> None:
        super().__init__()
        self.pred = oracle(schedule, x0)
        self.out_channels = x0.shape[1]

    def forward(self, x: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        return self.pred(x, t, None, None)


@pytest.mark.parametrize("kind", ["ddim", "dpm_solver"])
def test_latent_space_samples_are_not_clipped(kind: str) -> None:
    """DDIM's clip_sample and DPM-Solver's thresholding keep x0 in [-1, 1], which is pixel space's range only:
    normalised latents have unit std. An exact v-predictor on N(0, 1) latents recovers them through
    `VideoDiffusion.sample` with the latent space's setting (clipped: RMSE ~0.4)."""
    s = NoiseSchedule(prediction_type="v_prediction", beta_schedule="scaled_linear", beta_start=0.00085,
                      beta_end=0.012)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))  # (B, C, T, h, w) latents, std 1
    model = tiny_diffusion(s)
    model.unet = OracleNet(s, x0)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    cond = tiny_conditions(x0[:, :, :1].expand(-1, -1, SHAPE[2], -1, -1))

    def rmse(space) -> float:
        out = model.sample(cond, noise, sampler=kind, num_steps=10, clip_sample=space.bounded)
        return (out - x0).pow(2).mean().sqrt().item()

    assert LatentSpace.bounded is False and PixelSpace.bounded is True
    assert rmse(LatentSpace) < 1e-3
    assert rmse(PixelSpace) > 0.1  # what latent space got before: x0 clipped to [-1, 1]


def test_seed_fixes_samples_and_eta() -> None:
    s = NoiseSchedule()
    pred = lambda x, t, dt, di: 0.5 * x  # noqa: E731
    runs = [sample(pred, SHAPE, make_sampler(s.config), 5, generator=torch.Generator().manual_seed(seed), eta=1.0)
            for seed in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])
    det = sample(pred, SHAPE, make_sampler(s.config), 5, generator=torch.Generator().manual_seed(3), eta=0.0)
    assert not torch.allclose(det, runs[0])
    with pytest.raises(ValueError, match="sampler must be"):
        make_sampler(s.config, "euler")


def _pred_with_calls():
    calls = []

    def pred_fn(x, t, drop_text, drop_image):
        calls.append(x.shape[0])
        # a nonlinear function of all inputs so every variant differs
        return torch.tanh(x) * (1 + t.view(-1, 1, 1, 1, 1) / 1000) + 0.3 * drop_text.view(-1, 1, 1, 1, 1) \
            - 0.7 * drop_image.view(-1, 1, 1, 1, 1) * x.pow(2)
    return pred_fn, calls


def test_guidance_scales() -> None:
    pred_fn, calls = _pred_with_calls()
    x, t = torch.randn(SHAPE), torch.tensor([10, 700])
    f, tr = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    cond, no_txt, uncond = pred_fn(x, t, f, f), pred_fn(x, t, tr, f), pred_fn(x, t, tr, tr)
    calls.clear()
    assert torch.allclose(guided_prediction(pred_fn, x, t, 1.0, 1.0), cond)
    assert calls == [2]  # scales 1: the plain conditional prediction, one forward
    calls.clear()
    got = guided_prediction(pred_fn, x, t, text_scale=5.0, image_scale=1.5)
    assert calls == [6]  # three variants in one batched forward
    expected = uncond + 1.5 * (no_txt - uncond) + 5.0 * (cond - no_txt)
    assert torch.allclose(got, expected, atol=1e-6)
    calls.clear()
    got = guided_prediction(pred_fn, x, t, text_scale=3.0, image_scale=1.0)
    assert calls == [4] and torch.allclose(got, no_txt + 3.0 * (cond - no_txt), atol=1e-6)
    got = guided_prediction(pred_fn, x, t, text_scale=1.0, image_scale=2.0)
    assert torch.allclose(got, uncond + 2.0 * (no_txt - uncond) + (cond - no_txt), atol=1e-6)

"""Frame-0 handling at sampling (keep the input frame / regenerate it), the per-frame guidance ramp, rescale."""

from __future__ import annotations

import pytest
import torch
from tinydiff import SHAPE, tiny_conditions, tiny_diffusion

from wantrain.diffusion.cond_aug import CondAug
from wantrain.diffusion.flow import FlowMatching
from wantrain.diffusion.guidance import frame_ramp, guided_prediction, rescale_guidance
from wantrain.diffusion.sampling import make_sampler, sample, sampling_options
from wantrain.diffusion.schedule import NoiseSchedule


def copy_frame0_ddpm(schedule: NoiseSchedule):
    """x0-prediction of a 'model' that makes every frame its estimate of frame 0: x_t[frame 0] / sqrt(a_t)."""
    def pred_fn(x, t, drop_text, drop_image):
        a = schedule.alphas_cumprod[t.long()].view(-1, 1, 1, 1, 1)
        return (x[:, :, :1] / a.sqrt()).expand_as(x)
    return pred_fn


def copy_frame0_flow(x, t, drop_text, drop_image):
    """Velocity of a flow 'model' whose x0 estimate of every frame is frame 0 of x_t."""
    sigma = (t / 1000).view(-1, 1, 1, 1, 1)
    return (x - x[:, :, :1].expand_as(x)) / sigma


@pytest.mark.parametrize("objective", ["ddpm", "flow"])
def test_keep_holds_frame0_and_the_clip_follows_it(objective):
    schedule = NoiseSchedule(prediction_type="sample") if objective == "ddpm" else FlowMatching()
    pred = copy_frame0_ddpm(schedule) if objective == "ddpm" else copy_frame0_flow
    scheduler = (lambda: make_sampler(schedule.config, "ddim", clip_sample=False)) if objective == "ddpm" \
        else (lambda: schedule.sampler("euler"))
    g = torch.Generator().manual_seed(0)
    known = torch.rand(2, 3, 1, 8, 8, generator=g) * 1.6 - 0.8
    noise = torch.randn(SHAPE, generator=g)
    run = dict(num_steps=10, noise=noise, model_timesteps=schedule.model_timesteps)
    kept = sample(pred, SHAPE, scheduler(), keep_first=known, renoise=schedule.add_noise, **run)
    free = sample(pred, SHAPE, scheduler(), **run)
    assert torch.equal(kept[:, :, :1], known)  # the input frame, exactly
    # the other frames were denoised around it (ddpm's copy estimate x_t / sqrt(a_t) keeps some noise at the last
    # step, t = 99: 0.28 mean; flow's: 0.001); regenerated, frame 0 and the rest come from the noise (0.9 / diverges)
    err, free_err = (kept[:, :, 1:] - known).abs().mean(), (free - known).abs().mean()
    assert (err < 0.35 and free_err > 1.0) if objective == "ddpm" else (err < 0.01 and free_err > 0.5)
    with pytest.raises(ValueError, match="renoise"):
        sample(pred, SHAPE, scheduler(), keep_first=known, **run)


def test_model_keeps_the_clean_input_frame_even_with_cond_aug():
    model = tiny_diffusion(NoiseSchedule(prediction_type="v_prediction", rescale_betas_zero_snr=True),
                           micro=("cond_aug",), cond_aug=CondAug())
    cond = tiny_conditions()
    opts = dict(num_steps=3, text_scale=2.0, cond_aug=0.05)
    kept = model.sample_from_seeds(cond, [1, 2], frame0="keep", **opts)
    regen = model.sample_from_seeds(cond, [1, 2], frame0="regenerate", **opts)
    assert torch.equal(kept[:, :, 0], cond.frames[:, :, 0])
    assert not torch.allclose(regen[:, :, 0], cond.frames[:, :, 0], atol=1e-2)
    assert not torch.allclose(kept[:, :, 1:], regen[:, :, 1:], atol=1e-4)  # the rest follows the kept frame


def _pred():
    def pred_fn(x, t, drop_text, drop_image):
        return torch.tanh(x) * (1 + t.view(-1, 1, 1, 1, 1) / 1000) + 0.3 * drop_text.view(-1, 1, 1, 1, 1) \
            - 0.7 * drop_image.view(-1, 1, 1, 1, 1) * x.pow(2)
    return pred_fn


def test_guidance_ramp_scales_each_frame():
    x, t = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)), torch.tensor([10, 700])
    assert frame_ramp(3.0, 1.0, 5).flatten().tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]  # SVD: 1 -> 3 over the clip
    got = guided_prediction(_pred(), x, t, text_scale=5.0, image_scale=2.0, ramp=1.0)
    n = SHAPE[2]
    for f in range(n):  # frame f is guided as with the scales ramp + (scale - ramp) * f / (T - 1)
        w = f / (n - 1)
        want = guided_prediction(_pred(), x, t, text_scale=1 + 4.0 * w, image_scale=1 + 1.0 * w)[:, :, f]
        assert torch.allclose(got[:, :, f], want, atol=1e-5)
    plain = guided_prediction(_pred(), x, t)
    assert torch.allclose(got[:, :, 0], plain[:, :, 0], atol=1e-6)  # ramp 1: frame 0 unguided


def test_guidance_rescale_matches_the_conditional_std():
    g = torch.Generator().manual_seed(0)
    cond, guided = torch.randn(SHAPE, generator=g), 3 * torch.randn(SHAPE, generator=g) + 1
    full = rescale_guidance(guided, cond, 1.0)
    assert torch.allclose(full.flatten(1).std(1), cond.flatten(1).std(1), rtol=1e-4)
    assert torch.equal(rescale_guidance(guided, cond, 0.0), guided)
    assert torch.allclose(rescale_guidance(guided, cond, 0.7), 0.7 * full + 0.3 * guided, atol=1e-6)
    x, t = torch.randn(SHAPE, generator=g), torch.tensor([10, 700])
    out = guided_prediction(_pred(), x, t, text_scale=7.0, rescale=1.0)
    cond_out = guided_prediction(_pred(), x, t)
    assert torch.allclose(out.flatten(1).std(1), cond_out.flatten(1).std(1), rtol=1e-4)


def test_sampling_options_check_frame0_and_rescale():
    opts = sampling_options({"frame0": "keep", "guidance_ramp": 1.0}, guidance_rescale=0.7)
    assert (opts["frame0"], opts["guidance_ramp"], opts["guidance_rescale"], opts["cond_aug"]) == ("keep", 1.0, 0.7,
                                                                                                  0.02)
    with pytest.raises(ValueError, match="frame0='first'"):
        sampling_options(frame0="first")
    with pytest.raises(ValueError, match="guidance_rescale=1.5"):
        sampling_options(guidance_rescale=1.5)

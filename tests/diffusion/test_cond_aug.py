"""cond_aug: noise on every copy of the conditioning frame (same noise), log-normal training levels, the level told to
the UNet as micro-conditioning in training and sampling, seeded per clip."""

from __future__ import annotations

import math

import pytest
import torch
from tinydiff import SHAPE, tiny_conditions, tiny_diffusion

from wantrain.diffusion.cond_aug import MICRO_SCALE, CondAug, first_frame_copies, noise_frames
from wantrain.diffusion.flow import FlowMatching
from wantrain.diffusion.schedule import NoiseSchedule


def test_noise_goes_on_every_copy_of_frame_zero_the_same_noise():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 1, 8, 8, generator=g)
    repeated = image.expand(-1, -1, 4, -1, -1)  # pixel space: the image on every frame
    padded = torch.cat([image, torch.full((2, 3, 3, 8, 8), -0.3)], 2)  # zero-padded latents (Wan2.1 I2V)
    levels = torch.tensor([0.0, 0.5])
    noisy = noise_frames(repeated, levels, torch.Generator().manual_seed(1))
    assert torch.equal(noisy[0], repeated[0])  # level 0: clean
    delta = noisy[1] - repeated[1]
    assert all(torch.equal(delta[:, i], delta[:, 0]) for i in range(4))  # the same noise on each copy
    assert abs(delta.std().item() / 0.5 - 1) < 0.2
    assert first_frame_copies(padded)[:, 0, :, 0, 0].tolist() == [[1, 0, 0, 0]] * 2
    noisy = noise_frames(padded, levels, torch.Generator().manual_seed(1))
    assert torch.equal(noisy[:, :, 1:], padded[:, :, 1:]) and not torch.equal(noisy[1, :, 0], padded[1, :, 0])


def test_augment_noises_the_frames_the_conditions_name():
    """`Conditions.image_frames` (from the space) decides which frames get the noise, not equality with frame 0."""
    model = tiny_diffusion(NoiseSchedule(prediction_type="v_prediction"), micro=("cond_aug",), cond_aug=CondAug())
    cond = tiny_conditions(torch.randn(SHAPE, generator=torch.Generator().manual_seed(4)))  # no two frames alike
    cond.image_frames = torch.tensor([True, True, True, False])
    noisy = model.augment(cond, torch.tensor([0.2, 0.2]), torch.Generator().manual_seed(5))
    assert torch.equal(noisy.image_frames, cond.image_frames) and torch.equal(noisy.repeat(2).image_frames,
                                                                              cond.image_frames)
    changed = (noisy.frames != cond.frames).flatten(3).any(-1).any(1)  # (B, T)
    assert changed.tolist() == [[True, True, True, False]] * 2


def test_training_levels_are_log_normal_clipped_and_seeded():
    aug = CondAug(log_mean=-3.0, log_std=0.5, max_level=0.1, p_clean=0.25)
    levels = aug.levels(4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(levels, aug.levels(4000, generator=torch.Generator().manual_seed(0)))
    assert abs((levels == 0).float().mean().item() - 0.25) < 0.03
    assert levels.max() <= 0.1 and abs(levels[levels > 0].median().item() / math.exp(-3.0) - 1) < 0.08
    with pytest.raises(ValueError, match="p_clean"):
        CondAug(p_clean=2.0)


def test_a_model_with_cond_aug_must_take_the_level_as_micro_conditioning():
    with pytest.raises(ValueError, match="micro_conditioning lacks 'cond_aug'"):
        tiny_diffusion(NoiseSchedule(prediction_type="v_prediction"), micro=("fps",), cond_aug=CondAug())


@pytest.mark.parametrize("schedule", [NoiseSchedule(prediction_type="v_prediction"), FlowMatching()])
def test_training_noises_the_condition_and_tells_the_level(schedule, capture_unet_inputs):
    model = tiny_diffusion(schedule, micro=("fps", "cond_aug"), cond_aug=CondAug(log_mean=-2.0, log_std=0.5))
    seen = capture_unet_inputs(model.unet)
    cond = tiny_conditions()
    cond.micro = {"fps": torch.tensor([8.0, 8.0])}
    x0 = torch.rand(SHAPE) * 2 - 1
    loss_a, _ = model.loss(x0, cond, generator=torch.Generator().manual_seed(3), dropout=False)
    loss_b, _ = model.loss(x0, cond, generator=torch.Generator().manual_seed(3), dropout=False)
    assert torch.equal(loss_a, loss_b)  # deterministic under a seed
    micro, concat = seen[0]["micro"], seen[0]["concat"]
    assert torch.equal(micro["fps"], cond.micro["fps"])  # other micro-conditioning kept
    levels = micro["cond_aug"] / MICRO_SCALE
    assert levels.shape == (2,) and (levels > 0.01).all() and (levels < 1).all() and levels[0] != levels[1]
    delta = concat[:, :3] - cond.frames  # the conditioning clip (mask channel aside)
    assert torch.allclose(delta.flatten(1).std(1), levels, rtol=0.3)
    # without cond_aug the same loss sees the clean frames and no level
    plain = tiny_diffusion(schedule, micro=("fps", "cond_aug"))
    seen_plain = capture_unet_inputs(plain.unet)
    plain.loss(x0, cond, generator=torch.Generator().manual_seed(3), dropout=False)
    assert torch.equal(seen_plain[0]["concat"][:, :3], cond.frames) and "cond_aug" not in seen_plain[0]["micro"]


def test_sampling_uses_the_given_level_seeded_per_clip(capture_unet_inputs):
    model = tiny_diffusion(NoiseSchedule(prediction_type="v_prediction"), micro=("cond_aug",), cond_aug=CondAug())
    seen = capture_unet_inputs(model.unet)
    cond = tiny_conditions()
    cond.micro = {"cond_aug": torch.zeros(2)}  # what BaseModel passes for an unset micro value
    opts = dict(num_steps=2)
    out = model.sample_from_seeds(cond, [7, 9], cond_aug=0.1, **opts)
    assert torch.allclose(seen[0]["micro"]["cond_aug"], torch.full((2,), 0.1 * MICRO_SCALE))
    assert abs((seen[0]["concat"][:, :3] - cond.frames).std().item() / 0.1 - 1) < 0.3
    one = tiny_conditions()
    one = type(one)(one.text[1:], one.text_mask[1:], one.image_tokens[1:], one.frames[1:], {"cond_aug": torch.zeros(1)})
    alone = model.sample_from_seeds(one, [9], cond_aug=0.1, **opts)
    assert torch.allclose(alone[0], out[1], atol=1e-5)  # a clip does not depend on its batch neighbours
    assert not torch.allclose(model.sample_from_seeds(cond, [7, 9], cond_aug=0.0, **opts), out, atol=1e-4)

"""The Lightning-free base model rebuilt from a checkpoint samples and scores exactly like the training module."""

from __future__ import annotations

import torch

from wantrain.evaluation.diffusion import bucket_losses
from wantrain.inference.base import BaseModel
from wantrain.inference.checkpoints import read_saved


def test_generate_equals_the_training_modules_sampler(module_and_ckpt):
    module, path = module_and_ckpt
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    settings = {k: module.sampling[k] for k in ("num_steps", "text_scale", "image_scale", "sampler")}
    expected = module.generate({"video": torch.zeros(1, 3, 8, 32, 32), "image": image, "caption": ["a red ball"]},
                               seed=7)
    base = BaseModel.from_saved(read_saved(path))  # EMA weights, like module.generate
    got = base.generate(image, ["a red ball"], [7], **settings)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    raw = BaseModel.from_saved(read_saved(path, use_ema=False)).generate(image, ["a red ball"], [7], **settings)
    assert (raw - expected).abs().max() > 1e-3


def test_bucket_losses_equal_the_validation_protocol(module_and_ckpt):
    module, path = module_and_ckpt
    torch.manual_seed(1)
    video = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    batch = {"video": video, "image": video[:, :, 0], "caption": ["a red ball", "two blue squares"]}
    base = BaseModel.from_saved(read_saved(path, use_ema=False))  # validation scores the raw weights
    got = bucket_losses(base, batch, batch_idx=3)  # (4, B)
    generator = torch.Generator().manual_seed(1000 + 3)
    cond = module.conditions(batch)
    with torch.no_grad():
        expected = torch.stack([module.model.loss(video, cond, t=torch.full((2,), 125 + 250 * i), generator=generator,
                                                  dropout=False)[0] for i in range(4)])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)

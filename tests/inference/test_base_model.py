"""The Lightning-free base model rebuilt from a checkpoint samples and scores exactly like the training module."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from wantrain.evaluation.diffusion import bucket_losses
from wantrain.inference.base import BaseModel
from wantrain.inference.checkpoints import read_saved


@pytest.fixture
def module_and_ckpt(compose, data_dir, tmp_path):
    """A VideoDiffusionModule from the real config, its EMA pulled away from the raw weights, saved as `fit` does."""
    cfg = compose(f"paths.data_dir={data_dir}", "trainer.max_steps=10", root=tmp_path)
    torch.manual_seed(0)
    module = instantiate(cfg.model)
    module.setup("fit")  # loads the frozen encoders
    with torch.no_grad():
        for p in module.ema.parameters():
            p.add_(0.02 * torch.randn_like(p))
    module.eval()
    path = tmp_path / "module.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 0,
                "wantrain_config": OmegaConf.to_container(cfg, resolve=True)}, path)
    return module, path


def test_generate_equals_the_training_modules_sampler(module_and_ckpt):
    module, path = module_and_ckpt
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    settings = {"num_steps": 2, "text_scale": 2.0, "image_scale": 1.5, "sampler": "dpm_solver"}
    module.sampling.update(settings)
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

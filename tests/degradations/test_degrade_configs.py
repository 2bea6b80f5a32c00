"""The degradations are on by default in every sr_stage* (Real-ESRGAN values) and in sr_tiny (blur and noise, what a
cascade stage is fed; the Real-ESRGAN recipe at CPU size one override away), and the module's LR pairs and USM targets
follow the config."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from wantrain.degradations.ops import downsample, usm_sharpen
from wantrain.degradations.pipeline import DegradeConfig
from wantrain.degradations.real import RealDegradeConfig


def _degrade_config(cfg) -> DegradeConfig:
    values = OmegaConf.to_container(cfg.model.degrade, resolve=True)
    return DegradeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@pytest.mark.parametrize("name", ["sr_stage1", "sr_stage2", "sr_stage3", "sr_stage4"])
def test_real_degradations_are_on_by_default(compose, name, tmp_path) -> None:
    cfg = compose(f"+experiment={name}", "data.train_shards=x", root=tmp_path)
    real = _degrade_config(cfg).real
    assert real == RealDegradeConfig()  # every value spelled out in the yaml is the anchors' (the dataclass defaults)
    off = compose(f"+experiment={name}", "data.train_shards=x", "model.degrade.real=null", root=tmp_path)
    assert _degrade_config(off).real is None


def test_tiny_stage_degrades_by_blur_and_noise_and_takes_the_real_recipe(compose, tmp_path) -> None:
    cfg = _degrade_config(compose("+experiment=sr_tiny", "data.train_shards=x", root=tmp_path))
    assert cfg.real is None and cfg.blur_prob == 0.5 and cfg.noise_prob == 0.5 and cfg.jpeg_prob == 0
    real = _degrade_config(compose("+experiment=sr_tiny", "data.train_shards=x",
                                   "model.degrade.real={prob: 0.5, kernel_size: [3, 9]}", root=tmp_path)).real
    assert dataclasses.replace(real, prob=1.0, kernel_size=(7, 21)) == RealDegradeConfig()  # the recipe, CPU size


def test_module_pairs_and_usm_targets(compose, tmp_path) -> None:
    cfg = compose("+experiment=sr_tiny", "model.generator.channels=8", "model.generator.num_blocks=1",
                  "model.discriminator.channels=8", "model.discriminator.kind=unet_temporal",
                  "model.content_loss.vgg_weight=0", "model.degrade.real={prob: 1.0, kernel_size: [3, 9]}",
                  "model.usm={weight: 0.5, sigma: 8.0, threshold: 10.0}", root=tmp_path)
    module = instantiate(cfg.model)
    hr = torch.rand(2, 3, 4, 64, 64) * 2 - 1
    lr, _, crop, target = module.make_pair(hr, True, torch.Generator().manual_seed(5))
    again, _, _, _ = module.make_pair(hr, True, torch.Generator().manual_seed(5))
    assert lr.shape == (2, 3, 4, 16, 16) and torch.equal(lr, again)
    assert (lr - downsample(crop)).abs().mean() > 0.02
    assert target.shape == crop.shape and not torch.equal(target, crop)
    assert torch.equal(target, usm_sharpen(crop, 0.5, 8.0, 10.0))
    assert module.discriminator(crop).shape == (2, 1, 4, 32, 32)


@pytest.mark.parametrize("name", ["sr_stage1", "sr_stage4"])
def test_stages_degrade_the_usm_sharpened_hr_as_real_esrgan(compose, name, tmp_path) -> None:
    """Real-ESRGAN (`train_realesrgan_x4plus.yml`: l1_gt_usm / percep_gt_usm true; `feed_data` blurs gt_usm) and
    RealBasicVSR (sharpened GT copied to the LQ): the LR is degraded from the unsharp-masked HR, which is also the
    content target; the plain HR goes to D, and validation degrades the plain HR."""
    cfg = compose(f"+experiment={name}", "data.train_shards=x", "model.generator.channels=8",
                  "model.generator.num_blocks=1", "model.discriminator.channels=8", "model.content_loss.vgg_weight=0",
                  "model.base_size=null", "model.degrade.real=null", "model.degrade.noise_aug_max=0", root=tmp_path)
    usm = OmegaConf.to_container(cfg.model.usm)
    assert usm == {"weight": 0.5, "sigma": 8.0, "threshold": 10.0, "degrade_sharpened": True}
    module = instantiate(cfg.model)  # plain area downsampling (real=null): the LR shows what it was made from
    hr = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    sharp = usm_sharpen(hr, 0.5, 8.0, 10.0)
    lr, _, plain, target = module.make_pair(hr, True, torch.Generator().manual_seed(0))
    assert torch.equal(plain, hr) and torch.equal(target, sharp) and torch.equal(lr, downsample(sharp))
    val_lr, _, _, _ = module.make_pair(hr, False, torch.Generator().manual_seed(0))
    assert torch.equal(val_lr, downsample(hr))
    module.hparams.usm = {**usm, "degrade_sharpened": False}
    assert torch.equal(module.make_pair(hr, True, torch.Generator().manual_seed(0))[0], downsample(hr))
    with pytest.raises(InstantiationException, match=r"unknown model.usm keys \['radius'\]"):
        instantiate(cfg.model, usm={**usm, "radius": 50})

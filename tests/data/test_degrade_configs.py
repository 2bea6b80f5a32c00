"""The degradations are on by default in every sr_stage* (Real-ESRGAN values) and in sr_tiny (CPU size), and the
module's LR pairs and USM targets follow the config."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from wantrain.data.degrade import DegradeConfig, downsample
from wantrain.data.degrade_real import RealDegradeConfig


def _degrade_config(cfg) -> DegradeConfig:
    values = OmegaConf.to_container(cfg.model.degrade, resolve=True)
    return DegradeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@pytest.mark.parametrize("name", ["sr_stage1", "sr_stage2", "sr_stage3", "sr_stage4", "sr_tiny"])
def test_real_degradations_are_on_by_default(compose, name, tmp_path) -> None:
    cfg = compose(f"+experiment={name}", "data.train_shards=x", root=tmp_path)
    real = _degrade_config(cfg).real
    assert isinstance(real, RealDegradeConfig)
    if name == "sr_tiny":  # the same recipe at CPU size
        assert real.prob == 0.5 and real.kernel_size == (3, 9)
        assert dataclasses.replace(real, prob=1.0, kernel_size=(7, 21)) == RealDegradeConfig()
    else:  # every value spelled out in the yaml is the anchors' (the dataclass defaults)
        assert real == RealDegradeConfig()
    off = compose(f"+experiment={name}", "data.train_shards=x", "model.degrade.real=null", root=tmp_path)
    assert _degrade_config(off).real is None


def test_module_pairs_and_usm_targets(compose, tmp_path) -> None:
    cfg = compose("+experiment=sr_tiny", "model.generator.channels=8", "model.generator.num_blocks=1",
                  "model.discriminator.channels=8", "model.discriminator.kind=unet_temporal",
                  "model.content_loss.vgg_weight=0", "model.degrade.real.prob=1.0",
                  "model.usm={weight: 0.5, sigma: 8.0, threshold: 10.0}", root=tmp_path)
    module = instantiate(cfg.model)
    hr = torch.rand(2, 3, 4, 64, 64) * 2 - 1
    lr, _, crop = module.make_pair(hr, True, torch.Generator().manual_seed(5))
    again, _, _ = module.make_pair(hr, True, torch.Generator().manual_seed(5))
    assert lr.shape == (2, 3, 4, 16, 16) and torch.equal(lr, again)
    assert (lr - downsample(crop)).abs().mean() > 0.02
    target = module.content_target(crop)
    assert target.shape == crop.shape and not torch.equal(target, crop)
    assert module.discriminator(crop).shape == (2, 1, 4, 32, 32)

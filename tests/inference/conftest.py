"""A VideoDiffusionModule saved as `fit` saves it, shared by the inference tests."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

SAMPLING = ["model.sampling.num_steps=2", "model.sampling.text_scale=2.0", "model.sampling.image_scale=1.5"]
SAMPLERS = {"i2v_tiny": "dpm_solver", "i2v_flow_tiny": "unipc"}  # an objective each, a multistep sampler each


@pytest.fixture(params=sorted(SAMPLERS))
def module_and_ckpt(request, compose, data_dir, tmp_path):
    """A VideoDiffusionModule from the real config (DDPM and flow), its EMA pulled away from the raw weights,
    saved as `fit` does."""
    cfg = compose(f"+experiment={request.param}", f"paths.data_dir={data_dir}", "trainer.max_steps=10", *SAMPLING,
                  f"model.sampling.sampler={SAMPLERS[request.param]}", root=tmp_path)
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

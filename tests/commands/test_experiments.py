"""Every experiment composes and instantiates its data, model and trainer; a bare `fit` is `i2v_tiny`. The full-size
diffusion experiments build their model on the meta device: the test is about the config (every `_target_` and
argument accepted), not weights, and i2v_64's 650M-parameter UNet takes half a minute to initialise on a CPU. The
upsampler stages are built for real: they load VGG19 from $TORCH_HOME (small at their default width anyway)."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from wantrain.config_tree import list_experiments

ON_META = {"i2v_64", "i2v_wan_latent", "wan21_i2v_14b_lora", "wan21_t2v_1.3b", "wan22_ti2v_5b", "wan22_i2v_a14b_lora"}


def test_bare_fit_composes_the_i2v_tiny_experiment(compose, tmp_path):
    bare = compose(root=tmp_path)
    tiny = compose("+experiment=i2v_tiny", root=tmp_path)
    assert OmegaConf.to_container(bare, resolve=True) == OmegaConf.to_container(tiny, resolve=True)


@pytest.mark.parametrize("name", list_experiments())
def test_experiment_instantiates_data_model_and_trainer(compose, name, tmp_path, torch_home, monkeypatch, request):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))  # the upsampler stages load VGG19 from there
    # wan_tiny_i2v starts from the tiny diffusers folder; the full-size Wan experiments (init_from unset) build
    # their released architecture, on meta
    wan = [f"init_from={request.getfixturevalue('wan_dir')}"] if name == "wan_tiny_i2v" else []
    cfg = compose(f"+experiment={name}", *wan, root=tmp_path)
    if cfg.trainer.get("accelerator") != "cpu" or cfg.trainer.get("strategy") not in (None, "auto"):
        cfg = compose(f"+experiment={name}", *wan, *_cpu_overrides(cfg), root=tmp_path)
    if OmegaConf.is_missing(cfg.data, "train_shards"):
        cfg.data.train_shards = str(tmp_path / "shard-{00000..00001}.tar")  # a user's shards; not opened here
    datamodule = instantiate(cfg.data)
    with torch.device("meta") if name in ON_META else nullcontext():  # shapes only: no memory, no init
        model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert datamodule.batch_size >= 1
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0
    assert all(p.is_meta == (name in ON_META) for p in model.parameters() if p.requires_grad)
    assert trainer.max_steps == cfg.trainer.max_steps


def _cpu_overrides(cfg) -> list[str]:
    keys = set(cfg.trainer)
    out = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true"]
    out.append("trainer.strategy=auto" if "strategy" in keys else "+trainer.strategy=auto")
    if "num_nodes" in keys:
        out.append("trainer.num_nodes=1")
    return out

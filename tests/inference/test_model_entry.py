"""Checkpoints describe their model themselves (`wantrain_model`: kind, network config, weight prefixes), and
inference rebuilds the network from that entry alone; checkpoints written before it are read from their run config."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from wantrain.errors import WantrainError
from wantrain.inference.cascade import SRStage
from wantrain.inference.checkpoints import ENTRY_FORMAT, MODEL_ENTRY, UPSAMPLER, read_saved, upsampler_config
from wantrain.nets.upsampler import UpsampleStage
from wantrain.training.callbacks import RunConfigInCheckpoint


def test_fit_writes_the_entry_and_inference_rebuilds_from_it(compose, tmp_path):
    """The checkpoint callback writes the entry of a real module; it loads weights_only and gives the EMA generator."""
    cfg = compose("+experiment=sr_tiny", "model.generator.channels=8", "model.generator.num_blocks=1",
                  "model.discriminator.channels=8", "model.content_loss.vgg_weight=0", root=tmp_path)
    module = instantiate(cfg.model)
    with torch.no_grad():
        for p in module.ema.module.parameters():
            p.add_(0.1)
    checkpoint = {"state_dict": module.state_dict(), "global_step": 3}
    RunConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True)).on_save_checkpoint(None, module, checkpoint)
    torch.save(checkpoint, tmp_path / "fit.ckpt")
    entry = torch.load(tmp_path / "fit.ckpt", weights_only=True)[MODEL_ENTRY]
    assert (entry["format"], entry["kind"], entry["weights"]) == (
        ENTRY_FORMAT, UPSAMPLER, {"ema": "ema.module.", "raw": "generator."})
    stage = SRStage.from_saved(read_saved(tmp_path / "fit.ckpt"))
    assert all(torch.equal(a, b) for a, b in zip(stage.net.state_dict().values(),
                                                 module.ema.module.state_dict().values()))


def test_inference_reads_the_entry_not_trainings_names(tmp_path):
    """An entry alone (no run config, weights under prefixes training never used) is enough; a newer format is
    refused in one line."""
    torch.manual_seed(0)
    net = UpsampleStage(channels=8, num_blocks=1)
    entry = {"format": ENTRY_FORMAT, "kind": UPSAMPLER, "lora": None,
             "config": upsampler_config(net.config_node(), 2, (8, 8)), "weights": {"ema": "avg.", "raw": "live."}}
    state = {**{f"avg.{k}": v for k, v in net.state_dict().items()},
             **{f"live.{k}": v + 1 for k, v in net.state_dict().items()}}
    torch.save({"state_dict": state, MODEL_ENTRY: entry, "global_step": 1}, tmp_path / "a.ckpt")
    stage = SRStage.from_saved(read_saved(tmp_path / "a.ckpt"))
    assert (stage.name, stage.lr_size) == ("sr_stage2", (8, 8))
    assert torch.equal(stage.net.conv_in.weight, net.conv_in.weight)
    raw = read_saved(tmp_path / "a.ckpt", use_ema=False)
    assert torch.equal(raw.state["conv_in.weight"], net.conv_in.weight + 1) and raw.run is None
    torch.save({"state_dict": state, MODEL_ENTRY: {**entry, "format": ENTRY_FORMAT + 1}}, tmp_path / "new.ckpt")
    with pytest.raises(WantrainError, match=f"entry of format {ENTRY_FORMAT + 1}; this wantrain reads formats up to"):
        read_saved(tmp_path / "new.ckpt")

"""Weight decay without norms, biases and embeddings: which parameters land where, and what one AdamW step does."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from wantrain.errors import WantrainError
from wantrain.nets.fusion import ConditionFusion
from wantrain.nets.unet import SpatioTemporalUNet
from wantrain.training.param_groups import decay_groups, split_decay


def _nets() -> torch.nn.Module:
    torch.manual_seed(0)
    unet = SpatioTemporalUNet(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,),
                              head_dim=8, context_dim=16, pooled_dim=16, norm_groups=4, micro_conditioning=("fps",),
                              temporal_positions="relative_bias")
    return torch.nn.ModuleDict({"unet": unet, "fusion": ConditionFusion(text_dim=8, image_dim=8, width=16)})


def test_norms_biases_and_embeddings_get_no_decay():
    nets = _nets()
    decay, no_decay = split_decay(nets, ["bias", "norm", "embedding"])
    names = dict(nets.named_parameters())
    assert sorted(decay + no_decay) == sorted(names)  # every trainable parameter, once
    assert all(names[n].ndim >= 2 for n in decay)  # only matrices and kernels decay
    assert all(n.endswith(".weight") for n in decay)
    for must in ("fusion.null_text", "fusion.null_image", "unet.conv_in.bias", "unet.norm_out.weight"):
        assert must in no_decay
    assert any("relative_bias" in n for n in no_decay) and any(".norm1.weight" in n for n in no_decay)
    only_bias = split_decay(nets, ["bias"])[1]
    assert all(n.endswith("bias") for n in only_bias) and "unet.norm_out.weight" not in only_bias
    frozen = next(iter(nets.parameters()))
    frozen.requires_grad_(False)
    assert sum(map(len, split_decay(nets, ["bias"]))) == len(names) - 1  # frozen parameters are left out
    with pytest.raises(ValueError, match="weight_decay_exclude has \\['gain'\\]"):
        split_decay(nets, ["gain"])


def test_one_adamw_step_decays_weights_only():
    nets = _nets()
    opt = torch.optim.AdamW(decay_groups(nets, ["bias", "norm", "embedding"]), lr=0.1, weight_decay=0.5)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]
    before = {n: p.detach().clone() for n, p in nets.named_parameters()}
    for p in nets.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only decay moves a parameter
    opt.step()
    decay, no_decay = split_decay(nets, ["bias", "norm", "embedding"])
    after = dict(nets.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in no_decay)
    w = "unet.conv_in.weight"
    assert w in decay and torch.allclose(after[w], before[w] * (1 - 0.1 * 0.5))


def test_the_module_builds_its_optimizer_from_the_groups(compose, tmp_path):
    cfg = compose("model.weight_decay_exclude=[bias,norm,embedding]", root=tmp_path)
    module = instantiate(cfg.model)
    opt = module.configure_optimizers()["optimizer"]
    assert [g["weight_decay"] for g in opt.param_groups] == [cfg.model.optimizer.weight_decay, 0.0]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(module.model.parameters()))
    module.hparams.weight_decay_exclude = ["gain"]
    with pytest.raises(WantrainError, match="weight_decay_exclude has \\['gain'\\]"):
        module.configure_optimizers()

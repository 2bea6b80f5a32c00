"""Trainable groups by name pattern, and the EMA that averages only the trainable parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from wantrain.nets.trainable import name_matches, set_trainable
from wantrain.training.ema import TrainableEMA


def test_patterns_match_name_parts_and_globs() -> None:
    assert name_matches("unet.down.2.temporal.attention.to_q.weight", ["temporal"])
    assert name_matches("unet.mid.0.spatial.self_attention.to_q.lora_A.default.weight", ["lora"])
    assert name_matches("fusion.blocks.0.weight", ["temporal", "fusion"])
    assert name_matches("unet.up.1.res.conv1.weight", ["unet.up.*"])
    assert not name_matches("unet.down.0.res.conv1.weight", ["temporal", "lora", "unet.up.*"])
    assert not name_matches("unet.temporalish.weight", ["temporal"])


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_set_trainable_freezes_the_rest_and_refuses_unknown_patterns() -> None:
    model = net()
    assert set_trainable(model, ["2"]) == (10, 38)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["2.weight", "2.bias"]
    assert set_trainable(model, ["-0"]) == (18, 38)  # all but layer 0
    assert set_trainable(model, ["1", "2", "-bias"]) == (12, 38)
    assert set_trainable(model, None) == (38, 38)
    with pytest.raises(ValueError, match=r"patterns \['temporal'\] match no parameter"):
        set_trainable(model, ["temporal", "0"])


def step(model: nn.Module, ema: nn.Module, seed: int) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
        model[1].running_mean.add_(1.0)
    ema.update_parameters(model)


def test_ema_of_trainable_parameters() -> None:
    """All trainable: exactly AveragedModel's EMA. Partly frozen: frozen copies untouched, the rest averaged."""
    model, reference = net(), net()
    ema, ref = TrainableEMA(model, 0.9), AveragedModel(reference, multi_avg_fn=get_ema_multi_avg_fn(0.9),
                                                       use_buffers=True)
    for i in range(3):
        step(model, ema, i)
        step(reference, ref, i)
    assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), ref.state_dict().values()))

    model = net()
    set_trainable(model, ["2"])
    ema = TrainableEMA(model, 0.9)
    assert TrainableEMA.averaged_names(model) == ["2.weight", "2.bias", "1.running_mean", "1.running_var",
                                                  "1.num_batches_tracked"]
    frozen = {n: p.clone() for n, p in ema.module.named_parameters() if not n.startswith("2.")}
    with torch.no_grad():
        model[0].weight.add_(1.0)  # a frozen weight changing anyway is not picked up
    for i in range(3):
        step(model, ema, i)
    assert all(torch.equal(p, frozen[n]) for n, p in ema.module.named_parameters() if n in frozen)
    assert not torch.equal(ema.module[2].weight, model[2].weight)  # averaged, lagging the live weights
    # buffers are averaged too: live running_mean 1, 2, 3 -> EMA 1 (copied), 1 + 0.1 * (2 - 1), 1.1 + 0.1 * (3 - 1.1)
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((4,), 1.29))

"""model.optimizer._target_=wantrain.training.optimizers.adamw_8bit: bitsandbytes' AdamW8bit with AdamW's keys."""

from __future__ import annotations

import sys

import pytest
import torch

from wantrain.errors import WantrainError
from wantrain.training.optimizers import adamw_8bit


def test_without_bitsandbytes_it_is_one_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes.optim", None)  # as when it is not installed
    with pytest.raises(WantrainError, match=r"pip install 'wantrain\[lowmem\]'"):
        adamw_8bit([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)


def test_8bit_moments_follow_adamw() -> None:
    """Moments of a >= 4096-element weight in uint8; three steps stay within 1e-4 of torch's AdamW (measured 4.6e-5
    with bitsandbytes 0.50 on the CPU)."""
    pytest.importorskip("bitsandbytes", reason="the lowmem extra (bitsandbytes) is not installed")
    torch.manual_seed(0)
    nets = [torch.nn.Linear(64, 64) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    start = nets[0].weight.detach().clone()
    optimizers = [adamw_8bit(nets[0].parameters(), lr=1e-3, betas=[0.9, 0.999], weight_decay=0.01),
                  torch.optim.AdamW(nets[1].parameters(), lr=1e-3, weight_decay=0.01)]
    for _ in range(3):
        for net, opt in zip(nets, optimizers):
            opt.zero_grad()
            net(torch.ones(4, 64)).square().mean().backward()
            opt.step()
    assert optimizers[0].state[nets[0].weight]["state1"].dtype == torch.uint8
    assert (nets[0].weight - start).abs().max() > 1e-3  # it moved
    assert (nets[0].weight - nets[1].weight).abs().max() < 1e-4

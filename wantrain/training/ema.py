"""The EMA of a network that averages only its trainable parameters (trainable groups, LoRA)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a view: in-place updates reach it), or the tensor itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


class TrainableEMA(AveragedModel):
    """`AveragedModel` with the EMA rule, averaging only the parameters the live network trains (and its buffers):
    frozen ones are never averaged and keep the copy taken at the start (they do not change). With everything
    trainable it is exactly `AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)`:
    same keys (`module.*`, `n_averaged`), same values."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        super().__init__(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.requires_grad_(False)

    @staticmethod
    def averaged_names(net: nn.Module) -> list[str]:
        """Names of the tensors of `net` the EMA averages: its trainable parameters and its buffers."""
        return [n for n, p in net.named_parameters() if p.requires_grad] + [n for n, _ in net.named_buffers()]

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One EMA step (the first one copies) over the trainable parameters and buffers of `model`. FSDP2 shards
        the EMA like the network, so each rank updates its own shards (no communication)."""
        mine = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        live = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        names = self.averaged_names(model)
        ema = [local(mine[n].detach()) for n in names]
        current = [local(live[n].detach()).to(e.device) for n, e in zip(names, ema)]
        if self.n_averaged == 0:
            for e, c in zip(ema, current):
                e.copy_(c)
        else:
            for (device, _), ([e_list, c_list], _) in _group_tensors_by_device_and_dtype([ema, current]).items():
                self.multi_avg_fn(e_list, c_list, self.n_averaged.to(device))
        self.n_averaged += 1

    @torch.no_grad()
    def follow(self, net: nn.Module, step: int, start: int, copy_before_start: bool) -> None:
        """The EMA's move after an optimizer step of `net` (`step`: steps or batches done): from `start` on, one EMA
        step; before it, a plain copy of `net` (`copy_before_start`) or nothing (the EMA keeps the weights it was
        built with, and its first step at `start` copies)."""
        if step < start:
            if not copy_before_start:
                return
            self.n_averaged.zero_()  # AveragedModel copies the weights when n_averaged == 0
        self.update_parameters(net)

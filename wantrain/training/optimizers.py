"""Optimizers that are options, not defaults: bitsandbytes' 8-bit AdamW for one-GPU fine-tunes of large models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from wantrain.errors import WantrainError


def adamw_8bit(params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float,
               betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
               ) -> torch.optim.Optimizer:
    """AdamW with block-wise 8-bit moments (bitsandbytes `AdamW8bit`: 2 bytes of state per parameter instead of 8;
    tensors under 4096 elements keep fp32 states). `model.optimizer._target_=wantrain.training.optimizers.adamw_8bit`
    takes the same lr / betas / weight_decay keys as torch.optim.AdamW."""
    try:
        from bitsandbytes.optim import AdamW8bit
    except ImportError:
        raise WantrainError("model.optimizer: 8-bit AdamW needs bitsandbytes: pip install 'wantrain[lowmem]' (or "
                            "bitsandbytes), or keep torch.optim.AdamW") from None
    return AdamW8bit(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

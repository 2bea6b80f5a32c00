"""Optimizer parameter groups: weight decay on weight matrices / kernels only, not on norms, biases and embeddings.

The GPT-2 / minGPT rule (also timm's and nanoGPT's): decaying a norm's gain or a bias pulls it towards 0, which
changes what the layer computes rather than regularising it; learned tokens and embeddings are looked up, not
multiplied, so decay only shrinks them. Everything here is plain PyTorch (no Lightning).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

EXCLUDABLE = ("bias", "norm", "embedding")
NORMS = (nn.GroupNorm, nn.LayerNorm, nn.RMSNorm, _NormBase)


def param_kinds(module: nn.Module, name: str) -> set[str]:
    """Which of EXCLUDABLE the parameter `name` owned directly by `module` is."""
    kinds = set()
    if name == "bias":
        kinds.add("bias")
    if isinstance(module, NORMS) or type(module).__name__.endswith("Norm"):
        kinds.add("norm")
    elif isinstance(module, nn.Embedding) or not isinstance(module, (nn.Linear, _ConvNd)):
        kinds.add("embedding")  # lookup tables and bare learned tokens (e.g. fusion.null_text, null_kv)
    return kinds


def split_decay(model: nn.Module, exclude: Iterable[str]) -> tuple[list[str], list[str]]:
    """Names of the trainable parameters (decayed, not decayed) when the kinds in `exclude` get no weight decay."""
    exclude = {str(e) for e in exclude}
    unknown = exclude - set(EXCLUDABLE)
    if unknown:
        raise ValueError(f"model.weight_decay_exclude has {sorted(unknown)}: use any of {list(EXCLUDABLE)}")
    decay, no_decay = [], []
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                full = f"{module_name}.{name}" if module_name else name
                (no_decay if param_kinds(module, name) & exclude else decay).append(full)
    return decay, no_decay


def decay_groups(model: nn.Module, exclude: Iterable[str]) -> list[dict[str, Any]]:
    """Optimizer groups of `model`'s trainable parameters: decayed (the optimizer's weight_decay) and excluded
    (weight_decay 0); empty groups left out."""
    decay, no_decay = split_decay(model, exclude)
    params = dict(model.named_parameters())
    groups = [{"params": [params[n] for n in decay]}, {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]

"""Module classes named in YAML, for FSDP's `auto_wrap_policy` and `activation_checkpointing_policy`."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from torch import nn


def module_classes(names: Iterable[str]) -> set[type[nn.Module]]:
    """The classes at dotted paths like `wantrain.nets.unet.UNetBlock` (a clear error for a wrong path)."""
    out: set[type[nn.Module]] = set()
    for name in names:
        module_name, _, attr = str(name).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"cannot import module class {name!r}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"{name!r} is not a torch.nn.Module class")
        out.add(cls)
    return out

"""The one way to freeze a network: eval mode, no gradients."""

from __future__ import annotations

from typing import TypeVar

from torch import nn

NetT = TypeVar("NetT", bound=nn.Module)


def freeze(net: NetT) -> NetT:
    """Put `net` in eval mode with `requires_grad=False` on every parameter and return it."""
    net.eval()
    net.requires_grad_(False)
    return net

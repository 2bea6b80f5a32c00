"""Fixtures of the diffusion-core tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def capture_unet_inputs():
    """Register a hook on a UNet that records the keyword inputs (concat, micro) of each forward."""
    def attach(unet: torch.nn.Module) -> list[dict]:
        seen: list[dict] = []
        unet.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True)
        return seen
    return attach

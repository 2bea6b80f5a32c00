"""LoRA on the UNet through peft: attention projections and convs, merge == unmerged, adapters-only file round trip."""

from __future__ import annotations

import pytest
import torch
from test_unet import inputs, perturb, tiny_unet

from wantrain.nets.lora import (
    add_lora,
    has_lora,
    load_lora_state,
    lora_settings,
    lora_state_dict,
    merge_lora,
    read_lora,
    save_lora,
)

TARGETS = ["to_q", "to_k", "to_v", "to_out", "conv1", "conv2"]


def adapted(seed: int = 0) -> torch.nn.Module:
    """A tiny UNet with trained-looking weights and LoRA (rank 2) on attention and conv layers, adapters non-zero."""
    unet = tiny_unet().eval()
    perturb(unet, temporal=False)
    add_lora(unet, lora_settings(2, alpha=4, target_modules=TARGETS))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".lora_" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return unet


def test_lora_on_convs_merges_and_round_trips(tmp_path) -> None:
    unet = adapted()
    names = [n for n, _ in unet.named_parameters() if ".lora_" in n]
    assert any(".conv1.lora_A." in n for n in names) and any(".to_out.lora_B." in n for n in names)
    x = inputs()
    with torch.no_grad():
        out = unet(*x)
        adapters = lora_state_dict(unet)
        path = save_lora(adapters, lora_settings(2, alpha=4, target_modules=TARGETS), tmp_path / "lora.safetensors")
        merge_lora(unet)
        assert not has_lora(unet) and all("base_layer" not in n for n, _ in unet.named_parameters())
        torch.testing.assert_close(unet(*x), out, rtol=1e-5, atol=1e-5)  # merged == unmerged (fp32 sums reordered)

        settings, state = read_lora(path)
        other = adapted(seed=1)  # same base, other adapters
        assert settings["target_modules"] == TARGETS and (other(*x) - out).abs().max() > 1e-3
        load_lora_state(other, state)
        torch.testing.assert_close(other(*x), out, rtol=0, atol=1e-6)
        with pytest.raises(ValueError, match="1 missing"):
            load_lora_state(other, dict(list(state.items())[1:]))


def test_bad_lora_settings() -> None:
    with pytest.raises(ValueError, match="positive rank"):
        lora_settings(0)
    with pytest.raises(ValueError, match="target_modules"):
        add_lora(tiny_unet(), lora_settings(2, target_modules=["no_such_layer"]))

"""LoRA files of the Wan backbone in the formats its users load: diffusers' (`transformer.blocks.N.attn1.to_q.lora_A
.weight`, what `pipe.load_lora_weights` reads) and the original Wan names that ComfyUI and musubi-tuner use
(`diffusion_model.blocks.N.self_attn.q.lora_down.weight` / `lora_up.weight` / `alpha`); and reading any of them
(plus musubi-tuner's `lora_unet_blocks_N_...` and DiffSynth-Studio's bare `blocks.N...lora_A.default`) to merge into
weights.

The name table is the inverse of diffusers' `_convert_non_diffusers_wan_lora_to_diffusers`
(loaders/lora_conversion_utils.py), which is also what reads our original-name files back in the tests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

# diffusers module path inside a Wan block -> the original Wan (ComfyUI) module path
DIFFUSERS_TO_ORIGINAL = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}
# The LoRA targets of the Wan recipes (finetrainers' and musubi-tuner's Wan LoRA: every attention projection of
# the self-, text- and image-cross-attention, and the FFN): module-name suffixes for peft
WAN_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj", "ffn.net.0.proj", "ffn.net.2")
COMFYUI_FILE = "wan_lora_comfyui.safetensors"  # beside pytorch_lora_weights.safetensors in `export_lora`'s folder
_MUSUBI_MODULE = re.compile(r"^lora_unet_blocks_(\d+)_(self_attn|cross_attn|ffn)_(q|k|v|o|k_img|v_img|0|2)$")
_BLOCK_KEY = re.compile(r"^transformer\.blocks\.(\d+)\.(.+)\.lora_([AB])\.weight$")


def to_original_names(state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """Diffusers-named adapters (`transformer.blocks.N.<module>.lora_A/B.weight`) -> the original Wan names ComfyUI
    loads (`diffusion_model.blocks.N.<module>.lora_down/lora_up.weight` + `.alpha`); ValueError for a module the
    original model has no name for."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match is None or match.group(2) not in DIFFUSERS_TO_ORIGINAL:
            raise ValueError(f"LoRA key {key} has no original Wan name (ComfyUI): train LoRA on the blocks' "
                             f"attention and FFN ({', '.join(WAN_LORA_TARGETS)})")
        block, module, side = match.groups()
        name = f"diffusion_model.blocks.{block}.{DIFFUSERS_TO_ORIGINAL[module]}"
        out[f"{name}.{'lora_down' if side == 'A' else 'lora_up'}.weight"] = value.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def save_original_wan_lora(adapters: dict[str, torch.Tensor], settings: dict[str, Any], path: str | Path) -> Path:
    """Write adapters (diffusers names, from `lora_state_dict` of a `WanDenoiser`) in the original Wan names."""
    from wantrain.io.weights import save_safetensors

    path = Path(path)
    save_safetensors(to_original_names(adapters, settings["alpha"]), path, metadata={"format": "pt"})
    return path


def read_wan_lora(path: str | Path) -> dict[str, torch.Tensor]:
    """A Wan LoRA file in any common format -> diffusers-named pairs (`transformer.<module>.lora_A/B.weight`) with
    the alpha / rank scale folded into lora_A/B (diffusers' converters do that), so W' = W + B @ A."""
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers
    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

    from wantrain.io.weights import load_safetensors

    state = load_safetensors(path, "LoRA file", "pass a LoRA .safetensors (diffusers, ComfyUI, musubi-tuner or "
                                                "DiffSynth-Studio keys)")
    scale = _diffusers_scale(path)
    if any(k.startswith("blocks.") for k in state):  # DiffSynth-Studio: original names, no prefix, peft's `.default`
        state = _convert_non_diffusers_wan_lora_to_diffusers(
            {f"diffusion_model.{k.replace('.default.', '.')}": v for k, v in state.items()})
    elif any(k.startswith("lora_unet_") for k in state):  # musubi-tuner: the original names with underscores
        state = _convert_non_diffusers_wan_lora_to_diffusers({_musubi_to_original(k): v for k, v in state.items()})
    else:  # diffusers' own loader knows transformer.* and diffusion_model.*
        state = WanLoraLoaderMixin.lora_state_dict(state)
        state = state[0] if isinstance(state, tuple) else state
    pairs = {k if k.startswith("transformer.") else f"transformer.{k}": v * scale if ".lora_B." in k else v
             for k, v in state.items()}
    if not pairs or any(not re.search(r"\.lora_[AB]\.weight$", k) for k in pairs):
        odd = next((k for k in pairs if not re.search(r"\.lora_[AB]\.weight$", k)), "no keys")
        raise ValueError(f"{path} is not a Wan LoRA file this reader knows ({odd}); expected lora_A/lora_B or "
                         "lora_down/lora_up pairs")
    return pairs


def _musubi_to_original(key: str) -> str:
    """`lora_unet_blocks_3_cross_attn_k_img.lora_down.weight` -> `diffusion_model.blocks.3.cross_attn.k_img.lora_down
    .weight` (diffusers' own musubi converter needs every module of every block; LoRAs on some layers exist)."""
    module, _, leaf = key.partition(".")
    match = _MUSUBI_MODULE.match(module)
    if match is None:
        raise ValueError(f"LoRA key {key} is not a musubi-tuner Wan block key (lora_unet_blocks_N_self_attn_q, ...)")
    block, part, name = match.groups()
    return f"diffusion_model.blocks.{block}.{part}.{name}.{leaf}"


def _diffusers_scale(path: str | Path) -> float:
    """alpha / rank from diffusers' `lora_adapter_metadata` (files diffusers or wantrain wrote); 1.0 without it."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = (handle.metadata() or {}).get("lora_adapter_metadata")
    if not meta:
        return 1.0
    config = json.loads(meta)
    rank, alpha = config.get("transformer.r"), config.get("transformer.lora_alpha")
    return float(alpha) / float(rank) if rank and alpha else 1.0


@torch.no_grad()
def merge_wan_lora(transformer: nn.Module, pairs: dict[str, torch.Tensor], prefix: str = "transformer.") -> int:
    """Add B @ A of every pair (from `read_wan_lora`) to its linear layer's weight in place; -> layers changed.
    ValueError naming the first pair that fits no layer of `transformer`."""
    changed = 0
    for key in sorted(k for k in pairs if k.endswith(".lora_A.weight")):
        module_name = key[len(prefix):-len(".lora_A.weight")]
        down, up = pairs[key], pairs.get(key.replace(".lora_A.", ".lora_B."))
        try:
            layer = transformer.get_submodule(module_name)
        except AttributeError:
            layer = None
        layer = getattr(layer, "base_layer", layer)  # a peft-wrapped layer: its base weight
        if up is None or not isinstance(layer, nn.Linear) or \
                tuple(layer.weight.shape) != (up.shape[0], down.shape[1]):
            raise ValueError(f"LoRA pair {module_name} fits no linear layer of this Wan transformer (another model "
                             "size or architecture?)")
        layer.weight += (up.float() @ down.float()).to(layer.weight.dtype)
        changed += 1
    return changed

"""Wan LoRA files in the formats users have: the same adapters written with diffusers' names (and its adapter
metadata), the original Wan names ComfyUI loads, musubi-tuner's and DiffSynth-Studio's, each merged by `init_lora`
into the same weights: W + alpha / rank * B @ A."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from wantrain.errors import WantrainError
from wantrain.io.weights import save_safetensors
from wantrain.nets.lora import lora_settings, save_lora
from wantrain.nets.wan import WanDenoiser
from wantrain.nets.wan_lora import merge_wan_lora, read_wan_lora, to_original_names

RANK, ALPHA = 4, 8.0
MODULES = ["blocks.0.attn1.to_q", "blocks.1.attn2.to_v", "blocks.0.attn2.add_k_proj", "blocks.0.attn2.add_v_proj",
           "blocks.1.ffn.net.0.proj"]  # diffusers reads image-attention LoRA only with both k_img and v_img


def adapters(net: WanDenoiser) -> dict[str, torch.Tensor]:
    """Random pairs in diffusers' names for a few layers of every kind (self, text and image attention, FFN)."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for name in MODULES:
        layer = net.transformer.get_submodule(name)
        out[f"transformer.{name}.lora_A.weight"] = torch.randn(RANK, layer.in_features, generator=g)
        out[f"transformer.{name}.lora_B.weight"] = torch.randn(layer.out_features, RANK, generator=g)
    return out


def write_formats(pairs: dict[str, torch.Tensor], folder) -> dict[str, object]:
    """The same adapters in four files: diffusers (wantrain's export), ComfyUI, musubi-tuner, DiffSynth-Studio."""
    files = {"diffusers": save_lora(pairs, lora_settings(RANK, ALPHA, target_modules=["to_q"]),
                                    folder / "diffusers" / "pytorch_lora_weights.safetensors")}
    comfy = to_original_names(pairs, ALPHA)
    files["comfyui"] = save_safetensors(comfy, folder / "comfyui.safetensors")
    musubi = {}  # lora_unet_blocks_0_self_attn_q.lora_down.weight / .lora_up.weight / .alpha
    for key, value in comfy.items():
        stem = key[len("diffusion_model."):]
        if stem.endswith(".alpha"):
            module, leaf = stem[: -len(".alpha")], "alpha"
        else:
            module, _, rest = stem.partition(".lora_")
            leaf = f"lora_{rest}"
        musubi[f"lora_unet_{module.replace('.', '_')}.{leaf}"] = value
    files["musubi"] = save_safetensors(musubi, folder / "musubi.safetensors")
    diffsynth = {}  # original names, peft's `.default` adapter name, no alpha: the scale folded into lora_B
    for key, value in comfy.items():
        if key.endswith(".alpha"):
            continue
        plain = key[len("diffusion_model."):].replace(".lora_down.", ".lora_A.default.").replace(
            ".lora_up.", ".lora_B.default.")
        diffsynth[plain] = value * (ALPHA / RANK) if ".lora_B." in plain else value
    files["diffsynth"] = save_safetensors(diffsynth, folder / "diffsynth.safetensors")
    return files


def test_every_format_merges_to_the_same_weights(wan_dir, tmp_path) -> None:
    net = WanDenoiser(path=wan_dir)
    pairs = adapters(net)
    base = {k: v.clone() for k, v in net.transformer.state_dict().items()}
    want = dict(base)
    for name in MODULES:
        a, b = pairs[f"transformer.{name}.lora_A.weight"], pairs[f"transformer.{name}.lora_B.weight"]
        want[f"{name}.weight"] = base[f"{name}.weight"] + ALPHA / RANK * b @ a
    files = write_formats(pairs, tmp_path)
    with safe_open(str(files["diffusers"]), "pt") as handle:
        meta = json.loads(handle.metadata()["lora_adapter_metadata"])
    assert meta["transformer.r"] == RANK and meta["transformer.lora_alpha"] == ALPHA
    for fmt, path in files.items():
        net.transformer.load_state_dict(base)
        assert merge_wan_lora(net.transformer, read_wan_lora(path)) == len(MODULES), fmt
        got = net.transformer.state_dict()
        worst = max((got[k] - want[k]).abs().max().item() for k in want)
        assert worst < 1e-5, (fmt, worst)


def test_init_lora_merges_onto_the_released_weights_and_refuses_what_does_not_fit(wan_dir, data_dir, tmp_path,
                                                                                    compose) -> None:
    from hydra.utils import instantiate

    from wantrain.commands.fit import start_from_weights

    net = WanDenoiser(path=wan_dir)
    pairs = adapters(net)
    files = write_formats(pairs, tmp_path)
    cfg = compose("+experiment=wan_tiny_i2v", f"paths.data_dir={data_dir}", f"init_from={wan_dir}",
                  f"init_lora=[{files['musubi']}]", root=tmp_path)
    module = instantiate(cfg.model)
    start_from_weights(cfg, module, None)
    name = MODULES[0]
    a, b = pairs[f"transformer.{name}.lora_A.weight"], pairs[f"transformer.{name}.lora_B.weight"]
    weight = module.denoiser.transformer.get_submodule(name).weight
    torch.testing.assert_close(weight, net.transformer.get_submodule(name).weight + ALPHA / RANK * b @ a)
    torch.testing.assert_close(module.ema.module.denoiser.transformer.get_submodule(name).weight, weight)

    wide = {k: torch.cat([v, v], 0) if k.endswith("lora_B.weight") else v for k, v in pairs.items()}
    bad = save_safetensors(wide, tmp_path / "other-model" / "pytorch_lora_weights.safetensors")
    cfg.init_lora = [str(bad)]
    with pytest.raises(WantrainError, match="fits no linear layer"):
        start_from_weights(cfg, instantiate(cfg.model), None)

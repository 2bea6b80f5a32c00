"""The released Wan transformers' architectures (their diffusers `transformer/config.json`), by name: a Wan experiment
names the one it trains (`model.net.architecture`), so a folder of another model is refused in one line, and
`bench plan` sizes the model before its weights are downloaded."""

from __future__ import annotations

from typing import Any

_COMMON = {"patch_size": [1, 2, 2], "attention_head_dim": 128, "freq_dim": 256, "text_dim": 4096,
           "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024}
# Wan2.1 technical report, Table 1 (1.3B: dim 1536, FFN 8960, 12 heads, 30 layers; 14B: dim 5120, FFN 13824,
# 40 heads, 40 layers) as the Wan-AI/*-Diffusers transformer/config.json files write them; I2V adds the CLIP image
# projection (image_dim 1280, ViT-H/14) and 20 input channels (4 mask + 16 first-frame latents). Wan2.2 TI2V-5B:
# dim 3072, FFN 14336, 24 heads, 30 layers on the 48-channel Wan2.2 VAE (Wan-AI/Wan2.2-TI2V-5B-Diffusers).
RELEASED: dict[str, dict[str, Any]] = {
    "wan2.1-t2v-1.3b": {**_COMMON, "num_attention_heads": 12, "num_layers": 30, "ffn_dim": 8960,
                        "in_channels": 16, "out_channels": 16, "image_dim": None, "added_kv_proj_dim": None},
    "wan2.1-t2v-14b": {**_COMMON, "num_attention_heads": 40, "num_layers": 40, "ffn_dim": 13824,
                       "in_channels": 16, "out_channels": 16, "image_dim": None, "added_kv_proj_dim": None},
    "wan2.1-i2v-14b": {**_COMMON, "num_attention_heads": 40, "num_layers": 40, "ffn_dim": 13824,
                       "in_channels": 36, "out_channels": 16, "image_dim": 1280, "added_kv_proj_dim": 5120},
    # each expert of Wan2.2 I2V-A14B (transformer/ high noise, transformer_2/ low noise): the 14B shape on 36 input
    # channels without the CLIP branch (wan/configs/wan_i2v_A14B.py: dim 5120, ffn 13824, 40 heads, 40 layers)
    "wan2.2-i2v-a14b": {**_COMMON, "num_attention_heads": 40, "num_layers": 40, "ffn_dim": 13824,
                        "in_channels": 36, "out_channels": 16, "image_dim": None, "added_kv_proj_dim": None},
    "wan2.2-ti2v-5b": {**_COMMON, "num_attention_heads": 24, "num_layers": 30, "ffn_dim": 14336,
                       "in_channels": 48, "out_channels": 48, "image_dim": None, "added_kv_proj_dim": None},
}
# what must agree between a folder and the architecture an experiment names (the rest is numerics: eps, rope length)
SHAPE_KEYS = ("num_attention_heads", "attention_head_dim", "num_layers", "ffn_dim", "in_channels", "out_channels",
              "text_dim", "image_dim")


def released_architecture(name: str) -> dict[str, Any]:
    """The diffusers config of a released Wan transformer; ValueError naming the known ones."""
    if name not in RELEASED:
        raise ValueError(f"model.net.architecture={name!r} is not a released Wan transformer: use one of "
                         f"{sorted(RELEASED)}, or null")
    return dict(RELEASED[name])


def differences(config: dict[str, Any], name: str) -> list[str]:
    """`key: folder value != named value` for each shape key where a folder's config differs from `name`'s."""
    want = released_architecture(name)
    return [f"{k} {config.get(k)} != {want[k]}" for k in SHAPE_KEYS if config.get(k) != want[k]]

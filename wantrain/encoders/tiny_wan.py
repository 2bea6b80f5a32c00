"""A tiny random Wan2.1 pipeline folder in the Hub's diffusers layout, built offline: what tests and the CPU
experiment `wan_tiny_i2v` start from in place of `Wan-AI/Wan2.1-I2V-14B-480P-Diffusers` (model_index.json,
transformer/, vae/, text_encoder/, tokenizer/, image_encoder/, image_processor/, scheduler/)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from wantrain.encoders.tiny import _build_atomic, build_tiny_clip, build_tiny_umt5, build_tiny_wan_vae

# The released I2V-14B scheduler: UniPC in flow mode, flow_shift 3.0 for 480p (scheduler/scheduler_config.json of
# Wan-AI/Wan2.1-I2V-14B-480P-Diffusers; Wan2.1 generate.py `sample_shift` 3.0 for i2v at 832*480).
SCHEDULER = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000,
             "flow_shift": 3.0}

TINY_WIDTH = 32  # the tiny transformer's width (heads x head dim)


def tiny_wan_transformer_config(task: str = "i2v", latent_channels: int = 4, text_dim: int = 32,
                                image_dim: int = 32) -> dict[str, Any]:
    """A WanTransformer3DModel config of the released architecture at toy width (2 layers, 4 heads of 8: the
    narrowest that overfits one clip to > 30 dB in 300 CPU steps; 2 heads of 8 stay at 23-26 dB)."""
    i2v = task == "i2v"  # ti2v: like t2v (no CLIP, no channel condition); the image goes into frame 0 of x_t
    inner = TINY_WIDTH
    return {"patch_size": (1, 2, 2), "num_attention_heads": inner // 8, "attention_head_dim": 8,
            "in_channels": 2 * latent_channels + 4 if i2v else latent_channels, "out_channels": latent_channels,
            "text_dim": text_dim, "freq_dim": 16, "ffn_dim": 2 * inner, "num_layers": 2, "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": image_dim if i2v else None,
            "added_kv_proj_dim": inner if i2v else None, "rope_max_seq_len": 32}


def build_missing_backbone(model: Mapping[str, Any]) -> None:
    """A tiny random Wan pipeline folder at `model.net.path` when `model.build_tiny_encoders` asks and none is there
    (wan_tiny_i2v: its encoders and VAE come from the same folder); before the model is built, since the backbone
    reads its weights in its constructor (`fit`, `encode`, `bench plan` call it)."""
    net = model.get("net")
    if not (net and net.get("path") and model.get("build_tiny_encoders")) or Path(str(net.get("path"))).exists():
        return
    task = "ti2v" if net.get("expand_timesteps") else "i2v" if model.get("image_encoder") else "t2v"
    build_tiny_wan(str(net.get("path")), task=task)


def build_tiny_wan(path: str | os.PathLike, task: str = "i2v", seed: int = 0, latent_channels: int = 4) -> Path:
    """Write a tiny random Wan pipeline (`task` i2v: Wan2.1's `WanImageToVideoPipeline`; t2v: `WanPipeline`; ti2v:
    Wan2.2 TI2V-5B's design, the I2V pipeline with `expand_timesteps` on a residual 16x VAE) at `path`
    with diffusers' own `save_pretrained`; returns the path (reused when built with the same settings)."""
    if task not in ("i2v", "t2v", "ti2v"):
        raise ValueError(f"task={task!r}: use i2v, t2v or ti2v (Wan2.2 TI2V-5B's design)")
    spec = {"kind": "wan_pipeline", "task": task, "seed": seed, "latent_channels": latent_channels,
            "width": TINY_WIDTH}

    def write(out: Path) -> None:
        from diffusers import (
            AutoencoderKLWan,
            UniPCMultistepScheduler,
            WanImageToVideoPipeline,
            WanPipeline,
            WanTransformer3DModel,
        )
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, UMT5EncoderModel

        from wantrain.data.synthetic import caption_corpus

        with tempfile.TemporaryDirectory(dir=out) as tmp:
            text_dir = build_tiny_umt5(Path(tmp) / "umt5", caption_corpus(), seed=seed)
            vae_dir = build_tiny_wan_vae(Path(tmp) / "vae", seed=seed, z_dim=latent_channels, wan22=task == "ti2v")
            parts: dict[str, Any] = {
                "tokenizer": AutoTokenizer.from_pretrained(str(text_dir)),
                "text_encoder": UMT5EncoderModel.from_pretrained(str(text_dir)),
                "vae": AutoencoderKLWan.from_pretrained(str(vae_dir)),
                "scheduler": UniPCMultistepScheduler(**SCHEDULER),
            }
            text_dim = parts["text_encoder"].config.d_model
            if task == "i2v":
                clip_dir = build_tiny_clip(Path(tmp) / "clip", seed=seed)
                parts["image_encoder"] = CLIPVisionModel.from_pretrained(str(clip_dir))
                parts["image_processor"] = CLIPImageProcessor.from_pretrained(str(clip_dir))
            image_dim = parts["image_encoder"].config.hidden_size if task == "i2v" else 0
            torch.manual_seed(seed)
            parts["transformer"] = WanTransformer3DModel(
                **tiny_wan_transformer_config(task, latent_channels, text_dim, image_dim))
            if task == "ti2v":  # diffusers' Wan2.2 TI2V: the I2V pipeline with per-token timesteps, no CLIP
                pipeline = WanImageToVideoPipeline(**parts, image_encoder=None, image_processor=None,
                                                   expand_timesteps=True)
            else:
                pipeline = (WanImageToVideoPipeline if task == "i2v" else WanPipeline)(**parts)
            pipeline.save_pretrained(str(out))

    return _build_atomic(path, spec, write)

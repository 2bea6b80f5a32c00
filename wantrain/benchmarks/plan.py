"""`bench plan`: what a training config needs per GPU and how fast it can run, before renting GPUs.

For the configured model and every data shape (each bucket when data.buckets is set): parameters (trainable,
frozen), FLOPs per sample of a training step and of one sampling step, activation memory per sample with and
without activation checkpointing, memory per GPU under DDP and FSDP at the configured batch, the largest batch for
24 / 80 / 141 GB GPUs, and the samples/s a given MFU gives on a named GPU. Activations and FLOPs are measured by
tracing the real training step on FakeTensors at batch 1 and 2 (plan_trace.py); the rest is bookkeeping below.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch._subclasses.fake_tensor import FakeTensorMode

from wantrain.benchmarks.plan_build import (
    backbone_architecture,
    diffusion_nets,
    diffusion_step,
    is_upsampler,
    upsampler_nets,
    upsampler_step,
)
from wantrain.benchmarks.plan_trace import StepTrace, autocast_factory, fake_safe_conversions, trace_step
from wantrain.encoders.tiny_wan import build_missing_backbone
from wantrain.errors import WantrainError
from wantrain.training.throughput import BF16_PEAK_TFLOPS

GIB = 2**30
# Frozen encoders' parameter counts (diffusers / transformers modules built on the meta device from the published
# configs), used when their weights are not on this machine: T5-XXL / umT5-XXL encoders, DiT-XL/2-256 + its
# sd-vae-ft-ema VAE, Wan2.1's AutoencoderKLWan; the frozen VGG19 of the upsampler's content loss is built directly.
KNOWN_FROZEN = {"t5": 4_762_310_656, "umt5": 5_680_910_336, "dit": 749_826_464 + 83_653_863, "wan": 126_892_531}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def data_shapes(data: DictConfig) -> list[tuple[int, int, int, int]]:
    """(T, H, W, B) of every training batch shape: each bucket ([H, W, T] or [H, W, T, B]) or the one data shape."""
    from wantrain.data.buckets import make_buckets  # the datamodule's rule (batch sizes of buckets without one)

    res = data.resolution
    h, w = (int(res), int(res)) if isinstance(res, int) else (int(res[0]), int(res[1]))
    spec = data.get("buckets")
    spec = OmegaConf.to_container(spec, resolve=True) if spec is not None else None
    buckets = make_buckets(spec, int(data.batch_size), (h, w, int(data.num_frames)),
                           image_sizes=data.get("image_shards") is not None)
    return [(b.frames, b.height, b.width, b.batch_size) for b in buckets]


def model_shape(model: DictConfig, t: int, h: int, w: int, plan: DictConfig, channels: int | None = None,
                ) -> tuple[int, int, int, int]:
    """(C, T, H, W) the denoiser sees (C: `channels`, default the UNet's inputs): the clip in pixel space, the VAE's
    latents in latent space."""
    if channels is None:
        channels = (backbone_architecture(OmegaConf.to_container(model.net, resolve=True))["out_channels"]
                    if model.get("net") is not None else model.unet.in_channels)
    c = int(channels)
    if model.get("space", "pixel") != "latent":
        return c, t, h, w
    s, tf = int(plan.latent.spatial_factor), int(plan.latent.temporal_factor)
    return c, (1 + (t - 1) // tf if tf > 1 else t), h // s, w // s


def frozen_encoder_bytes(model: DictConfig) -> tuple[int, int, list[str]]:
    """(parameters, bytes) of the frozen text/image encoders and VAE one rank holds, and notes."""
    params = nbytes = 0
    notes = []
    cached = model.get("conditioning", "live") == "cached"  # embeddings from `encode`: no T5 / DiT on the GPU
    parts = [] if cached else [model.get("text_encoder"), model.get("image_encoder")]
    if cached:
        notes.append("conditioning=cached: no text/image encoders loaded")
    if model.get("space", "pixel") == "latent":
        parts.append(model.get("vae"))
    for part in parts:
        if not part:
            continue
        kind = str(part.get("kind", part.get("backend", "")))
        if model.get("build_tiny_encoders", False):
            notes.append(f"{kind}: tiny random encoder (negligible)")
            continue
        n = KNOWN_FROZEN.get(kind)
        if n is None:
            notes.append(f"{kind}: size unknown, not counted")
            continue
        params += n
        nbytes += n * DTYPE_BYTES.get(str(part.get("dtype", "float32")), 4)
    return params, nbytes, notes


SHARD_UNITS = ("UNetBlock", "WanTransformerBlock")  # what FSDP wraps one by one: the largest is unsharded at once


def count(nets: dict[str, torch.nn.Module], model: DictConfig) -> dict[str, int]:
    """Parameter counts: trainable (optimizer, grads), in-model frozen, EMA copy, frozen loss networks, largest
    FSDP unit (diffusion: a UNetBlock)."""
    if "model" in nets:
        net = nets["model"]
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        total = sum(p.numel() for p in net.parameters())
        units = [m for m in net.modules() if type(m).__name__ in SHARD_UNITS] or [net]
        largest = max(sum(p.numel() for p in m.parameters()) for m in units)
        weights = sum(p.numel() * p.element_size() for p in net.parameters())  # bf16 frozen bases count 2 bytes
        storage = ((model or {}).get("net") or {}).get("storage_dtype")
        if storage:  # layerwise casting's .to is a no-op on FakeTensors: count its storage dtype here
            size = torch.empty(0, dtype=getattr(torch, str(storage))).element_size()
            weights -= sum(p.numel() * (p.element_size() - size) for p in layerwise_cast_parameters(net))
        return {"trainable": trainable, "model": total, "ema": total, "loss_nets": 0, "largest_unit": largest,
                "weight_bytes": weights}
    g, d = nets["generator"], nets["discriminator"]
    trainable = sum(p.numel() for m in (g, d) for p in m.parameters() if p.requires_grad)
    total = sum(p.numel() for m in (g, d) for p in m.parameters())
    loss_nets = sum(p.numel() for p in nets["content_loss"].parameters())
    return {"trainable": trainable, "model": total, "ema": sum(p.numel() for p in g.parameters()),
            "loss_nets": loss_nets, "largest_unit": total}


def layerwise_cast_parameters(net: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters diffusers' `enable_layerwise_casting` stores in the storage dtype: those of Linear / Conv
    layers of each diffusers model in `net`, except modules its skip patterns name (diffusers' defaults, the model's
    `_skip_layerwise_casting_patterns` and `_keep_in_fp32_modules`) and LoRA adapters."""
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    found = []
    for model in (m for m in net.modules() if hasattr(m, "_skip_layerwise_casting_patterns")):
        patterns = (*DEFAULT_SKIP_MODULES_PATTERN, *(model._keep_in_fp32_modules or ()),
                    *(model._skip_layerwise_casting_patterns or ()), "lora_")
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)) and not any(
                    re.search(pattern, name) for pattern in patterns):
                found.extend(p for p in module.parameters(recurse=False) if not p.requires_grad)
    return found


def static_bytes(counts: dict[str, int], strategy: str, gpus: int, optimizer_bytes: float = 8.0
                 ) -> dict[str, float]:
    """Bytes per GPU outside the step: the weights as stored, the optimizer's states (AdamW: two fp32 moments, 8 bytes
    per trainable parameter; 8-bit AdamW: 2), the EMA copy, DDP's gradient buckets (a second copy of the grads:
    Lightning's DDP does not use gradient_as_bucket_view), or under FSDP (full shard) all of it divided by the GPUs
    plus two bf16 unsharded units (the one computing and the prefetched one); with CPU offload only those two units
    stay on the GPU. Gradients are counted in the traced step (they appear during backward)."""
    t, m, e, loss_nets = counts["trainable"], counts["model"], counts["ema"], counts["loss_nets"]
    weights = counts.get("weight_bytes", 4 * m)  # fp32, except frozen weights kept in bf16/fp8 (model.net.dtype)
    ema = weights * e / max(1, m)  # the EMA copy holds the same tensors in the same dtypes
    if strategy == "ddp":
        return {"weights": weights, "optimizer": optimizer_bytes * t, "ema": ema, "ddp_buckets": 4 * t,
                "loss_nets": 4 * loss_nets}
    sharded = {"weights": weights / gpus, "optimizer": optimizer_bytes * t / gpus, "ema": ema / gpus}
    if strategy == "offload":  # on the host instead: see host_bytes
        sharded = {}
    return {**sharded, "fsdp_unsharded": 2 * 2 * counts["largest_unit"], "loss_nets": 4 * loss_nets}


def host_bytes(counts: dict[str, int], gpus: int, optimizer_bytes: float) -> float:
    """Host memory per GPU under CPU offload: its shard of weights, fp32 gradients, optimizer states and EMA."""
    weights = counts.get("weight_bytes", 4 * counts["model"])
    ema = weights * counts["ema"] / max(1, counts["model"])
    return (weights + ema + (4 + optimizer_bytes) * counts["trainable"]) / gpus


def fit_line(one: StepTrace, two: StepTrace) -> tuple[float, float]:
    """(bytes at batch 0, bytes per sample) of the traced step peak, a line through batch 1 and 2."""
    per_sample = max(0, two.peak_bytes - one.peak_bytes)
    return one.peak_bytes - per_sample, per_sample


def largest_batch(fixed: float, per_sample: float, capacity_gb: float, reserve: float) -> int:
    """The largest batch whose predicted memory fits `capacity_gb` (decimal GB) less the reserve fraction and
    1 GB for the CUDA context and kernels' workspaces."""
    usable = capacity_gb * 1e9 * (1 - reserve) - 1e9 - fixed
    return max(0, math.floor(usable / per_sample)) if per_sample > 0 else 0


def plan_config(cfg: DictConfig) -> DictConfig:
    """The training config `bench plan` plans for: conf/config.yaml with bench.overrides."""
    from wantrain.benchmarks.step import compose_train_config

    return compose_train_config([str(o) for o in cfg.get("overrides") or []])


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """One row per (data shape, strategy, activation checkpointing)."""
    train = plan_config(cfg)
    model, data = train.model, train.data
    precision = str(cfg.precision or train.trainer.get("precision") or "bf16-mixed")
    if precision not in ("bf16-mixed", "16-mixed", "32-true", "32"):
        raise WantrainError(f"bench.precision={precision}: use bf16-mixed | 16-mixed | 32-true")
    autocast = autocast_factory(precision)
    gpus = int(cfg.gpus)
    peak_tflops = float(cfg.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in str(cfg.gpu)), 0))
    if not peak_tflops:
        raise WantrainError(f"bench.gpu={cfg.gpu} has no known bf16 peak; set bench.peak_tflops=TFLOPS "
                            f"(known: {', '.join(BF16_PEAK_TFLOPS)})")
    upsampler = is_upsampler(model)
    optimizer_bytes = float(cfg.get("optimizer_bytes", 8.0))
    sequence = int(cfg.get("sequence_parallel", 1))
    if sequence > 1 and (upsampler or not model.get("net")):
        raise WantrainError("bench.sequence_parallel splits a DiT backbone's tokens (model.net); this model has none")
    if not upsampler:
        build_missing_backbone(model)  # the tiny Wan experiment's folder, as `fit` builds it (not under FakeTensors)
    with FakeTensorMode(allow_non_fake_inputs=True), fake_safe_conversions():
        nets = upsampler_nets(model) if upsampler else {"model": diffusion_nets(model)}
        counts = count(nets, model)
    enc_params, enc_bytes, notes = (0, 0, []) if upsampler else frozen_encoder_bytes(model)
    tokens = (int(model.text_encoder.max_length) if not upsampler else 0, int(cfg.image_tokens))
    rows = []
    for t, h, w, batch in data_shapes(data):
        if upsampler:
            crop = model.get("crop_size")
            hh, ww = (int(crop), int(crop)) if crop else (h, w)
            shape_name = f"{t}x{hh}x{ww} HR crop"
        else:
            shape = model_shape(model, t, h, w, cfg, channels=int(nets["model"].denoiser.in_channels))
            shape_name = f"{t}x{h}x{w}" + (f" -> {'x'.join(map(str, shape))} latent" if shape[1:] != (t, h, w) else "")
        traces = {}
        for ckpt in (False, True):
            build = (upsampler_step(model, (t, hh, ww), ckpt, autocast) if upsampler
                     else diffusion_step(model, shape, tokens, ckpt, autocast))
            traces[ckpt] = [trace_step(build, b, precision, flops=b == 1) for b in (1, 2)]
        one = traces[False][0]
        train_flops = one.train_flops  # model FLOPs (no recompute) per sample at batch 1
        guidance = 1 if upsampler else _branches(model)
        sample_flops = one.forward_flops * guidance
        for strategy in ("ddp", "fsdp", *(("offload",) if cfg.cpu_offload else ())):
            for ckpt in (False, True):
                if strategy != "ddp" and (upsampler or not ckpt):
                    continue  # fsdp.yaml checkpoints every UNetBlock; a ~5M-parameter GAN stage trains under DDP
                fixed_step, per_sample = fit_line(*traces[ckpt])
                grads = 4 * counts["trainable"]
                if strategy != "ddp":  # the traced step holds full grads; FSDP keeps a shard (offload: none)
                    fixed_step -= grads * (1 - (1 / gpus if strategy == "fsdp" else 0))
                    per_sample /= sequence  # the blocks' tokens (their activations) split over the group
                static = static_bytes(counts, strategy, gpus, optimizer_bytes)
                fixed = sum(static.values()) + enc_bytes + fixed_step
                name = strategy if strategy == "ddp" else f"fsdp/{gpus}" + (f" sp{sequence}" if sequence > 1 else "") \
                    + ("+offload" if strategy == "offload" else "")
                rows.append({
                    "shape": shape_name, "strategy": name,
                    "ckpt": ckpt, "batch": batch,
                    "trainable_M": round(counts["trainable"] / 1e6, 2),
                    "frozen_M": round((counts["model"] - counts["trainable"] + enc_params + counts["loss_nets"]) / 1e6,
                                      1),
                    "train_gflop_per_sample": round(train_flops / 1e9, 2),
                    "recompute_gflop_per_sample": round((traces[True][0].train_flops - train_flops) / 1e9, 2),
                    "sample_step_gflop_per_sample": round(sample_flops / 1e9, 2),
                    "act_gib_per_sample": round(per_sample / GIB, 3),
                    "fixed_gib": round(fixed / GIB, 2),
                    "mem_gib": round((fixed + per_sample * batch) / GIB, 2),
                    **{f"max_batch_{gb}gb": largest_batch(fixed, per_sample, gb, float(cfg.reserve))
                       for gb in cfg.capacities_gb},
                    f"samples_s_{cfg.gpu}": round(float(cfg.mfu) * peak_tflops * 1e12 / train_flops, 2),
                    "detail": {"static_gib": {k: round(v / GIB, 2) for k, v in static.items()},
                               "host_gib": round(host_bytes(counts, gpus, optimizer_bytes) / GIB, 2)
                               if strategy == "offload" else 0.0,
                               "frozen_encoders_gib": round(enc_bytes / GIB, 2),
                               "step_fixed_gib": round(fixed_step / GIB, 3), "notes": notes},
                })
    return rows


def _branches(model: DictConfig) -> int:
    """Model forwards per sampling step with the configured text / image guidance (see guidance_variants)."""
    from wantrain.diffusion.guidance import guidance_variants

    sampling = OmegaConf.to_container(model.get("sampling") or {}, resolve=True)
    return len(guidance_variants(float(sampling.get("text_scale", 1.0)), float(sampling.get("image_scale", 1.0))))

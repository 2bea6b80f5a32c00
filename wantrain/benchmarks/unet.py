"""Benchmark: SpatioTemporalUNet forward+backward vs diffusers' UNet3DConditionModel at matched parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from wantrain.benchmarks.timing import seconds_per_call
from wantrain.nets.unet import SpatioTemporalUNet
from wantrain.ranks import pick_device
from wantrain.training.throughput import peak_tflops


def count_params(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def diffusers_peer(unet: dict[str, Any], width: int) -> torch.nn.Module:
    """A diffusers UNet3DConditionModel laid out like our config (same levels, depth, attention levels)."""
    from diffusers import UNet3DConditionModel

    mult, levels = list(unet["channel_mult"]), set(unet["attention_levels"])
    down = tuple("CrossAttnDownBlock3D" if i in levels else "DownBlock3D" for i in range(len(mult)))
    up = tuple("CrossAttnUpBlock3D" if i in levels else "UpBlock3D" for i in reversed(range(len(mult))))
    channels = tuple(width * m for m in mult)
    return UNet3DConditionModel(
        in_channels=unet["in_channels"] + unet["concat_channels"], out_channels=unet["out_channels"],
        down_block_types=down, up_block_types=up, block_out_channels=channels,
        layers_per_block=unet["num_res_blocks"], cross_attention_dim=unet["context_dim"],
        attention_head_dim=max(1, width // unet["head_dim"]),  # diffusers uses it as the head count
        norm_num_groups=unet["norm_groups"],
    )


def matched_peer(unet: dict[str, Any], target_params: int) -> torch.nn.Module:
    """The diffusers peer whose base width (a multiple of norm_groups) gives the closest parameter count."""
    g = unet["norm_groups"]
    step = g * unet["head_dim"] // torch.gcd(torch.tensor(g), torch.tensor(unet["head_dim"])).item()

    def params_at(width: int) -> int:
        with torch.device("meta"):
            return count_params(diffusers_peer(unet, width))

    base = unet["model_channels"]
    guess = max(step, round(base * (target_params / params_at(base)) ** 0.5 / step) * step)
    width = min((w for w in (guess - step, guess, guess + step) if w > 0),
                key=lambda w: abs(params_at(w) - target_params))
    return diffusers_peer(unet, width)


def train_step(model: torch.nn.Module, forward: Callable[[], torch.Tensor], device: torch.device,
               dtype: torch.dtype | None) -> Callable[[], torch.Tensor]:
    """One forward+backward of `forward()` (a mean-square loss of its output) under `dtype` autocast (None: off)."""

    def step() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = forward().float().square().mean()
        loss.backward()
        return loss

    return step


def measure(name: str, model: torch.nn.Module, forward: Callable[[], torch.Tensor], cfg: DictConfig,
            device: torch.device, peak: float | None, seconds: float | None = None) -> dict[str, Any]:
    """Time (unless `seconds` is given: timed elsewhere, e.g. alternating with a peer) and count FLOPs of one
    forward+backward (bf16 autocast where configured) -> a table row."""
    model.to(device).train()
    name_ = str(cfg.dtype) if cfg.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name_)
    autocast = dtype is not None

    step = train_step(model, forward, device, dtype if autocast else None)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    if seconds is None:
        seconds = seconds_per_call(step, device, int(cfg.warmup), int(cfg.iters))
    achieved = flops / seconds / 1e12
    row = {"model": name, "params_M": round(count_params(model) / 1e6, 3), "device": str(device),
           "dtype": name_, "batch": int(cfg.batch_size), "frames": int(cfg.num_frames),
           "size": f"{cfg.height}x{cfg.width}", "fwd_bwd_ms": round(seconds * 1e3, 2),
           "samples_per_s": round(int(cfg.batch_size) / seconds, 2), "gflop_fwd_bwd": round(flops / 1e9, 2),
           "tflops_s": round(achieved, 4), "_flops_per_s": flops / seconds,
           "mfu": round(achieved / peak, 4) if peak else None}
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(device)
    return row


def model_shape(cfg: DictConfig) -> tuple[str, int, int, int, int | None]:
    """(space, T, H, W, latent channels) the UNet sees: the clip's in pixel space; in latent space (`space: latent`)
    the VAE's latents of a `num_frames` x `height` x `width` clip (Wan: T' = 1 + (T - 1) / 4, H / 8, W / 8)."""
    space, t, h, w = str(cfg.get("space", "pixel")), int(cfg.num_frames), int(cfg.height), int(cfg.width)
    if space == "pixel":
        return space, t, h, w, None
    if space != "latent":
        raise ValueError(f"bench.space must be pixel or latent, got {space!r}")
    vae = cfg.latent
    s, tf = int(vae.spatial_factor), int(vae.temporal_factor)
    if h % s or w % s or (tf > 1 and (t - 1) % tf):
        raise ValueError(f"a {t}x{h}x{w} clip does not fit the VAE (frames {tf}k+1, sides multiples of {s}); "
                         f"set bench.num_frames / bench.height / bench.width")
    return space, (1 + (t - 1) // tf if tf > 1 else t), h // s, w // s, int(vae.channels)


def run(cfg: DictConfig) -> list[dict]:
    """Rows: ours, and (if compare_diffusers) the diffusers peer, each with the per-FLOP speed ratio."""
    device = pick_device(cfg.device)
    torch.manual_seed(int(cfg.get("seed", 0)))
    unet_cfg = OmegaConf.to_container(cfg.unet, resolve=True)
    space, t, h, w, channels = model_shape(cfg)
    if channels is not None:  # latent space: the UNet takes the latents (+ first-frame latents and mask)
        unet_cfg |= {"in_channels": channels, "out_channels": channels, "concat_channels": channels + 1}
    ours = SpatioTemporalUNet(**unet_cfg)
    if bool(cfg.get("channels_last", False)):
        ours = ours.to(memory_format=torch.channels_last)
    b = int(cfg.batch_size)
    x = torch.randn(b, ours.in_channels, t, h, w, device=device)
    concat = torch.randn(b, ours.concat_channels, t, h, w, device=device)
    ctx = torch.randn(b, int(cfg.context_len), ours.context_dim, device=device)
    mask = torch.ones(b, int(cfg.context_len), dtype=torch.bool, device=device)
    pooled = torch.randn(b, ours.pooled_dim, device=device) if ours.pooled_dim else None
    steps = torch.randint(0, 1000, (b,), device=device)
    peak = peak_tflops(device, cfg.get("peak_tflops"))
    if bool(cfg.get("compile", False)):
        ours = torch.compile(ours)
    rows = [measure("SpatioTemporalUNet", ours, lambda: ours(x, steps, ctx, mask, pooled, concat), cfg, device, peak)]
    if bool(cfg.compare_diffusers):
        peer = matched_peer(unet_cfg | {"in_channels": ours.in_channels, "concat_channels": ours.concat_channels,
                                        "out_channels": ours.out_channels},
                            count_params(ours))
        x_in = torch.cat([x, concat], dim=1)
        rows.append(measure("diffusers.UNet3DConditionModel", peer,
                            lambda: peer(x_in, steps, encoder_hidden_states=ctx, return_dict=False)[0],
                            cfg, device, peak))
        rows[0]["speed_per_flop_vs_diffusers"] = round(rows[0]["_flops_per_s"] / rows[1]["_flops_per_s"], 3)
        rows[1]["speed_per_flop_vs_diffusers"] = 1.0
    for row in rows:
        row.pop("_flops_per_s")
        row.update(space=space, model_input=f"{ours.in_channels}x{t}x{h}x{w}")
    return rows

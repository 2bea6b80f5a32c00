"""Benchmark: the Wan DiT backbone through wantrain (`VideoDiffusion` -> `WanDenoiser`: text masking, the I2V mask
and first-frame channels built per call) against the same diffusers `WanTransformer3DModel` called directly with
inputs built once, as a bare training loop would: what the wrapper costs per forward+backward (medians of calls
timed in alternating order)."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from wantrain.benchmarks.timing import alternating_seconds
from wantrain.benchmarks.unet import measure, train_step
from wantrain.diffusion.flow import FlowMatching
from wantrain.diffusion.model import Conditions, VideoDiffusion
from wantrain.nets.wan import WAN_MASK_CHANNELS, WAN_TEXT_LENGTH, WanDenoiser, wan_channel_condition
from wantrain.nets.wan_architectures import released_architecture
from wantrain.ranks import pick_device
from wantrain.training.throughput import peak_tflops


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Rows: wantrain's call and diffusers' direct call of one transformer, per-FLOP speed and wrapper overhead."""
    device = pick_device(cfg.device)
    torch.manual_seed(int(cfg.seed))
    config = released_architecture(str(cfg.architecture)) if cfg.architecture else \
        OmegaConf.to_container(cfg.transformer, resolve=True)
    net = WanDenoiser(config=config)
    model = VideoDiffusion(None, None, FlowMatching(), net=net)
    b, t, h, w = int(cfg.batch_size), int(cfg.latent_frames), int(cfg.latent_height), int(cfg.latent_width)
    c = net.in_channels
    x = torch.randn(b, c, t, h, w, device=device)
    frames = torch.randn(b, c, t, h, w, device=device)
    text = torch.randn(b, WAN_TEXT_LENGTH, net.text_dim, device=device)
    mask = torch.zeros(b, WAN_TEXT_LENGTH, dtype=torch.bool, device=device)
    mask[:, : int(cfg.prompt_tokens)] = True
    image = torch.randn(b, int(cfg.image_tokens), net.image_dim, device=device) if net.image_dim else None
    image_frames = torch.zeros(t, dtype=torch.bool, device=device)
    image_frames[0] = True
    cond = Conditions(text, mask, image if image is not None else text.new_zeros(b, 0, 0), frames, None, image_frames)
    steps = torch.randint(0, 1000, (b,), device=device).float()
    # the direct call's inputs, built once (what pipeline_wan_i2v.py builds before its loop)
    direct_in = torch.cat([x, wan_channel_condition(frames, image_frames, WAN_MASK_CHANNELS)], 1) \
        if net.concat_channels else x
    direct_text = text * mask[..., None]
    peak = peak_tflops(device, cfg.get("peak_tflops"))
    bench = OmegaConf.create({"dtype": cfg.dtype, "warmup": cfg.warmup, "iters": cfg.iters,
                              "batch_size": b, "num_frames": t, "height": h, "width": w})
    transformer = net.transformer.to(device).train()
    ours = (model, lambda: model(x, steps, cond))
    theirs = (transformer, lambda: transformer(direct_in, steps, encoder_hidden_states=direct_text,
                                               encoder_hidden_states_image=image, return_dict=False)[0])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
        str(cfg.dtype) if cfg.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32"))
    seconds = alternating_seconds([train_step(m, f, device, dtype) for m, f in (ours, theirs)], device,
                                  int(cfg.warmup), int(cfg.iters))
    rows = [measure(name, m, f, bench, device, peak, seconds=sec) for name, (m, f), sec in
            zip(("WanDenoiser (wantrain)", "WanTransformer3DModel (diffusers)"), (ours, theirs), seconds)]
    ratio = rows[0]["_flops_per_s"] / rows[1]["_flops_per_s"]
    for row in rows:
        row.pop("_flops_per_s")
        row.update(size=f"{t}x{h}x{w} latent", architecture=str(cfg.architecture or "bench.transformer"))
    rows[0]["speed_per_flop_vs_diffusers"] = round(ratio, 3)
    rows[0]["wrapper_overhead_pct"] = round(100 * (seconds[0] / seconds[1] - 1), 2)
    rows[1]["speed_per_flop_vs_diffusers"] = 1.0
    return rows

"""Benchmark the upsampler: stage and discriminator fwd+bwd per clip, tiled vs untiled inference, and the data
path: each stage's training pairs on the host against its planned GPU step (benchmarks/pairs.py)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from wantrain.benchmarks.pairs import pair_rows
from wantrain.benchmarks.timing import seconds_per_call
from wantrain.losses.adversarial import discriminator_loss, generator_loss
from wantrain.nets.discriminator import build_discriminator
from wantrain.nets.upsampler import UpsampleStage
from wantrain.ranks import pick_device


class _PeakActivation:
    """Largest module output (bytes) seen during forward: a device-independent peak-memory proxy."""

    def __init__(self, model: nn.Module) -> None:
        self.bytes = 0
        self._handles = [m.register_forward_hook(self._hook) for m in model.modules()]

    def _hook(self, module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            self.bytes = max(self.bytes, out.numel() * out.element_size())

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _get(cfg: Any, key: str, default: Any) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None and default is not None else value


def run(cfg: Any) -> list[dict]:
    """Run the benchmark described by `cfg` (the `bench` node, or a config holding one); rows of a table."""
    cfg = cfg.bench if hasattr(cfg, "get") and cfg.get("bench") is not None else cfg
    dev_name = _get(cfg, "device", "auto")
    device = pick_device(dev_name)
    bf16 = _get(cfg, "precision", "fp32") == "bf16"
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    torch.manual_seed(int(_get(cfg, "seed", 0)))
    if _get(cfg, "threads", None):
        torch.set_num_threads(int(_get(cfg, "threads", None)))
    b, t, s = int(_get(cfg, "batch", 1)), int(_get(cfg, "frames", 4)), int(_get(cfg, "size", 32))
    warmup, repeats = int(_get(cfg, "warmup", 1)), int(_get(cfg, "repeats", 3))
    stage = UpsampleStage(channels=int(_get(cfg, "channels", 16)), num_blocks=int(_get(cfg, "num_blocks", 2)),
                          detail_blocks=int(_get(cfg, "detail_blocks", 1)),
                          temporal_kernel=int(_get(cfg, "temporal_kernel", 3)),
                          upsample=str(_get(cfg, "upsample", "nearest")), zero_init_last=False).to(device)
    disc = build_discriminator(str(_get(cfg, "discriminator", "unet")),
                               channels=int(_get(cfg, "disc_channels", 16))).to(device)
    lr = torch.rand(b, 3, t, s, s, device=device) * 2 - 1
    hr = torch.rand(b, 3, t, 2 * s, 2 * s, device=device) * 2 - 1
    common = {"setup": f"{device.type} {'bf16' if bf16 else 'fp32'}"
                       + (f" {torch.get_num_threads()}thr" if device.type == "cpu" else "")}
    params = sum(p.numel() for p in stage.parameters())

    def g_step() -> None:
        stage.zero_grad(set_to_none=True)
        with amp:
            sr = stage(lr)
            loss = (sr.float() - hr).abs().mean() + 0.1 * generator_loss(disc(sr))
        loss.backward()

    def d_step() -> None:
        disc.zero_grad(set_to_none=True)
        with amp:
            loss = discriminator_loss(disc(hr), disc(hr.flip(-1)))
        loss.backward()

    rows = []
    sec = seconds_per_call(g_step, device, warmup, repeats)
    rows.append({**common, "part": "G fwd+bwd (L1+GAN)", "shape": f"{b}x3x{t}x{s}x{s}", "params": params,
                 "ms_per_clip": round(1e3 * sec / b, 2), "frames_per_s": round(b * t / sec, 2)})
    sec = seconds_per_call(d_step, device, warmup, repeats)
    rows.append({**common, "part": f"D[{_get(cfg, 'discriminator', 'unet')}] fwd+bwd real+fake",
                 "shape": f"{b}x3x{t}x{2 * s}x{2 * s}", "params": sum(p.numel() for p in disc.parameters()),
                 "ms_per_clip": round(1e3 * sec / b, 2), "frames_per_s": round(b * t / sec, 2)})

    big = int(_get(cfg, "tiled_size", 96))
    x = torch.rand(1, 3, t, big, big, device=device) * 2 - 1
    tile, overlap = int(_get(cfg, "tile", 32)), int(_get(cfg, "overlap", 8))
    chunk = _get(cfg, "chunk", None)
    chunk = int(chunk) if chunk is not None else None
    outputs = {}
    stage.eval()
    for name, fn in (("untiled", lambda: stage(x)),
                     ("tiled", lambda: stage.tiled(x, tile=tile, overlap=overlap, chunk=chunk,
                                                   chunk_overlap=int(_get(cfg, "chunk_overlap", 2))))):
        probe = _PeakActivation(stage)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad(), amp:
            sec = seconds_per_call(lambda name=name, fn=fn: outputs.__setitem__(name, fn()), device, warmup, repeats)
        probe.close()
        row = {**common, "part": f"infer {name}", "shape": f"1x3x{t}x{big}x{big}",
               "ms_per_clip": round(1e3 * sec, 2), "frames_per_s": round(t / sec, 2),
               "max_act_mb": round(probe.bytes / 2**20, 2),
               "tile": f"{tile}/{overlap}" + (f", chunk {chunk}" if chunk else "") if name == "tiled" else "-"}
        if device.type == "cuda":
            row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        rows.append(row)
    rows[-1]["max_diff"] = float((outputs["tiled"].float() - outputs["untiled"].float()).abs().max())
    stages = list(_get(cfg, "pair_stages", []) or [])
    if stages:
        rows += pair_rows(stages, list(_get(cfg, "pair_overrides", []) or []), str(_get(cfg, "pair_gpu", "H100")),
                          float(_get(cfg, "pair_mfu", 0.35)), int(_get(cfg, "repeats", 3)), int(_get(cfg, "seed", 0)))
    return rows

"""`bench upsampler`'s data-path rows: per `sr_stage*`, the host time to make one training batch's LR/HR pairs (crop,
USM, the stage's degradations with JPEG and codec; one thread, as in a DataLoader worker) against the GPU step
`bench plan` predicts for the same batch, what share of each step the GPU would wait if the pairs were made in the
step, and how many workers hide them; with `model.make_pairs=step` only the video codecs stay on the host (the
rest runs on the GPU in the step): their time per batch on one thread, and the GPU's wait while 16 host threads run
them in the step (they sit on its critical path)."""

from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from wantrain.benchmarks import plan
from wantrain.benchmarks.step import compose_train_config
from wantrain.config_tree import config_dir
from wantrain.degradations.ops import codec_compress
from wantrain.degradations.pairs import PairTransform
from wantrain.degradations.pipeline import DegradeConfig


def clips(batch: int, frames: int, size: int, seed: int) -> torch.Tensor:
    """(B, 3, T, S, S) in [-1, 1]: smooth random content with fine noise (codec and JPEG work on real detail)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, frames, max(1, size // 8), max(1, size // 8), generator=g)
    smooth = F.interpolate(coarse, size=(frames, size, size), mode="trilinear", align_corners=False)
    return (smooth + 0.05 * torch.randn(smooth.shape, generator=g)).clamp(0, 1) * 2 - 1


def codec_seconds(cfg: DegradeConfig, lr: torch.Tensor) -> float:
    """Host seconds of one batch's video codecs on one thread: every LR clip (B, 3, T, h, w) through the stage's
    first codec at its mid bit rate (CRF), times the share of clips that draw a codec."""
    if cfg.real is not None:
        share, codec = cfg.real.prob * cfg.real.codec_prob, cfg.real.codecs[0]
        rate = torch.full((lr.shape[0],), sum(cfg.real.codec_bitrate) / 2)
        args = {"crf": None, "codec": codec, "bitrate": rate}
    else:
        share, args = cfg.codec_prob, {"crf": torch.full((lr.shape[0],), sum(cfg.codec_crf) // 2)}
    if share == 0:
        return 0.0
    start = time.perf_counter()
    codec_compress(lr, **args)
    return share * (time.perf_counter() - start)


def pair_rows(stages: list[str], overrides: list[str], gpu: str, mfu: float, repeats: int, seed: int) -> list[dict]:
    """One row per stage (see the module docstring)."""
    plan_cfg = OmegaConf.load(config_dir() / "bench" / "plan.yaml")
    plan_cfg.update({"gpu": gpu, "mfu": mfu})
    rows = []
    threads = torch.get_num_threads()
    for stage in stages:
        train = compose_train_config([f"+experiment={stage}", *overrides])
        model, data = train.model, train.data
        degrade = DegradeConfig.from_dict(OmegaConf.to_container(model.degrade, resolve=True))
        transform = PairTransform(degrade, model.get("crop_size"), OmegaConf.to_container(model.usm, resolve=True)
                                  if model.get("usm") else None)
        b, t, size = int(data.batch_size), int(data.num_frames), int(data.resolution)
        video = clips(b, t, size, seed)
        torch.set_num_threads(1)  # a DataLoader worker runs one thread
        try:
            seconds = []
            for r in range(repeats):
                start = time.perf_counter()
                pair = transform({"video": video.clone()}, torch.Generator().manual_seed(seed + r))
                seconds.append(time.perf_counter() - start)
            codec = statistics.median(codec_seconds(degrade, pair["lr"]) for _ in range(repeats))
        finally:
            torch.set_num_threads(threads)
        host = statistics.median(seconds)
        plan_cfg.overrides = [f"+experiment={stage}", *overrides]
        planned = plan.run(plan_cfg)[0]
        gpu_step = b / planned[f"samples_s_{gpu}"]
        rows.append({"part": f"pairs {stage} (host, 1 thread)", "shape": f"{b}x3x{t}x{size}x{size}",
                     "host_s_per_batch": round(host, 3), f"gpu_step_s_{gpu}": round(gpu_step, 4),
                     "gpu_wait_if_in_step": round(host / (host + gpu_step), 3),
                     "workers_to_hide": math.ceil(host / gpu_step),
                     "in_step_host_s": round(codec, 3),
                     "in_step_gpu_wait_16thr": round(codec / 16 / (codec / 16 + gpu_step), 3)})
    return rows

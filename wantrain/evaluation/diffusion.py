"""Evaluate the video diffusion stage on a shard set: loss per timestep bucket, first-frame fidelity, temporal
consistency and (with I3D weights) FVD of clips generated from the set's first frames and captions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from wantrain.diffusion.space import PixelSpace
from wantrain.evaluation.fvd import fvd
from wantrain.evaluation.video_metrics import first_frame_psnr, psnr, temporal_difference, temporal_jump
from wantrain.evaluation.video_quality import VideoQuality
from wantrain.inference.base import BaseModel


@torch.no_grad()
def bucket_losses(model: BaseModel, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
    """Losses (buckets, B) of `VideoDiffusion.validation_losses`, the protocol of validation in `fit`
    (noise seeded by the batch index)."""
    device = model.device
    video = batch["video"].to(device).float()
    cond = model.conditions(batch["image"], batch["caption"], video.shape[2])
    x0 = model.space.encode(video)
    return model.model.validation_losses(x0, cond, torch.Generator(device=device).manual_seed(1000 + batch_idx))


def evaluate_diffusion(model: BaseModel, batches: Iterable[dict[str, Any]], num_videos: int = 8, seed: int = 0,
                       limit_batches: int | None = None, i3d: nn.Module | None = None,
                       quality: VideoQuality | None = None, **sampling: Any) -> dict[str, float]:
    """Metrics over the batches (B, 3, T, H, W): `loss`, `loss_t{i}`, and on the first `num_videos` clips
    `first_frame_psnr`, `sample_psnr`, `tdiff`, `tdiff_real`, `tdiff_ratio`, `tdiff_jump` (+ `fvd`, + the
    video-quality metrics of `quality`: CLIP score, consistency, motion, ...)."""
    buckets = model.model.timestep_buckets
    losses, made, real, images, captions = [], [], [], [], []
    n_made = 0
    for batch_idx, batch in enumerate(batches):
        if limit_batches is not None and batch_idx >= limit_batches:
            break
        losses.append(bucket_losses(model, batch, batch_idx).cpu())
        take = min(num_videos - n_made, batch["video"].shape[0])
        if take > 0:
            image = batch["image"][:take]
            seeds = [seed + n_made + i for i in range(take)]
            made.append(model.generate(image, list(batch["caption"][:take]), seeds, **sampling).float().cpu())
            real.append(batch["video"][:take].float())
            images.append(image.float())
            captions += list(batch["caption"][:take])
            n_made += take
    if not losses:
        raise ValueError("the evaluation shards gave no batch")
    loss = torch.cat(losses, dim=1)  # (buckets, N)
    metrics: dict[str, float] = {"clips": float(loss.shape[1]), "loss": loss.mean().item()}
    metrics.update({f"loss_t{i}": loss[i].mean().item() for i in range(buckets)})
    if made:
        gen, gt, img = torch.cat(made), torch.cat(real), torch.cat(images)
        tdiff, tdiff_real = temporal_difference(gen).mean().item(), temporal_difference(gt).mean().item()
        metrics.update({
            "generated_clips": float(len(gen)),
            "first_frame_psnr": first_frame_psnr(gen, img).mean().item(),
            "sample_psnr": psnr(gen, gt).mean().item(),
            "tdiff": tdiff, "tdiff_real": tdiff_real, "tdiff_ratio": tdiff / max(tdiff_real, 1e-8),
            "tdiff_jump": temporal_jump(gen).mean().item(), "tdiff_jump_real": temporal_jump(gt).mean().item(),
        })
        if not isinstance(model.space, PixelSpace):  # vs the VAE's own reconstruction: the diffusion model alone
            recon = torch.cat([model.space.decode(model.space.encode(clip[None].to(model.device))).cpu()
                               for clip in gt])
            metrics["sample_psnr_vs_recon"] = psnr(gen, recon).mean().item()
        if i3d is not None:
            metrics["fvd"] = fvd(i3d, gt, gen)
        if quality is not None:
            metrics.update(quality(gen.to(model.device), img.to(model.device), captions))
    return metrics

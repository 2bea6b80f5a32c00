"""Metrics of an upsampler stage on (LR, HR) clips: PSNR/SSIM on RGB and luma, temporal error, LPIPS and tLP,
the plain bicubic baseline, and the LR | bicubic | SR | HR comparison frames (plain PyTorch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from wantrain.evaluation.flicker import flicker
from wantrain.evaluation.video_metrics import psnr
from wantrain.io.mp4 import to_uint8
from wantrain.losses.perceptual import LPIPSLoss


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of RGB frames (N, 3, H, W) in [0, 1] -> (N, 1, H, W) in [16/255, 235/255]."""
    w = torch.tensor([65.481, 128.553, 24.966], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (16.0 + (x * w).sum(1, keepdim=True)) / 255.0


def frames01(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> frames (B*T, 3, H, W) in [0, 1], float32."""
    return ((video.float().clamp(-1, 1) + 1) / 2).transpose(1, 2).flatten(0, 1)


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR / SSIM on RGB and on Y (per frame, averaged) of clips (B, 3, T, H, W) in [-1, 1]."""
    p, t = frames01(pred), frames01(target)
    py, ty = rgb_to_y(p), rgb_to_y(t)
    return {"psnr": psnr(p, t, data_range=1.0).mean(), "psnr_y": psnr(py, ty, data_range=1.0).mean(),
            "ssim": structural_similarity_index_measure(p, t, data_range=1.0),
            "ssim_y": structural_similarity_index_measure(py, ty, data_range=1.0)}


def temporal_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |Δt pred − Δt target| of clips (B, 3, T, H, W) in [-1, 1], in [0, 1] pixel units (0 when T == 1)."""
    if pred.shape[2] < 2:
        return pred.new_zeros((), dtype=torch.float32)
    dp, dt = pred.float().diff(dim=2), target.float().diff(dim=2)
    return (dp - dt).abs().mean() / 2


def tlp(lpips: LPIPSLoss, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """tLP: |LPIPS(pred_t, pred_t+1) − LPIPS(target_t, target_t+1)| averaged over frame pairs of (B, 3, T, H, W)."""
    if pred.shape[2] < 2:
        return pred.new_zeros((), dtype=torch.float32)
    change = lambda v: lpips.distances(v[:, :, :-1], v[:, :, 1:])  # noqa: E731  (B*(T-1),)
    return (change(pred) - change(target)).abs().mean()


def sr_metrics(pred: torch.Tensor, target: torch.Tensor, lpips: LPIPSLoss | None = None) -> dict[str, torch.Tensor]:
    """Metrics of SR clips against HR (B, 3, T, H, W) in [-1, 1]: psnr, psnr_y, ssim, ssim_y, tdiff, flicker
    (+ lpips, tlp)."""
    values = image_metrics(pred, target)
    values["tdiff"] = temporal_error(pred, target)
    values["flicker"] = flicker(pred, target)
    if lpips is not None:
        values["lpips"] = lpips(pred, target)
        values["tlp"] = tlp(lpips, pred, target)
    return values


def bicubic(lr: torch.Tensor) -> torch.Tensor:
    """Plain bicubic ×2 (the baseline) of LR clips (B, 3, T, h, w), clamped to [-1, 1]."""
    b = lr.shape[0]
    f = F.interpolate(lr.float().transpose(1, 2).flatten(0, 1), scale_factor=2, mode="bicubic", align_corners=False)
    return f.unflatten(0, (b, -1)).transpose(1, 2).clamp(-1, 1)


def comparison_frames(lr: torch.Tensor, bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """LR (nearest ×2) | bicubic | SR | HR per clip, clips stacked vertically -> (T, B*H, 4*W, 3) uint8."""
    nearest = F.interpolate(lr.float(), size=hr.shape[2:], mode="nearest")
    rows = [torch.cat([torch.from_numpy(to_uint8(v[i])) for v in (nearest, bicubic, sr, hr)], dim=2)
            for i in range(hr.shape[0])]
    return torch.cat(rows, dim=1)

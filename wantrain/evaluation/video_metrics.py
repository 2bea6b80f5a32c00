"""Per-clip metrics of generated videos: first-frame fidelity and temporal consistency (no optical flow).

Temporal consistency is measured without warping: `tdiff` is the mean absolute frame-to-frame change
mean_t |x[t+1] - x[t]| in [0, 1] pixel units (0 for a frozen clip). A generated clip should move about as much
as real clips do: `tdiff_ratio` = tdiff(generated) / tdiff(real) is ~1 for realistic motion, < 1 for clips that
are too static, > 1 for flicker. `tdiff_jump` = the largest single frame-to-frame change over the mean one
(1 for steady motion; large values flag a jump or a flash).
"""

from __future__ import annotations

import torch


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """The one PSNR: dB (B,) of each sample of (B, ...) tensors, over all its elements; `data_range` 2 for [-1, 1],
    1 for [0, 1]. Capped at 100 dB (identical inputs)."""
    mse = (pred.float() - target.float().to(pred.device)).pow(2).flatten(1).mean(1)
    peak = float(data_range) ** 2
    return (10 * torch.log10(peak / mse.clamp(min=peak * 1e-10))).clamp(max=100.0)


def first_frame_psnr(videos: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """PSNR (B,) of each clip's first frame (B, 3, T, H, W)[:, :, 0] against its conditioning image (B, 3, H, W)."""
    return psnr(videos[:, :, 0], images)


def frame_differences(videos: torch.Tensor) -> torch.Tensor:
    """Mean |x[t+1] - x[t]| per clip and frame pair (B, T-1), in [0, 1] pixel units, of clips in [-1, 1]."""
    if videos.shape[2] < 2:
        return videos.new_zeros(videos.shape[0], 0)
    return videos.float().diff(dim=2).abs().mean(dim=(1, 3, 4)) / 2


def temporal_difference(videos: torch.Tensor) -> torch.Tensor:
    """tdiff (B,): mean frame-to-frame change of each clip (B, 3, T, H, W) in [-1, 1], in [0, 1] pixel units."""
    diffs = frame_differences(videos)
    return diffs.mean(1) if diffs.shape[1] else diffs.new_zeros(videos.shape[0])


def temporal_jump(videos: torch.Tensor) -> torch.Tensor:
    """tdiff_jump (B,): the largest frame-to-frame change over the clip's mean change (1 = steady)."""
    diffs = frame_differences(videos)
    if not diffs.shape[1]:
        return diffs.new_ones(videos.shape[0])
    return diffs.max(1).values / diffs.mean(1).clamp(min=1e-8)

"""Temporal window sampling and spatial resize/crop of decoded frames into (3, T, H, W) in [-1, 1]."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F


def as_size(resolution: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`resolution` (int or (H, W)) as an (H, W) tuple."""
    if isinstance(resolution, int):
        return resolution, resolution
    h, w = (int(v) for v in resolution)
    return h, w


def frame_step(source_fps: float, frame_stride: int = 1, fps: float | None = None) -> float:
    """Source frames between two sampled frames: `source_fps / fps` when a target fps is set, else the stride."""
    if fps:
        if fps <= 0 or source_fps <= 0:
            raise ValueError(f"fps must be positive (target {fps}, source {source_fps})")
        return source_fps / fps
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    return float(frame_stride)


def frames_needed(num_frames: int, step: float) -> int:
    """Source frames a window of `num_frames` samples `step` apart spans."""
    return int(math.floor((num_frames - 1) * step + 1e-6)) + 1


def sample_window(
    num_available: int,
    num_frames: int,
    step: float,
    rng: random.Random | None = None,
    loop: bool = False,
) -> list[int] | None:
    """Source frame indices of one window: random start with `rng` (train), centred without (val).

    Returns None when the clip is too short and `loop` is off; with `loop` the clip repeats from its start.
    """
    need = frames_needed(num_frames, step)
    offsets = [int(math.floor(i * step + 1e-6)) for i in range(num_frames)]
    if num_available >= need:
        slack = num_available - need
        start = rng.randint(0, slack) if rng is not None else slack // 2
        return [start + o for o in offsets]
    if not loop or num_available < 1:
        return None
    return [o % num_available for o in offsets]


def crop_box(height: int, width: int, size: tuple[int, int],
             rng: random.Random | None = None) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the source region that covers `size` after resizing the shorter side."""
    out_h, out_w = size
    scale = max(out_h / height, out_w / width)
    ch, cw = min(height, round(out_h / scale)), min(width, round(out_w / scale))
    if rng is not None:
        top, left = rng.randint(0, height - ch), rng.randint(0, width - cw)
    else:
        top, left = (height - ch) // 2, (width - cw) // 2
    return top, left, ch, cw


def cover_size(height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    """(H', W') of a frame scaled (aspect kept) so that it just covers `size` = (h, w)."""
    scale = max(size[0] / height, size[1] / width)
    return max(size[0], round(height * scale)), max(size[1], round(width * scale))


_UNIT = (np.arange(256, dtype=np.float32) / 127.5 - 1.0).astype(np.float32)


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [-1, 1], in one table look-up pass."""
    out = np.empty((3, *frames.shape[:3]), dtype=np.float32)
    np.take(_UNIT, frames.transpose(3, 0, 1, 2), out=out, mode="clip")
    return torch.from_numpy(out)


def resize_crop(frames: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int]) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames -> crop `box`, resize to `size` -> (3, T, h, w) float32 in [-1, 1]."""
    top, left, ch, cw = box
    crop = np.ascontiguousarray(frames[:, top : top + ch, left : left + cw])
    if not crop.flags.writeable:  # e.g. an image from PIL: torch wants memory it may write
        crop = crop.copy()
    x = torch.from_numpy(crop)
    x = x.permute(0, 3, 1, 2).float()  # (T, 3, ch, cw)
    if (ch, cw) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    x = (x / 127.5 - 1.0).clamp_(-1.0, 1.0)
    return x.permute(1, 0, 2, 3).contiguous()  # (3, T, h, w)


def scale_box(box: tuple[int, int, int, int], src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """Map a crop box on an (H, W) = `src` frame onto an image of size `dst` (same relative region)."""
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    top, left, ch, cw = box
    t, lft = int(round(top * sy)), int(round(left * sx))
    return t, lft, max(1, min(dst[0] - t, int(round(ch * sy)))), max(1, min(dst[1] - lft, int(round(cw * sx))))

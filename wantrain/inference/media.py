"""Inputs and outputs of sampling: the conditioning image, PNG frame grids (mp4 files: wantrain.io.mp4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from wantrain.data.clips import crop_box, resize_crop
from wantrain.errors import WantrainError
from wantrain.io.mp4 import to_uint8


def read_image(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """An image file -> (3, H, W) float32 in [-1, 1]: shorter side resized to cover `size`, centre crop
    (the same geometry the data pipeline gives validation frames)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise WantrainError(f"image {path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise WantrainError(f"image {path} cannot be read as an image ({str(err).splitlines()[0][:120]})") from None
    box = crop_box(pixels.shape[0], pixels.shape[1], tuple(size))
    return resize_crop(pixels[None], tuple(size), box)[:, 0]


def write_grid(video: torch.Tensor, path: str | Path, cols: int | None = None) -> Path:
    """Write the frames of one clip (3, T, H, W) as a PNG grid, `cols` per row (default ceil(sqrt(T)))."""
    from PIL import Image

    frames = to_uint8(video)  # (T, H, W, 3)
    t, h, w, _ = frames.shape
    cols = int(cols or math.ceil(math.sqrt(t)))
    rows = math.ceil(t / cols)
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path

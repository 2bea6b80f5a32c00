"""Baseline JPEG in PyTorch (libjpeg's quality tables, 4:2:0, 8x8 DCT, rounding): the JPEG of a degradation batch
runs where the batch is (on the GPU in the training step), as BasicSR's `DiffJPEG` does for Real-ESRGAN.

Written here rather than taken from BasicSR: its DiffJPEG scales the tables without libjpeg's rounding and clamping
and rounds differently, so its quality q is not Pillow's q; this one follows libjpeg (jcparam.c `jpeg_quality_scaling`,
`jpeg_add_quant_table` with force_baseline; jccolor.c / jdcolor.c JFIF YCbCr; 2x2 chroma averaging and the
triangular "fancy" upsampling of jdsample.c), so it matches Pillow's JPEG (tested). Nothing here is differentiable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU T.81 Annex K tables (libjpeg jcparam.c std_luminance_quant_tbl / std_chrominance_quant_tbl), row-major
LUMA_TABLE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
              14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
              49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
CHROMA_TABLE = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32))

# JFIF RGB <-> YCbCr (0..255, chroma centred on 128)
_TO_YCC = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's luma and chroma tables for qualities (N,) in 1..100 -> ((N, 8, 8), (N, 8, 8)) float32."""
    q = quality.long().clamp(1, 100)
    scale = torch.where(q < 50, torch.div(5000, q, rounding_mode="floor"), 200 - 2 * q)[:, None]  # percent

    def scaled(table: tuple[int, ...]) -> torch.Tensor:
        base = torch.tensor(table, dtype=torch.long, device=q.device)[None]
        return torch.div(base * scale + 50, 100, rounding_mode="floor").clamp(1, 255).float().view(-1, 8, 8)

    return scaled(LUMA_TABLE), scaled(CHROMA_TABLE)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """Orthonormal 8-point DCT-II matrix D (8, 8): coefficients = D @ block @ D.T."""
    k = torch.arange(8, dtype=torch.float32, device=device)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d


def _quantize(plane: torch.Tensor, table: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """One plane (N, H, W) (H, W multiples of 8, values 0..255) through DCT, quantization by table (N, 8, 8), IDCT."""
    n, h, w = plane.shape
    blocks = (plane - 128).view(n, h // 8, 8, w // 8, 8).transpose(2, 3)  # (N, H/8, W/8, 8, 8)
    coef = d @ blocks @ d.T
    t = table[:, None, None]
    # libjpeg rounds the quotient half away from zero (jcdctmgr.c); torch.round would round half to even
    coef = torch.sign(coef) * torch.floor(coef.abs() / t + 0.5) * t
    return (d.T @ coef @ d).transpose(2, 3).reshape(n, h, w) + 128


def jpeg(frames: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-compress and decode frames (N, 3, H, W) in [0, 1] at qualities (N,) -> (N, 3, H, W) in [0, 1], 8-bit
    values, on the frames' device."""
    n, _, h, w = frames.shape
    x = frames.float() * 255
    ph, pw = -h % 16, -w % 16  # whole 16x16 MCUs, edges replicated as libjpeg does
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    to_ycc = torch.tensor(_TO_YCC, device=x.device)
    ycc = torch.einsum("ij,njhw->nihw", to_ycc, x) + torch.tensor([0.0, 128, 128], device=x.device).view(1, 3, 1, 1)
    ycc = ycc.round().clamp(0, 255)
    luma_table, chroma_table = quant_tables(quality.to(x.device))
    d = _dct_matrix(x.device)
    y = _quantize(ycc[:, 0], luma_table, d)
    chroma = F.avg_pool2d(ycc[:, 1:], 2)  # 4:2:0
    cb, cr = (_quantize(chroma[:, i], chroma_table, d) for i in (0, 1))
    chroma = torch.stack([cb, cr], 1).round().clamp(0, 255)
    # jdsample.c h2v2 fancy upsampling = bilinear at half-pixel centres with replicated edges
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    ycc = torch.cat([y.round().clamp(0, 255)[:, None], chroma], 1) - torch.tensor([0.0, 128, 128],
                                                                                   device=x.device).view(1, 3, 1, 1)
    rgb = torch.einsum("ij,njhw->nihw", torch.tensor(_TO_RGB, device=x.device), ycc)
    return (rgb.round().clamp(0, 255) / 255)[..., :h, :w].to(frames.dtype)

"""Real-ESRGAN second-order degradation (+ RealBasicVSR video compression) of HR clips into LR clips.

Per clip, one set of parameters (kernels, resize factors and modes, noise kind/level/gray, JPEG qualities,
codec and bitrate) is drawn from the torch.Generator and applied to every frame alike, as RealBasicVSR does
for sequences; only the noise realisation differs from frame to frame (sensor noise), with the same level.

Order (Real-ESRGAN `RealESRGANModel.feed_data`): blur1 → resize1 → noise1 → JPEG1 → [with second_order_prob:
blur2 (second_blur_prob) → resize2 → noise2] → in random order {resize to the LR size + final sinc
(final_sinc_prob), JPEG2} → video compression (RealBasicVSR) → round to 8 bits.
Defaults are the Real-ESRGAN x2plus / x4plus options (options/train_realesrgan_x4plus.yml), noise levels in
0..255 units; codec settings from RealBasicVSR (libx264 / mpeg4, 1e4..1e5 bit/s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wantrain.degradations.kernels import KERNELS, filter_frames, random_kernel, sinc_kernel
from wantrain.degradations.ops import codec_compress, downsample, jpeg_compress, map_clips, randn
from wantrain.schema import check_options, option

CODECS = ("libx264", "h264", "mpeg4")  # PyAV encoders RealBasicVSR draws from

KERNEL_PROB = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


@dataclass
class RealDegradeConfig:
    """Probabilities and ranges of the second-order pipeline (each sampled once per clip)."""

    prob: float = option(1.0, "clips that get this pipeline; the rest get the plain `mode` downsample", ge=0, le=1)
    kernel_size: tuple[int, int] = option((7, 21), "odd sizes drawn in this range (both orders and the final sinc)",
                                          ge=3)
    # first order
    kernel_list: tuple[str, ...] = option(KERNELS, "blur kernel kinds (first order)", choices=KERNELS)
    kernel_prob: tuple[float, ...] = option(KERNEL_PROB, "probability of each kernel kind", ge=0, le=1)
    sinc_prob: float = option(0.1, "share of sinc kernels (first order)", ge=0, le=1)
    blur_sigma: tuple[float, float] = option((0.2, 3.0), "Gaussian kernel sigma range", gt=0)
    betag_range: tuple[float, float] = option((0.5, 4.0), "generalized Gaussian shape range", gt=0)
    betap_range: tuple[float, float] = option((1.0, 2.0), "plateau kernel shape range", gt=0)
    resize_prob: tuple[float, float, float] = option((0.2, 0.7, 0.1), "up, down, keep", ge=0, le=1)
    resize_range: tuple[float, float] = option((0.15, 1.5), "resize factor range", gt=0)
    resize_modes: tuple[str, ...] = option(("area", "bilinear", "bicubic"), "resize filters drawn from",
                                           choices=("area", "bilinear", "bicubic"))
    gaussian_noise_prob: float = option(0.5, "else Poisson", ge=0, le=1)
    noise_range: tuple[float, float] = option((1.0, 30.0), "Gaussian σ, 0..255 units", ge=0)
    poisson_scale_range: tuple[float, float] = option((0.05, 3.0), "Poisson noise scale range", gt=0)
    gray_noise_prob: float = option(0.4, "share of gray (channel-shared) noise", ge=0, le=1)
    jpeg_prob: float = option(1.0, "share of JPEG-compressed clips", ge=0, le=1)
    jpeg_range: tuple[int, int] = option((30, 95), "JPEG quality range", ge=1, le=100)
    # second order
    second_order_prob: float = option(1.0, "share of clips with the second order", ge=0, le=1)
    second_blur_prob: float = option(0.8, "share of second-order blurs", ge=0, le=1)
    kernel_list2: tuple[str, ...] = option(KERNELS, "blur kernel kinds (second order)", choices=KERNELS)
    kernel_prob2: tuple[float, ...] = option(KERNEL_PROB, "probability of each kernel kind (second order)", ge=0, le=1)
    sinc_prob2: float = option(0.1, "share of sinc kernels (second order)", ge=0, le=1)
    blur_sigma2: tuple[float, float] = option((0.2, 1.5), "Gaussian kernel sigma range (second order)", gt=0)
    betag_range2: tuple[float, float] = option((0.5, 4.0), "generalized Gaussian shape range (second order)", gt=0)
    betap_range2: tuple[float, float] = option((1.0, 2.0), "plateau kernel shape range (second order)", gt=0)
    resize_prob2: tuple[float, float, float] = option((0.3, 0.4, 0.3), "up, down, keep (second order)", ge=0, le=1)
    resize_range2: tuple[float, float] = option((0.3, 1.2), "resize factor range (second order)", gt=0)
    gaussian_noise_prob2: float = option(0.5, "else Poisson (second order)", ge=0, le=1)
    noise_range2: tuple[float, float] = option((1.0, 25.0), "Gaussian sigma range, 0..255 units (second order)", gt=0)
    poisson_scale_range2: tuple[float, float] = option((0.05, 2.5), "Poisson noise scale range (second order)", gt=0)
    gray_noise_prob2: float = option(0.4, "share of gray noise (second order)", ge=0, le=1)
    jpeg_prob2: float = option(1.0, "share of second JPEG compressions", ge=0, le=1)
    jpeg_range2: tuple[int, int] = option((30, 95), "JPEG quality range (second order)", ge=1, le=100)
    final_sinc_prob: float = option(0.8, "share of final sinc filters", ge=0, le=1)
    # video compression (RealBasicVSR), after everything else
    codec_prob: float = option(1.0, "share of codec-compressed clips", ge=0, le=1)
    codecs: tuple[str, ...] = option(("libx264", "mpeg4"), "encoders drawn from", choices=CODECS)
    codec_bitrate: tuple[float, float] = option((1e4, 1e5), "bit rate range (per frame: rate=1, RealBasicVSR)", gt=0)

    @classmethod
    def from_dict(cls, values: dict | None) -> RealDegradeConfig:
        """From a (Hydra) mapping; lists become tuples; OptionError (one line) on an unknown key or a bad value."""
        values = dict(values or {})
        check_options("model.degrade.real", values, cls)
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()})


def _u(lo: float, hi: float, g: torch.Generator | None) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=g))


def _p(prob: float, g: torch.Generator | None) -> bool:
    return float(torch.rand((), generator=g)) < prob


def _choice(options: tuple, g: torch.Generator | None, probs: tuple[float, ...] | None = None):
    w = torch.tensor(probs if probs is not None else [1.0] * len(options), dtype=torch.float64)
    return options[int(torch.multinomial(w / w.sum(), 1, generator=g))]


def _resize(f: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Frames (N, C, H, W) -> (N, C, *size) by area / bilinear / bicubic (no antialias, as Real-ESRGAN)."""
    if tuple(f.shape[-2:]) == tuple(size):
        return f
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(f, size=size, mode=mode, **kw)


def _random_resize(f: torch.Tensor, probs: tuple, rng: tuple, modes: tuple, base: tuple[int, int],
                   g: torch.Generator | None) -> torch.Tensor:
    """Resize to base·s with s up in (1, hi), down in (lo, 1) or 1 by `probs`, in a random mode."""
    kind = _choice(("up", "down", "keep"), g, probs)
    s = _u(1.0, rng[1], g) if kind == "up" else _u(rng[0], 1.0, g) if kind == "down" else 1.0
    mode = _choice(modes, g)
    return _resize(f, (max(2, round(base[0] * s)), max(2, round(base[1] * s))), mode)


def _noise(f: torch.Tensor, gauss_prob: float, sigma: tuple, poisson: tuple, gray_prob: float,
           g: torch.Generator | None, noise_g: torch.Generator | None) -> torch.Tensor:
    """Gaussian (σ/255) or Poisson (8-bit shot noise × scale) noise, gray (one for all channels) with gray_prob,
    clipped to [0, 1] (Real-ESRGAN `random_add_gaussian_noise_pt` / `random_add_poisson_noise_pt` with clip=True).
    Parameters from g, the realisation from noise_g (on its device)."""
    gaussian, gray = _p(gauss_prob, g), _p(gray_prob, g)
    level = _u(*sigma, g) / 255.0 if gaussian else _u(*poisson, g)
    n, c, h, w = f.shape
    if gaussian:
        noise = randn(f[:, :1] if gray else f, noise_g) * level
    else:
        img = (f * torch.tensor([0.299, 0.587, 0.114]).to(f).view(1, 3, 1, 1)).sum(1, keepdim=True) if gray else f
        img = img.clamp(0, 1)
        device = noise_g.device if noise_g is not None else f.device
        noise = (torch.poisson(img.float().to(device) * 255.0, generator=noise_g).to(f) / 255.0 - img) * level
    return (f + noise.expand_as(f)).clamp(0, 1)


def _jpeg(f: torch.Tensor, rng: tuple, g: torch.Generator | None, backend: str) -> torch.Tensor:
    """JPEG of every frame with one quality drawn from rng (frames in [0, 1])."""
    q = torch.tensor([int(torch.randint(int(rng[0]), int(rng[1]) + 1, (), generator=g))])
    video = (f.clamp(0, 1) * 2 - 1).transpose(0, 1)[None]  # (1, C, T, H, W)
    return (jpeg_compress(video, q, backend)[0].transpose(0, 1) + 1) / 2


def degrade_clip(frames: torch.Tensor, lr_size: tuple[int, int], cfg: RealDegradeConfig,
                 g: torch.Generator | None, noise_g: torch.Generator | None = None, jpeg_backend: str = "pil",
                 ) -> tuple[torch.Tensor, tuple[str, float] | None]:
    """One clip's frames (T, C, H, W) in [0, 1] -> (LR frames (T, C, *lr_size) in [0, 1] before the video codec,
    the codec and bit rate drawn for it or None). `real_degrade` runs the codecs of a batch together, last."""
    noise_g = noise_g or g
    h, w = frames.shape[-2:]
    ks = cfg.kernel_size
    f = filter_frames(frames, random_kernel(list(cfg.kernel_list), list(cfg.kernel_prob), ks, cfg.blur_sigma,
                                            cfg.betag_range, cfg.betap_range, cfg.sinc_prob, g))
    f = _random_resize(f, cfg.resize_prob, cfg.resize_range, cfg.resize_modes, (h, w), g)
    f = _noise(f, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range, cfg.gray_noise_prob, g, noise_g)
    if _p(cfg.jpeg_prob, g):
        f = _jpeg(f, cfg.jpeg_range, g, jpeg_backend)
    if _p(cfg.second_order_prob, g):
        if _p(cfg.second_blur_prob, g):
            f = filter_frames(f, random_kernel(list(cfg.kernel_list2), list(cfg.kernel_prob2), ks, cfg.blur_sigma2,
                                               cfg.betag_range2, cfg.betap_range2, cfg.sinc_prob2, g))
        f = _random_resize(f, cfg.resize_prob2, cfg.resize_range2, cfg.resize_modes, lr_size, g)
        f = _noise(f, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2, cfg.gray_noise_prob2, g,
                   noise_g)
    # final: resize to the LR size + sinc, and JPEG2, in random order (Real-ESRGAN)
    mode = _choice(cfg.resize_modes, g)
    sinc = None
    if _p(cfg.final_sinc_prob, g):
        size = 2 * int(torch.randint(ks[0] // 2, ks[1] // 2 + 1, (), generator=g)) + 1
        sinc = sinc_kernel(size, _u(math.pi / 3, math.pi, g))
    jpeg_first, jpeg_on = _p(0.5, g), _p(cfg.jpeg_prob2, g)
    quality_rng = cfg.jpeg_range2

    def resize_sinc(v: torch.Tensor) -> torch.Tensor:
        v = _resize(v, lr_size, mode)
        return filter_frames(v, sinc) if sinc is not None else v

    if jpeg_first:
        f = resize_sinc(_jpeg(f, quality_rng, g, jpeg_backend) if jpeg_on else f)
    else:
        f = resize_sinc(f)
        f = _jpeg(f, quality_rng, g, jpeg_backend) if jpeg_on else f
    codec = None
    if _p(cfg.codec_prob, g):
        name = _choice(cfg.codecs, g)
        codec = (name, _u(*cfg.codec_bitrate, g))
    return f, codec


def _codec(frames: torch.Tensor, codec: tuple[str, float] | None) -> torch.Tensor:
    """A clip's LR frames (T, C, h, w) in [0, 1] through its video codec (None: unchanged), rounded to 8 bits."""
    if codec is not None:
        video = (frames.clamp(0, 1) * 2 - 1).transpose(0, 1)[None]
        frames = (codec_compress(video, None, codec[0], torch.tensor([codec[1]]))[0].transpose(0, 1) + 1) / 2
    return (frames.clamp(0, 1) * 255).round() / 255


def real_degrade(hr: torch.Tensor, scale: int, cfg: RealDegradeConfig, fallback_mode: str = "area",
                 generator: torch.Generator | None = None, noise_generator: torch.Generator | None = None,
                 jpeg_backend: str = "pil", codec_threads: int = 1) -> torch.Tensor:
    """HR clips (B, C, T, H, W) in [-1, 1] -> LR (B, C, T, H/scale, W/scale) in [-1, 1]; each clip is degraded
    by the pipeline with probability cfg.prob (one parameter set for all its frames), else plainly downsampled.
    The batch's video codecs run last, over `codec_threads` host threads (they are the pipeline's last step)."""
    b, c, t, h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f"frame size {(h, w)} is not divisible by {scale}: crop or resize first")
    lr_size = (h // scale, w // scale)
    if cfg.codec_prob > 0 and (lr_size[0] % 2 or lr_size[1] % 2):
        raise ValueError(f"video compression needs an even LR size, got {lr_size}: crop, or set degrade.real."
                         "codec_prob=0")
    out, degraded = [], []
    for i in range(b):
        if _p(cfg.prob, generator):
            frames = (hr[i].transpose(0, 1).float() + 1) / 2  # (T, C, H, W) in [0, 1]
            out.append(degrade_clip(frames, lr_size, cfg, generator, noise_generator, jpeg_backend))
            degraded.append(i)
        else:
            out.append(downsample(hr[i:i + 1], scale, fallback_mode)[0])
    coded = map_clips(lambda j: _codec(*out[degraded[j]]), len(degraded), codec_threads)
    for i, frames in zip(degraded, coded):
        out[i] = (frames.transpose(0, 1) * 2 - 1).to(hr)
    return torch.stack(out)

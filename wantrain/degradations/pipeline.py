"""HR -> LR degradation for upsampler training: first order (blur, downsample, noise, JPEG, codec) or the Real-ESRGAN
second order (`real`), then noise augmentation.

Pure functions on videos (B, C, T, H, W) in [-1, 1]; randomness only from the given torch.Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wantrain.degradations.ops import (
    JPEG_BACKENDS,
    add_noise,
    codec_compress,
    downsample,
    gaussian_blur,
    jpeg_compress,
    noise_augment,
)
from wantrain.degradations.real import RealDegradeConfig, real_degrade
from wantrain.schema import option


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


@dataclass
class DegradeConfig:
    """Parameters of `degrade` (probabilities per clip; ranges sampled uniformly)."""

    scale: int = option(2, "downsampling factor (every cascade stage is x2)", choices=(2,))
    mode: str = option("area", "downsampling filter", choices=("area", "bicubic", "bilinear"))
    blur_prob: float = option(0.0, "share of clips blurred", ge=0, le=1)
    blur_sigma: tuple[float, float] = option((0.2, 1.2), "Gaussian blur sigma range (LR pixels)", ge=0)
    noise_prob: float = option(0.0, "share of clips with Gaussian noise", ge=0, le=1)
    noise_sigma: tuple[float, float] = option((0.0, 0.04), "noise sigma range ([-1, 1] units)", ge=0)
    jpeg_prob: float = option(0.0, "share of clips JPEG-compressed", ge=0, le=1)
    jpeg_quality: tuple[int, int] = option((40, 95), "JPEG quality range", ge=1, le=100)
    codec_prob: float = option(0.0, "share of clips compressed by a video codec", ge=0, le=1)
    codec_crf: tuple[int, int] = option((18, 32), "x264 CRF range", ge=0, le=51)
    jpeg_backend: str = option("auto", "JPEG by Pillow on the host or in PyTorch where the batch is (auto: PyTorch "
                                       "on an accelerator, Pillow on the host)", choices=JPEG_BACKENDS)
    noise_aug_max: float = option(0.0, "Imagen noise augmentation level (needs generator.noise_conditioning)", ge=0,
                                  le=1)
    real: RealDegradeConfig | dict | None = option(None, "the Real-ESRGAN second-order pipeline instead of "
                                                         "blur + downsample (null: off)")

    @classmethod
    def from_dict(cls, values: dict | None) -> DegradeConfig:
        """From a (Hydra) mapping of `model.degrade`: lists become tuples."""
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(values or {}).items()})

    def __post_init__(self) -> None:
        if isinstance(self.real, dict) or (self.real is not None and not isinstance(self.real, RealDegradeConfig)):
            self.real = RealDegradeConfig.from_dict(dict(self.real))


def degrade(hr: torch.Tensor, cfg: DegradeConfig | None = None, generator: torch.Generator | None = None,
            noise_generator: torch.Generator | None = None, codec_threads: int = 1,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """HR (B, C, T, H, W) -> (LR (B, C, T, H/s, W/s), noise-augmentation level (B,) in [0, 1]).

    LR is in [-1, 1] except for the (unclamped, Imagen-style) Gaussian noise augmentation. Parameters come from
    `generator` (CPU), noise realisations from `noise_generator` (default: `generator`; on the data's device it
    keeps a GPU batch's noise on the GPU); codec clips run over `codec_threads` host threads.

    Order (Real-ESRGAN first order): blur -> downsample -> noise -> JPEG -> codec -> noise augmentation;
    with `cfg.real` the second-order pipeline (`real.real_degrade`) replaces blur -> downsample.
    """
    cfg = cfg or DegradeConfig()
    b = hr.shape[0]
    noise_generator = noise_generator or generator

    def pick(p: float) -> torch.Tensor:
        return torch.rand(b, generator=generator) < p

    x = hr
    if cfg.real is not None:
        x = real_degrade(x, cfg.scale, cfg.real, cfg.mode, generator, noise_generator, cfg.jpeg_backend,
                         codec_threads)
    else:
        if cfg.blur_prob > 0:
            on = pick(cfg.blur_prob)
            sigma = _uniform(b, *cfg.blur_sigma, generator) * on
            x = torch.where(on.to(x.device)[:, None, None, None, None], gaussian_blur(x, sigma), x) if on.any() else x
        x = downsample(x, cfg.scale, cfg.mode)
    if cfg.noise_prob > 0:
        sigma = _uniform(b, *cfg.noise_sigma, generator) * pick(cfg.noise_prob)
        x = add_noise(x, sigma, noise_generator)
    if cfg.jpeg_prob > 0:
        on = pick(cfg.jpeg_prob)
        q = torch.randint(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1, (b,), generator=generator)
        if on.any():
            x = torch.where(on.to(x.device)[:, None, None, None, None], jpeg_compress(x, q, cfg.jpeg_backend), x)
    if cfg.codec_prob > 0:
        on = pick(cfg.codec_prob)
        crf = torch.randint(cfg.codec_crf[0], cfg.codec_crf[1] + 1, (b,), generator=generator)
        if on.any():
            coded = codec_compress(x, crf, threads=codec_threads)
            x = torch.where(on.to(x.device)[:, None, None, None, None], coded, x)
    level = _uniform(b, 0.0, cfg.noise_aug_max, generator) if cfg.noise_aug_max > 0 else torch.zeros(b)
    if cfg.noise_aug_max > 0:
        x = noise_augment(x, level, noise_generator)
    return x, level.to(hr.device)

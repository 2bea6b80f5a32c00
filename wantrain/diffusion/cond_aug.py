"""Condition-frame noise augmentation (`cond_aug`): Gaussian noise on the first-frame conditioning, its level told to
the UNet as micro-conditioning (SVD's `cond_aug`, CogVideoX's image-latent noise).

A clean conditioning frame lets the model copy it and freeze the clip; with noise on it the model must use it as a
hint. Training draws a log-normal level per clip (CogVideoX I2V: sigma = exp(N(-3.0, 0.5)), median 0.05); sampling
uses one fixed level (SVD samples with cond_aug = 0.02). Shapes: frames (B, C, T, H, W) model space; levels (B,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wantrain.schema import check_instance, option

MICRO_NAME = "cond_aug"  # the name in model.unet.micro_conditioning
MICRO_SCALE = 1000.0  # the level enters the sinusoidal embedding x1000, like a diffusion timestep (0.02 -> 20)
SEED_OFFSET = 1_000_003  # sampling: clip i's conditioning noise comes from seed_i + SEED_OFFSET (its own stream)


def first_frame_copies(frames: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, 1, 1) mask of the conditioning frames that are copies of frame 0: every frame in pixel space (the
    image repeated), frame 0 alone for zero-padded latents (Wan2.1 I2V)."""
    same = (frames == frames[:, :, :1]).flatten(3).all(-1).all(1)  # (B, T)
    return same.to(frames.dtype)[:, None, :, None, None]


def noise_frames(frames: torch.Tensor, levels: torch.Tensor, generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None, image_frames: torch.Tensor | None = None) -> torch.Tensor:
    """frames + level * noise on every frame that carries the image, the SAME noise on each (independent copies would
    average back to the clean frame; a clean copy beside a noisy one would give the level away). `image_frames` (T,)
    bool: those frames (`Space.image_frames`; default: the exact copies of frame 0). `noise` (B, C, 1, H, W): given,
    or drawn from `generator`."""
    b, c, _, h, w = frames.shape
    if noise is None:
        gen_device = generator.device if generator is not None else frames.device
        noise = torch.randn((b, c, 1, h, w), generator=generator, device=gen_device)
    noise = noise.to(frames.device, frames.dtype)
    if image_frames is None:
        carries = first_frame_copies(frames)
    else:
        carries = image_frames.to(frames.device, frames.dtype).view(1, 1, -1, 1, 1)
    return frames + levels.to(frames.device, frames.dtype).view(b, 1, 1, 1, 1) * noise * carries


def micro_value(levels: torch.Tensor) -> torch.Tensor:
    """The micro-conditioning scalar (B,) of noise levels (B,)."""
    return levels.float() * MICRO_SCALE


@dataclass
class CondAug:
    """Training distribution of the conditioning-frame noise level: log-normal exp(N(log_mean, log_std)), clipped to
    `max_level`, and 0 (clean) with probability `p_clean`."""

    log_mean: float = option(-3.0, "mean of the log noise level")
    log_std: float = option(0.5, "std of the log noise level", ge=0)
    max_level: float = option(1.0, "largest noise level", gt=0)
    p_clean: float = option(0.0, "share of clips with a clean condition", ge=0, le=1)

    def __post_init__(self) -> None:
        check_instance(self, "model.cond_aug")

    def levels(self, batch_size: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise levels (B,) float32 for a training batch."""
        gen_device = generator.device if generator is not None else device
        normal = torch.randn(batch_size, generator=generator, device=gen_device)
        levels = torch.exp(self.log_mean + self.log_std * normal).clamp(max=self.max_level)
        if self.p_clean:
            clean = torch.rand(batch_size, generator=generator, device=gen_device) < self.p_clean
            levels = levels.masked_fill(clean, 0.0)
        return levels.to(device)

"""Training noise schedule (betas from diffusers' DDPMScheduler), forward noising, targets, SNR, loss weights.

Pure functions over an `alphas_cumprod` (num_train_timesteps,) tensor, plus `NoiseSchedule`, a small
holder that the training module and the samplers share (so betas and prediction_type always agree).
Shapes: x0 / noise / x_t are (B, C, T, H, W) (any (B, ...) works); t is (B,) long.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2",
                  "squaredcos_cap_v2": "squaredcos_cap_v2"}


def _bcast(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather per-sample values[t] (B,) and shape them (B, 1, 1, ...) to broadcast against `like`."""
    out = values.to(device=like.device)[t.to(like.device).long()].float()
    return out.view(-1, *([1] * (like.ndim - 1)))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise."""
    a = _bcast(alphas_cumprod, t, x0)
    return (a.sqrt() * x0.float() + (1 - a).sqrt() * noise.float()).to(x0.dtype)


def velocity(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """v = sqrt(a_t) noise - sqrt(1 - a_t) x0 (Salimans & Ho)."""
    a = _bcast(alphas_cumprod, t, x0)
    return (a.sqrt() * noise.float() - (1 - a).sqrt() * x0.float()).to(x0.dtype)


def training_target(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """What the network regresses: noise ('epsilon'), v ('v_prediction') or x0 ('sample')."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return velocity(x0, noise, t, alphas_cumprod)
    if prediction_type == "sample":
        return x0
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def snr(t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio a_t / (1 - a_t) at (B,) timesteps -> (B,) float32."""
    a = alphas_cumprod.to(t.device)[t.long()].float()
    return a / (1 - a)


def frame_mean(err: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample (B,) mean of a squared error (B, C, T, H, W); with `frames` (B, T), the mean over the frames of
    weight 1 only (DiffSynth-Studio's FlowMatchSFTLoss drops the given first frame: loss on [:, :, 1:])."""
    if frames is None:
        return err.flatten(1).mean(1)
    per_frame = err.mean(dim=(1, 3, 4))  # (B, T)
    w = frames.to(per_frame.dtype)
    return (per_frame * w).sum(1) / w.sum(1).clamp(min=1)


def loss_weight(
    t: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str, weighting: str = "uniform",
    gamma: float = 5.0,
) -> torch.Tensor:
    """Per-sample (B,) MSE weight. 'min_snr' (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting", eq. 6 / Sec. 4.2) weights the x0-space loss by min(SNR, gamma), expressed for the target:
    eps -> min(SNR,g)/SNR, v -> min(SNR,g)/(SNR+1), x0 -> min(SNR,g) (as diffusers' training scripts since
    diffusers PR #6307 and kohya-ss sd-scripts `apply_snr_weight`).

    A zero-terminal-SNR schedule's pure-noise timestep (SNR = 0) would get weight 0 for v and x0: it takes the
    weight of its neighbour instead (the smallest positive SNR of the schedule), so it is still trained and the
    weight stays continuous in t.
    """
    if weighting == "uniform":
        return torch.ones(t.shape[0], device=t.device)
    if weighting not in ("min_snr", "min_snr_gamma"):
        raise ValueError(f"loss weighting must be 'uniform' or 'min_snr', got {weighting!r}")
    every = alphas_cumprod.float() / (1 - alphas_cumprod.float())
    # masked min, not every[every > 0]: boolean indexing syncs the GPU each step and cannot be traced (bench plan)
    floor = torch.where(every > 0, every, torch.full_like(every, float("inf"))).min()
    s = snr(t, alphas_cumprod)
    s = torch.where(s > 0, s, floor.to(s.device))
    clipped = torch.minimum(s, torch.full_like(s, gamma))
    if prediction_type == "epsilon":
        return clipped / s
    if prediction_type == "v_prediction":
        return clipped / (s + 1)
    if prediction_type == "sample":
        return clipped
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def sample_noise(
    like: torch.Tensor, offset_noise: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gaussian noise shaped like (B, C, ...) plus optional offset noise: a per-(sample, channel) constant
    scaled by `offset_noise` (lets the model change mean brightness)."""
    noise = torch.randn(like.shape, generator=generator, device=like.device, dtype=torch.float32)
    if offset_noise:
        shape = (like.shape[0], like.shape[1]) + (1,) * (like.ndim - 2)
        noise = noise + offset_noise * torch.randn(shape, generator=generator, device=like.device)
    return noise.to(like.dtype)


def sample_timesteps(
    batch_size: int, num_train_timesteps: int, device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniform integer timesteps in [0, num_train_timesteps) -> (B,) long."""
    return torch.randint(0, num_train_timesteps, (batch_size,), generator=generator, device=device)


@dataclass
class NoiseSchedule:
    """The training schedule: diffusers DDPMScheduler betas + prediction type + loss weighting + offset noise."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    rescale_betas_zero_snr: bool = False
    weighting: str = "uniform"
    snr_gamma: float = 5.0
    offset_noise: float = 0.0
    scheduler: DDPMScheduler = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got {self.beta_schedule!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.rescale_betas_zero_snr and self.prediction_type == "epsilon":
            raise ValueError(
                "rescale_betas_zero_snr makes epsilon-prediction ill-posed at the last timestep; "
                "use prediction_type=v_prediction (or sample) with it"
            )
        self.scheduler = DDPMScheduler(
            num_train_timesteps=self.num_train_timesteps, beta_schedule=BETA_SCHEDULES[self.beta_schedule],
            beta_start=self.beta_start, beta_end=self.beta_end, prediction_type=self.prediction_type,
            rescale_betas_zero_snr=self.rescale_betas_zero_snr, clip_sample=False,
        )
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float()  # (num_train_timesteps,)

    @property
    def config(self) -> dict[str, Any]:
        """The diffusers scheduler config (for building samplers that agree with training)."""
        return dict(self.scheduler.config)

    samplers = ("ddim", "dpm_solver")

    def sampler(self, kind: str = "ddim", clip_sample: bool = True, **_: Any) -> SchedulerMixin:
        """A diffusers sampler sharing the training betas and prediction type (see `sampling.make_sampler`);
        `clip_sample`: clip x0 predictions to [-1, 1] (pixel space only)."""
        from wantrain.diffusion.sampling import make_sampler

        return make_sampler(self.config, kind=kind, clip_sample=clip_sample)

    def model_timesteps(self, scheduler: SchedulerMixin) -> torch.Tensor:
        """The network's (integer) timestep at each sampling step."""
        return scheduler.timesteps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for (B, ...) clean samples at (B,) timesteps."""
        return add_noise(x0, noise, t, self.alphas_cumprod)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Regression target for the configured prediction type."""
        return training_target(x0, noise, t, self.alphas_cumprod, self.prediction_type)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample (B,) loss weights for the configured weighting."""
        return loss_weight(t, self.alphas_cumprod, self.prediction_type, self.weighting, self.snr_gamma)

    def noise_like(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training noise (with the configured offset noise)."""
        return sample_noise(x0, self.offset_noise, generator)

    def timesteps(self, batch_size: int, device: torch.device | str = "cpu",
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform training timesteps (B,)."""
        return sample_timesteps(batch_size, self.num_train_timesteps, device, generator)

    def loss(self, output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
             reduce: bool = True, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted MSE between model output and target: scalar, or (B,) per sample if reduce=False; `frames`
        (B, T) weights the frames (see `frame_mean`)."""
        per_sample = frame_mean((output.float() - self.target(x0, noise, t).float()).pow(2), frames)
        per_sample = per_sample * self.weight(t)
        return per_sample.mean() if reduce else per_sample

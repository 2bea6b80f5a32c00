"""Rectified flow / flow matching as Wan2.1 and SD3 train it: the objective `flow` of the diffusion core.

Convention (the one used by diffusers' flow schedulers): sigma in [0, 1], x_t = (1 - sigma) x0 + sigma noise,
and the network predicts the velocity v = noise - x0 (so dx_t/dsigma = v, and sampling integrates sigma 1 -> 0).
The network sees the timestep t = sigma * num_train_timesteps, as in training diffusers' flow models.
Shapes: x0 / noise / x_t are (B, C, T, H, W) (any (B, ...) works); t and sigma are (B,) float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from wantrain.diffusion.sampling import FLOW_SAMPLERS
from wantrain.diffusion.schedule import frame_mean, sample_noise

TIMESTEP_SAMPLING = ("uniform", "logit_normal")
FLOW_WEIGHTINGS = ("uniform", "cosmap")


def shift_sigmas(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan / SD3 timestep shift: sigma' = s sigma / (1 + (s - 1) sigma); s > 1 spends more steps at high noise."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def flow_weight(sigma: torch.Tensor, weighting: str) -> torch.Tensor:
    """Per-sample (B,) loss weight: 'uniform' (1) or SD3's 'cosmap' 2 / (pi (1 - 2 sigma + 2 sigma^2))."""
    if weighting == "uniform":
        return torch.ones_like(sigma)
    if weighting == "cosmap":
        return 2.0 / (torch.pi * (1 - 2 * sigma + 2 * sigma**2))
    raise ValueError(f"flow weighting must be one of {FLOW_WEIGHTINGS}, got {weighting!r}")


@dataclass
class FlowMatching:
    """Flow-matching objective: timestep sampling (uniform or logit-normal, then shifted), noising, velocity target,
    weighted MSE, and the diffusers flow samplers that agree with it."""

    num_train_timesteps: int = 1000
    timestep_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 1.0  # training shift (Wan2.1 / SD3 use 3.0-5.0 at high resolution); also the default sampling shift
    weighting: str = "uniform"
    offset_noise: float = 0.0
    # train one expert of a two-expert model over its timesteps [lo, hi]: Wan2.2 A14B's high-noise expert takes
    # t >= boundary_ratio * 1000 (I2V 0.9: wan/configs/wan_i2v_A14B.py:36), the low-noise one the rest, as
    # DiffSynth-Studio trains them (--min/max_timestep_boundary); the drawn distribution is the configured one, cut
    timestep_range: tuple[float, float] | list[float] | None = None

    def __post_init__(self) -> None:
        if self.timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(f"timestep_sampling must be one of {TIMESTEP_SAMPLING}, got {self.timestep_sampling!r}")
        if self.weighting not in FLOW_WEIGHTINGS:
            raise ValueError(f"flow weighting must be one of {FLOW_WEIGHTINGS}, got {self.weighting!r}")
        if self.shift <= 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")
        if self.timestep_range is not None:
            lo, hi = (float(v) for v in self.timestep_range)
            if not 0 <= lo < hi <= self.num_train_timesteps:
                raise ValueError(f"timestep_range={list(self.timestep_range)}: use [lo, hi] with 0 <= lo < hi <= "
                                 f"{self.num_train_timesteps} (e.g. [900, 1000] for Wan2.2 A14B's high-noise expert)")

    samplers = FLOW_SAMPLERS

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma (B,) in [0, 1] of network timesteps t (B,)."""
        return t.float() / self.num_train_timesteps

    def timesteps(self, batch_size: int, device: torch.device | str = "cpu",
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Training timesteps (B,) float = sigma * num_train_timesteps, sigma drawn per `timestep_sampling`, shifted."""
        gen_device = generator.device if generator is not None else device
        if self.timestep_range is not None:
            return (shift_sigmas(self._sigma_in_range(batch_size, gen_device, generator), self.shift)
                    * self.num_train_timesteps).to(device)
        if self.timestep_sampling == "uniform":
            sigma = torch.rand(batch_size, generator=generator, device=gen_device)
        else:
            normal = torch.randn(batch_size, generator=generator, device=gen_device)
            sigma = torch.sigmoid(self.logit_mean + self.logit_std * normal)
        return (shift_sigmas(sigma, self.shift) * self.num_train_timesteps).to(device)

    def _sigma_in_range(self, batch_size: int, device: torch.device | str, generator: torch.Generator | None,
                        ) -> torch.Tensor:
        """Unshifted sigmas (B,) from the configured distribution cut to those whose shifted timestep lies in
        `timestep_range` (inverse-CDF sampling: no rejection, one draw per sample)."""
        s = self.shift
        bounds = [float(v) / self.num_train_timesteps for v in self.timestep_range]
        lo, hi = (b / (s - (s - 1) * b) for b in bounds)  # the inverse of shift_sigmas
        u = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float64)
        if self.timestep_sampling == "uniform":
            return (lo + (hi - lo) * u).float()
        # logit-normal: sigma = sigmoid(m + s_d z), z ~ N(0, 1): CDF(sigma) = Phi((logit(sigma) - m) / s_d)
        cdf = [torch.special.ndtr(torch.tensor((torch.logit(torch.tensor(b, dtype=torch.float64)).item()
                                                - self.logit_mean) / self.logit_std, dtype=torch.float64))
               for b in (lo, hi)]
        z = torch.special.ndtri(cdf[0] + (cdf[1] - cdf[0]) * u)
        return torch.sigmoid(self.logit_mean + self.logit_std * z).float()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = (1 - sigma) x0 + sigma noise."""
        s = self.sigma(t).to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        return ((1 - s) * x0.float() + s * noise.float()).to(x0.dtype)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity v = noise - x0."""
        return noise - x0

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample (B,) loss weights."""
        return flow_weight(self.sigma(t), self.weighting)

    def noise_like(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training noise (with the configured offset noise)."""
        return sample_noise(x0, self.offset_noise, generator)

    def loss(self, output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
             reduce: bool = True, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted MSE to the velocity: scalar, or (B,) per sample if reduce=False; `frames` (B, T) weights the
        frames (0: a frame the model was given clean, e.g. Wan2.2 TI2V's frame 0; see `frame_mean`)."""
        per_sample = frame_mean((output.float() - self.target(x0, noise, t).float()).pow(2), frames)
        per_sample = per_sample * self.weight(t).to(per_sample.device)
        return per_sample.mean() if reduce else per_sample

    def sampler(self, kind: str = "euler", shift: float | None = None, **_: Any) -> SchedulerMixin:
        """A diffusers flow sampler: 'euler' (FlowMatchEulerDiscreteScheduler) or 'unipc' (UniPCMultistepScheduler
        in flow mode, as Wan2.1 samples), with `shift` (default: the training shift)."""
        shift = float(self.shift if shift is None else shift)
        if kind == "euler":
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=shift)
        if kind == "unipc":
            return UniPCMultistepScheduler(num_train_timesteps=self.num_train_timesteps, use_flow_sigmas=True,
                                           prediction_type="flow_prediction", flow_shift=shift, solver_order=2)
        raise ValueError(f"sampler must be one of {FLOW_SAMPLERS} for objective=flow, got {kind!r}")

    def model_timesteps(self, scheduler: SchedulerMixin) -> torch.Tensor:
        """The network's timestep at each sampling step: sigma * num_train_timesteps, exactly as in training
        (UniPC's own `timesteps` are rounded to integers)."""
        return scheduler.sigmas[: len(scheduler.timesteps)].float() * self.num_train_timesteps

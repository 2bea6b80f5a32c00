"""Samplers (DDIM, DPM-Solver++) from diffusers, built from the training schedule's config, with CFG."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from wantrain.diffusion.guidance import PredFn, guided_prediction
from wantrain.schema import check_options, option

SAMPLERS = ("ddim", "dpm_solver")
FLOW_SAMPLERS = ("euler", "unipc")  # the samplers of objective=flow (diffusion/flow.py)
SAMPLING_DEFAULTS: dict[str, Any] = {"sampler": None, "num_steps": 25, "eta": 0.0, "text_scale": 1.0,
                                     "image_scale": 1.0, "shift": None, "guidance_rescale": 0.0,
                                     "guidance_ramp": None, "frame0": "regenerate", "cond_aug": 0.02}
FRAME0 = ("regenerate", "keep")  # frame 0 at sampling: generated like the others (SVD) | the input frame, kept



@dataclass
class VideoOptions:
    """`*.video`: the mp4s of validation samples."""

    fps: float = option(8, "frame rate of the written samples", gt=0)


@dataclass
class SamplingOptions:
    """`model.sampling`: how validation samples (and `sample`, unless overridden) are generated."""

    sampler: str | None = option(None, "null: the objective's default (ddim / euler)",
                                 choices=lambda: (*SAMPLERS, *FLOW_SAMPLERS))
    num_steps: int = option(25, "sampling steps", ge=1)
    eta: float = option(0.0, "DDIM eta (0: deterministic)", ge=0, le=1)
    text_scale: float = option(1.0, "classifier-free guidance scale on the caption", ge=0)
    image_scale: float = option(1.0, "guidance scale on the first frame", ge=0)
    shift: float | None = option(None, "flow sampling shift (null: the training shift)", gt=0)
    guidance_rescale: float = option(0.0, "CFG rescale phi (Lin et al. 2023)", ge=0, le=1)
    guidance_ramp: float | None = option(None, "guidance scale of frame 0, rising to the full scales", ge=0)
    frame0: str = option("regenerate", "frame 0 generated or the input frame kept", choices=FRAME0)
    cond_aug: float = option(0.02, "conditioning-frame noise level at sampling", ge=0)
    seed: int = option(0, "first seed of the validation samples")
    num_videos: int = option(2, "validation samples per run", ge=0)
    every_n_steps: int = option(0, "write samples every N steps (0: only at validation)", ge=0)
    video: VideoOptions | None = option(None, "mp4 settings")

def sampling_options(stored: dict[str, Any] | None = None, samplers: tuple[str, ...] = SAMPLERS,
                     **overrides: Any) -> dict[str, Any]:
    """Sampler settings: defaults, then a run's `model.sampling`, then non-None overrides; checked in one line.
    `samplers` are the objective's samplers (the first is the default)."""
    out = dict(SAMPLING_DEFAULTS)
    out.update({k: v for k, v in dict(stored or {}).items() if k in out})
    out.update({k: v for k, v in overrides.items() if v is not None and k in out})
    out["sampler"] = out["sampler"] or samplers[0]
    if out["sampler"] not in samplers:
        raise ValueError(f"sampler={out['sampler']!r}: use one of {', '.join(samplers)} for this model's objective")
    check_options("sampling", out, SamplingOptions)  # the ranges of model.sampling (one place: its schema)
    return out


def make_sampler(
    train_config: dict[str, Any], kind: str = "ddim", clip_sample: bool = True, solver_order: int = 2,
    timestep_spacing: str = "trailing",
) -> SchedulerMixin:
    """A diffusers sampling scheduler sharing the training betas and prediction_type.

    kind: 'ddim' (DDIMScheduler) or 'dpm_solver' (DPMSolverMultistepScheduler, algorithm dpmsolver++).
    clip_sample clamps the predicted x0 to [-1, 1] (DDIM's clip_sample; DPM-Solver via dynamic thresholding): only
    for pixel space, whose clips lie in [-1, 1]; latents are unbounded (`Space.bounded`).
    Steps are spaced 'trailing' (the first step is the last training timestep, needed for
    zero-terminal-SNR schedules; Lin et al. 2023).
    """
    config = {k: v for k, v in dict(train_config).items() if not k.startswith("_")}
    spacing = timestep_spacing
    if kind == "ddim":
        return DDIMScheduler.from_config(
            config, clip_sample=clip_sample, set_alpha_to_one=True, timestep_spacing=spacing
        )
    if kind in ("dpm_solver", "dpmsolver++", "dpm"):
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=solver_order, thresholding=clip_sample,
            sample_max_value=1.0,
            timestep_spacing=spacing, final_sigmas_type="zero", lower_order_final=True,
        )
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {kind!r}")


@torch.no_grad()
def sample(
    pred_fn: PredFn,
    shape: tuple[int, ...],
    scheduler: SchedulerMixin,
    num_steps: int = 50,
    text_scale: float = 1.0,
    image_scale: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    model_timesteps: Callable[[SchedulerMixin], torch.Tensor] | None = None,
    guidance_rescale: float = 0.0,
    guidance_ramp: float | None = None,
    keep_first: torch.Tensor | None = None,
    renoise: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run the reverse process from Gaussian noise of `shape` (B, C, T, H, W) -> x0 (model space, float32).

    `generator` fixes the initial noise (and DDIM's eta noise); `eta` applies to DDIM only. `model_timesteps`
    maps the set scheduler to the timestep the network sees at each step (default: `scheduler.timesteps`).
    `guidance_rescale` / `guidance_ramp`: see `guided_prediction`. `keep_first` (B, C, 1, H, W): a clean frame 0 to
    keep: after every step frame 0 is replaced by it noised to the next step's level with frame 0 of the initial
    noise (`renoise(x0, noise, t)`, the objective's forward process), and by the clean frame at the end, so the
    other frames are denoised around the kept frame.
    """
    scheduler.set_timesteps(num_steps, device=device)
    if noise is None:
        noise = torch.randn(shape, generator=generator, device=generator.device if generator else device)
    x = noise.to(device=device, dtype=torch.float32) * getattr(scheduler, "init_noise_sigma", 1.0)
    step_kwargs: dict[str, Any] = {}
    if "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = generator
    if isinstance(scheduler, DDIMScheduler):
        step_kwargs["eta"] = eta
    times = (model_timesteps or (lambda s: s.timesteps))(scheduler).to(device)
    if keep_first is not None and renoise is None:
        raise ValueError("keep_first needs renoise (the objective's add_noise)")
    first_noise = noise[:, :, :1].to(device=device, dtype=torch.float32)
    for i, (t, model_t) in enumerate(zip(scheduler.timesteps, times)):
        x_in = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
        t_batch = model_t.expand(shape[0])
        out = guided_prediction(pred_fn, x_in, t_batch, text_scale, image_scale, guidance_rescale,
                                guidance_ramp).float()
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
        if keep_first is not None:
            known = keep_first.to(device=device, dtype=torch.float32)
            if i + 1 < len(times):
                known = renoise(known, first_noise, times[i + 1].expand(shape[0])).float()
            x = torch.cat([known, x[:, :, 1:]], dim=2)
    return x

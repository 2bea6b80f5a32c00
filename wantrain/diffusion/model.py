"""`VideoDiffusion`: the one diffusion model (a denoiser backbone + objective) that conditions, scores and samples.

The backbone is the UNet with its condition fusion (T5 + DiT tokens, first-frame channels), or a DiT that takes the
conditions itself (`nets.wan.WanDenoiser`: umT5 states, CLIP states, first-frame latents + mask).

Training (the LightningModule), validation, evaluation, `sample` and exports all use this class; the frozen
encoders and the VAE of latent space stay outside it (their outputs come in as `Conditions` and model-space
clips, encoded once per batch or sampling call). The objective is `NoiseSchedule` (DDPM: eps / v / x0 targets)
or `FlowMatching` (rectified flow); both offer the same methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from wantrain.diffusion.cond_aug import MICRO_NAME, SEED_OFFSET, CondAug, micro_value, noise_frames
from wantrain.diffusion.flow import FlowMatching
from wantrain.diffusion.sampling import sample
from wantrain.diffusion.schedule import NoiseSchedule
from wantrain.nets.unet import frame_condition


@dataclass
class Conditions:
    """Encoded conditions of B clips: text tokens (B, L, Dt), text mask (B, L) bool, image tokens (B, N, Di), and the
    first-frame conditioning clip (B, C, T, H, W) in model space (`Space.first_frames`), concatenated on channels."""

    text: torch.Tensor
    text_mask: torch.Tensor
    image_tokens: torch.Tensor
    frames: torch.Tensor
    micro: dict[str, torch.Tensor] | None = None  # micro-conditioning scalars {name: (B,)}, e.g. fps, motion
    image_frames: torch.Tensor | None = None  # (T,) bool: frames that carry the image (`Space.image_frames`)

    def repeat(self, k: int) -> Conditions:
        """The same conditions tiled k times along the batch: (B, ...) -> (k*B, ...)."""
        if k == 1:
            return self
        tile = lambda v: v.repeat(k, *([1] * (v.ndim - 1)))  # noqa: E731
        micro = None if self.micro is None else {n: tile(v) for n, v in self.micro.items()}
        return Conditions(tile(self.text), tile(self.text_mask), tile(self.image_tokens), tile(self.frames), micro,
                          self.image_frames)

    def to(self, device: torch.device | str) -> Conditions:
        """On `device`, text/image tokens and the frames as float32, the mask as bool."""
        return Conditions(self.text.to(device).float(), self.text_mask.to(device).bool(),
                          self.image_tokens.to(device).float(), self.frames.to(device).float(),
                          None if self.micro is None else {n: v.to(device).float() for n, v in self.micro.items()},
                          None if self.image_frames is None else self.image_frames.to(device).bool())


def initial_noise(shape: Sequence[int], seeds: Sequence[int], device: torch.device | str) -> torch.Tensor:
    """Gaussian noise (B, ...) where clip i comes from its own seed, so a clip never depends on its batch."""
    return torch.stack([torch.randn(tuple(shape[1:]), generator=torch.Generator(device).manual_seed(int(s)),
                                    device=device) for s in seeds])


class VideoDiffusion(nn.Module):
    """Image-to-video diffusion: `fusion` turns conditions into context tokens, `unet` denoises (B, C, T, H, W)
    model-space clips under the objective `schedule` - or `net`, a backbone that conditions itself, does both;
    `loss`, `validation_losses` and `sample` are the only places that run it."""

    def __init__(self, unet: nn.Module | None, fusion: nn.Module | None, schedule: NoiseSchedule | FlowMatching,
                 timestep_buckets: int = 4, cond_aug: CondAug | None = None, net: nn.Module | None = None) -> None:
        super().__init__()
        if (net is None) == (unet is None or fusion is None):
            raise ValueError("VideoDiffusion takes a UNet with its fusion, or a backbone `net`, not both")
        self.unet, self.fusion, self.net, self.schedule = unet, fusion, net, schedule
        self.timestep_buckets = int(timestep_buckets)
        self.cond_aug = cond_aug  # training noise on the conditioning frame; its level is micro-conditioning
        # a UNet is told the level (SVD); a backbone that conditions itself is not (CogVideoX noises its image
        # latents in training only, untold): only the UNet must declare it
        if cond_aug is not None and net is None and not self.tells_cond_aug:
            raise ValueError(f"model.cond_aug is set but model.unet.micro_conditioning lacks {MICRO_NAME!r}: add it "
                             f"(e.g. [fps, {MICRO_NAME}]) so the UNet is told the level, or set model.cond_aug=null")

    @property
    def denoiser(self) -> nn.Module:
        """The network that predicts: the UNet, or the backbone `net`."""
        return self.net if self.net is not None else self.unet

    @property
    def conditioner(self) -> nn.Module:
        """What takes the conditions and draws their dropout: the UNet's fusion, or the backbone `net`."""
        return self.fusion if self.fusion is not None else self.net

    def condition_dims(self) -> tuple[int, int | None]:
        """The text and image token widths the model takes (the fusion's inputs, or the backbone's)."""
        return int(self.conditioner.text_dim), self.conditioner.image_dim

    @property
    def tells_cond_aug(self) -> bool:
        """Whether the UNet takes the conditioning-frame noise level as micro-conditioning (trained with cond_aug)."""
        return MICRO_NAME in tuple(getattr(self.denoiser, "micro_conditioning", ()))

    def augment(self, cond: Conditions, levels: torch.Tensor, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None) -> Conditions:
        """`cond` with noise of `levels` (B,) on its conditioning frames (`noise` (B, C, 1, H, W), else drawn from
        `generator`) and the levels in its micro-conditioning."""
        micro = dict(cond.micro or {})
        micro[MICRO_NAME] = micro_value(levels).to(cond.frames.device)
        return Conditions(cond.text, cond.text_mask, cond.image_tokens,
                          noise_frames(cond.frames, levels, generator, noise, cond.image_frames), micro,
                          cond.image_frames)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditions,
                drop_text: torch.Tensor | None = None, drop_image: torch.Tensor | None = None) -> torch.Tensor:
        """Model output (B, C, T, H, W) for noisy clips x_t at timesteps t (B,) under a (B,) dropout pattern."""
        b = x_t.shape[0]
        off = torch.zeros(b, dtype=torch.bool, device=x_t.device)
        drop_text = off if drop_text is None else drop_text
        drop_image = off if drop_image is None else drop_image
        if self.net is not None:
            return self.net(x_t, t, cond, drop_text, drop_image)
        context, context_mask, pooled = self.fusion(cond.text, cond.text_mask, cond.image_tokens,
                                                    drop_text=drop_text, drop_image=drop_image)
        concat = frame_condition(cond.frames.to(x_t.dtype), keep=~drop_image)
        micro = {} if cond.micro is None else {"micro": cond.micro}  # UNets without micro-conditioning: no kwarg
        return self.unet(x_t, t, context=context, context_mask=context_mask, pooled=pooled, concat=concat, **micro)

    def given_frames(self, drop_image: torch.Tensor | None, batch_size: int, num_frames: int,
                     device: torch.device | str) -> torch.Tensor | None:
        """(B, T) True on the frames the backbone is given clean instead of predicting them (Wan2.2 TI2V's frame 0;
        `drop_image` None: the image is kept); None when it predicts every frame (the UNet, Wan2.1)."""
        given = getattr(self.denoiser, "given_frames", None)
        if given is None:
            return None
        keep = torch.zeros(batch_size, dtype=torch.bool, device=device)
        return given(keep if drop_image is None else drop_image, num_frames, device)

    # --- training loss and the fixed-timestep validation protocol ---------------------------------------

    def loss(self, x0: torch.Tensor, cond: Conditions, t: torch.Tensor | None = None,
             generator: torch.Generator | None = None, dropout: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (B,) weighted loss of clean model-space clips x0 (B, C, T, H, W) and the timesteps (B,) it was
        taken at; condition dropout (for guidance) when `dropout`."""
        b = x0.shape[0]
        drop_text = drop_image = None
        if dropout:
            drop_text, drop_image = self.conditioner.sample_dropout(b, x0.device)
        if t is None:
            t = self.schedule.timesteps(b, x0.device, generator)
        if self.cond_aug is not None:
            cond = self.augment(cond, self.cond_aug.levels(b, x0.device, generator), generator)
        noise = self.schedule.noise_like(x0, generator)
        output = self(self.schedule.add_noise(x0, noise, t), t, cond, drop_text, drop_image)
        given = self.given_frames(drop_image, b, x0.shape[2], x0.device)
        frames = None if given is None else ~given  # the loss leaves the given frames out
        return self.schedule.loss(output, x0, noise, t, reduce=False, frames=frames), t

    def validation_timesteps(self, batch_size: int, device: torch.device | str) -> list[torch.Tensor]:
        """The middle timestep of each of the `timestep_buckets` equal ranges, as (B,) tensors."""
        span = self.schedule.num_train_timesteps // self.timestep_buckets
        return [torch.full((batch_size,), i * span + span // 2, device=device, dtype=torch.long)
                for i in range(self.timestep_buckets)]

    @torch.no_grad()
    def validation_losses(self, x0: torch.Tensor, cond: Conditions, generator: torch.Generator) -> torch.Tensor:
        """Losses (buckets, B) at each bucket's middle timestep, noise from `generator`, no condition dropout."""
        return torch.stack([self.loss(x0, cond, t, generator, dropout=False)[0]
                            for t in self.validation_timesteps(x0.shape[0], x0.device)])

    def bucket_of(self, t: torch.Tensor) -> torch.Tensor:
        """Timestep bucket index (B,) of timesteps t (B,)."""
        return ((t * self.timestep_buckets) // self.schedule.num_train_timesteps).long()

    # --- sampling -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, cond: Conditions, noise: torch.Tensor, sampler: str = "ddim", num_steps: int = 25,
               text_scale: float = 1.0, image_scale: float = 1.0, eta: float = 0.0, shift: float | None = None,
               generator: torch.Generator | None = None, guidance_rescale: float = 0.0,
               guidance_ramp: float | None = None, frame0: str = "regenerate", cond_aug: float = 0.02,
               cond_noise: torch.Tensor | None = None, clip_sample: bool = True) -> torch.Tensor:
        """Model-space clips (B, C, T, H, W) from initial noise of that shape, with text/image guidance.

        `sampler`: one of `schedule.samplers`; `shift`: flow samplers' timestep shift (default: training's);
        `generator` draws DDIM's per-step noise when eta > 0. `guidance_rescale` (phi) and `guidance_ramp` (the scale
        of frame 0, rising to the full scales on the last frame): see `guided_prediction`. `frame0`: 'regenerate'
        (frame 0 is generated like the others) or 'keep' (the clean input frame is kept; see `sampling.sample`).
        `cond_aug`: noise level put on the conditioning frame for models trained with cond_aug, with `cond_noise`
        (B, C, 1, H, W) (default: drawn from `generator`, else the global RNG). `clip_sample`: DDPM samplers clip x0
        predictions to [-1, 1]; pass the space's `bounded` (False in latent space).
        """
        b = noise.shape[0]
        keep = cond.frames[:, :, :1].float() if frame0 == "keep" else None  # the clean frame 0 in model space
        if self.tells_cond_aug:
            levels = torch.full((b,), float(cond_aug), device=noise.device)
            cond = self.augment(cond, levels, generator, cond_noise)

        def pred_fn(x: torch.Tensor, t: torch.Tensor, drop_text: torch.Tensor, drop_image: torch.Tensor,
                    ) -> torch.Tensor:
            return self(x, t, cond.repeat(x.shape[0] // b), drop_text, drop_image)

        scheduler = self.schedule.sampler(sampler, shift=shift, clip_sample=clip_sample)
        # Wan's pipelines feed the scheduler's own (integer) timesteps; the objective's are training's exact ones
        own = getattr(self.denoiser, "uses_scheduler_timesteps", False)
        x = sample(pred_fn, tuple(noise.shape), scheduler, num_steps=int(num_steps), text_scale=float(text_scale),
                   image_scale=float(image_scale), eta=float(eta), generator=generator, device=noise.device,
                   noise=noise, model_timesteps=None if own else self.schedule.model_timesteps,
                   guidance_rescale=float(guidance_rescale or 0.0),
                   guidance_ramp=None if guidance_ramp is None else float(guidance_ramp),
                   keep_first=keep, renoise=self.schedule.add_noise)
        given = self.given_frames(None, b, x.shape[2], x.device)
        if given is not None:  # frames the backbone was given clean are the condition's (diffusers' TI2V does so)
            x = torch.where(given[:, None, :, None, None], cond.frames[:, :, : x.shape[2]].to(x.dtype), x)
        return x

    def sample_from_seeds(self, cond: Conditions, seeds: Sequence[int], **options: Any) -> torch.Tensor:
        """Model-space clips (B, C, T, H, W) shaped like the conditioning frames, clip i from seed i (DDIM eta noise
        from seeds[0])."""
        device = cond.frames.device
        shape = (cond.frames.shape[0], int(self.denoiser.out_channels), *cond.frames.shape[2:])
        generator = torch.Generator(device).manual_seed(int(seeds[0]))
        cond_noise = None
        if self.tells_cond_aug:  # clip i's conditioning-frame noise from its own seed too
            c, _, h, w = cond.frames.shape[1:]
            cond_noise = initial_noise((len(seeds), c, 1, h, w), [int(s) + SEED_OFFSET for s in seeds], device)
        return self.sample(cond, initial_noise(shape, seeds, device), generator=generator, cond_noise=cond_noise,
                           **options)

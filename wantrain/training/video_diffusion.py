"""`VideoDiffusionModule`: the image-to-video diffusion stage (frozen encoders -> fusion -> UNet, noise-prediction loss)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from wantrain.diffusion.sampling import make_sampler, sample
from wantrain.diffusion.schedule import NoiseSchedule
from wantrain.errors import WantrainError
from wantrain.nets.unet import frame_condition
from wantrain.training.frozen_encoders import FrozenEncoders
from wantrain.training.nonfinite import NonFiniteGuard
from wantrain.training.sample_videos import SampleVideoWriter


class VideoDiffusionModule(pl.LightningModule):
    """Trains `unet` + `fusion` (EMA kept of both) to predict the noise added to video clips."""

    def __init__(
        self,
        unet: nn.Module,
        fusion: nn.Module,
        schedule: NoiseSchedule,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable[..., Any] | None = None,
        text_encoder: Callable[[], nn.Module] | None = None,
        image_encoder: Callable[[], nn.Module] | None = None,
        conditioning: str = "live",
        build_tiny_encoders: bool = False,
        ema_decay: float = 0.999,
        ema_start_step: int = 0,
        timestep_buckets: int = 4,
        sampling: dict[str, Any] | None = None,
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        if conditioning not in ("live", "cached"):
            raise WantrainError(f"model.conditioning must be 'live' or 'cached', got {conditioning!r}")
        self.save_hyperparameters(ignore=["unet", "fusion", "schedule", "optimizer", "lr_scheduler",
                                          "text_encoder", "image_encoder"])
        self.unet = unet
        self.fusion = fusion
        self.schedule = schedule
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        # Frozen encoders live outside the module tree: no DDP wrapping, not in checkpoints, not in EMA.
        self.encoders = FrozenEncoders(text_encoder, image_encoder, build_tiny_encoders)
        self.ema = AveragedModel(nn.ModuleDict({"unet": unet, "fusion": fusion}),
                                 multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.ema.requires_grad_(False)
        self.sampling = dict(sampling or {})
        self.video_writer = SampleVideoWriter(**self.sampling.pop("video", {}))
        self.nonfinite = NonFiniteGuard(max_nonfinite_steps)  # skips NaN/inf steps, stops after K in a row
        self._step_ok = True  # the last optimizer step had finite gradients (the EMA follows only those)
        self._val_examples: dict[str, Any] | None = None
        self._last_sample_step = -1

    # --- setup -------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Build the tiny offline encoders at their configured paths when asked and missing (local rank 0)."""
        if self.hparams.conditioning == "live":
            self.encoders.build_missing()

    def setup(self, stage: str) -> None:
        """Load the frozen encoders once per process and check their widths against the fusion module."""
        self.check_resolution()
        if self.hparams.conditioning == "live":
            self.encoders.load()
            self.encoders.check_dims(self.fusion.text_dim, self.fusion.image_dim)

    def check_resolution(self) -> None:
        """Fail before training when the data's frame size does not divide by the UNet's downsampling factor."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        resolution = getattr(datamodule, "resolution", None)
        factor = int(getattr(self.unet, "downscale", 1))
        if resolution is None or factor <= 1:
            return
        h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        if h % factor or w % factor:
            near = [max(factor, v // factor * factor) for v in (h, w)]
            fix = near[0] if isinstance(resolution, int) else near
            raise WantrainError(
                f"data.resolution={resolution} is not divisible by the UNet's downsampling factor {factor} "
                f"(2**(len(model.unet.channel_mult)-1)); set data.resolution to a multiple of {factor} (e.g. {fix})"
            )

    # --- conditioning and loss ---------------------------------------------------------------------

    def encode_conditions(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Text tokens (B, L, Dt), text mask (B, L) and image tokens (B, N, Di), live or from cached embeddings."""
        if self.hparams.conditioning == "cached":
            missing = [k for k in ("t5", "t5_mask", "dit") if k not in batch]
            if missing:
                raise WantrainError(f"model.conditioning=cached but batches lack {missing}; "
                                    "run `python -m wantrain encode` and set data.embeddings=[t5,dit]")
            return batch["t5"].float(), batch["t5_mask"].bool(), batch["dit"].float()
        return self.encoders.encode(batch["caption"], batch["image"], self.device)

    def condition(self, batch: dict[str, Any], nets: nn.Module, drop_text: torch.Tensor, drop_image: torch.Tensor,
                  ) -> dict[str, torch.Tensor]:
        """UNet keyword inputs (context, mask, pooled, concat) for a batch under a dropout pattern."""
        text, text_mask, image_tokens = self.encode_conditions(batch)
        context, context_mask, pooled = nets["fusion"](text, text_mask, image_tokens,
                                                       drop_text=drop_text, drop_image=drop_image)
        concat = frame_condition(batch["image"], batch["video"].shape[2], keep=~drop_image)
        return {"context": context, "context_mask": context_mask, "pooled": pooled, "concat": concat}

    def diffusion_loss(self, batch: dict[str, Any], t: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, dropout: bool = True,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (B,) weighted loss and the timesteps (B,) it was taken at."""
        video = batch["video"]
        b = video.shape[0]
        if dropout:
            drop_text, drop_image = self.fusion.sample_dropout(b, video.device)
        else:
            drop_text = drop_image = torch.zeros(b, dtype=torch.bool, device=video.device)
        inputs = self.condition(batch, {"fusion": self.fusion}, drop_text, drop_image)
        if t is None:
            t = self.schedule.timesteps(b, video.device, generator)
        noise = self.schedule.noise_like(video, generator)
        x_t = self.schedule.add_noise(video, noise, t)
        output = self.unet(x_t, t, **inputs)
        return self.schedule.loss(output, video, noise, t, reduce=False), t

    def bucket_of(self, t: torch.Tensor) -> torch.Tensor:
        """Timestep bucket index (B,) of each timestep, `timestep_buckets` equal ranges."""
        return (t * self.hparams.timestep_buckets) // self.schedule.num_train_timesteps

    def log_buckets(self, prefix: str, losses: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> None:
        """Log the mean loss of each timestep bucket that has samples."""
        buckets = self.bucket_of(t)
        for i in range(self.hparams.timestep_buckets):
            picked = buckets == i
            if picked.any():
                self.log(f"{prefix}/loss_t{i}", losses[picked].mean(), batch_size=int(picked.sum()), **kwargs)

    # --- Lightning hooks ---------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Noise-prediction loss at random timesteps with condition dropout."""
        losses, t = self.diffusion_loss(batch)
        loss = losses.mean()
        b = losses.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log_buckets("train", losses.detach(), t)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip the step (drop the gradients) when they are NaN/inf on any rank; stop after K in a row."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self._step_ok = self.nonfinite.check(params, self.trainer.strategy, self.global_step)
        self.log("train/nonfinite_steps", float(self.nonfinite.total), on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the skipped-step counters across resumes."""
        checkpoint["nonfinite_steps"] = self.nonfinite.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the skipped-step counters."""
        self.nonfinite.load_state_dict(checkpoint.get("nonfinite_steps", {}))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step, then update the EMA from `ema_start_step` on.

        Here rather than in `on_train_batch_end`: ModelCheckpoint saves in the callbacks' `on_train_batch_end`,
        which Lightning runs before the module's, so a checkpoint would miss its own step's EMA update.
        """
        super().optimizer_step(*args, **kwargs)
        if self._step_ok and self.global_step >= self.hparams.ema_start_step:
            self.ema.update_parameters(nn.ModuleDict({"unet": self.unet, "fusion": self.fusion}))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss at fixed timesteps (one per bucket) and fixed noise, without condition dropout."""
        if self._val_examples is None:
            self._val_examples = {k: v[: self.sampling.get("num_videos", 2)] for k, v in batch.items()
                                  if isinstance(v, (torch.Tensor, list))}
        generator = torch.Generator(device=self.device).manual_seed(1000 + batch_idx)
        n = self.hparams.timestep_buckets
        span = self.schedule.num_train_timesteps // n
        b = batch["video"].shape[0]
        all_losses, all_t = [], []
        for i in range(n):
            t = torch.full((b,), i * span + span // 2, device=self.device, dtype=torch.long)
            losses, _ = self.diffusion_loss(batch, t=t, generator=generator, dropout=False)
            all_losses.append(losses)
            all_t.append(t)
        losses, t = torch.cat(all_losses), torch.cat(all_t)
        self.log("val/loss", losses.mean(), prog_bar=True, batch_size=b, sync_dist=True)
        self.log_buckets("val", losses, t, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        """Every `sampling.every_n_steps`, sample videos from validation first frames + captions (EMA weights)."""
        every = self.sampling.get("every_n_steps", 0)
        due = every and (self._last_sample_step < 0 or self.global_step - self._last_sample_step >= every)
        if self._val_examples is not None and due and not (self.trainer.sanity_checking or self.trainer.fast_dev_run):
            self._last_sample_step = self.global_step
            videos = self.generate(self._val_examples)
            psnr = self.video_writer.psnr(videos, self._val_examples["video"])
            self.log("val/sample_psnr", psnr, batch_size=videos.shape[0], sync_dist=True)
            if self.trainer.is_global_zero:
                self.video_writer.write(self.trainer, self._val_examples, videos, self.global_step)
        self._val_examples = None

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], seed: int | None = None) -> torch.Tensor:
        """Sample videos (B, 3, T, H, W) in [-1, 1] for a batch's first frames + captions with the EMA nets."""
        nets = self.ema.module
        video = batch["video"]
        b = video.shape[0]
        generator = torch.Generator(device=self.device).manual_seed(self.sampling.get("seed", 0) if seed is None else seed)

        def pred_fn(x: torch.Tensor, t: torch.Tensor, drop_text: torch.Tensor, drop_image: torch.Tensor) -> torch.Tensor:
            repeat = x.shape[0] // b
            tiled = {k: (v.repeat(repeat, *([1] * (v.ndim - 1))) if isinstance(v, torch.Tensor) else v * repeat)
                     for k, v in batch.items() if k in ("video", "image", "caption", "t5", "t5_mask", "dit")}
            inputs = self.condition(tiled, nets, drop_text, drop_image)
            return nets["unet"](x, t, **inputs)

        sampler = make_sampler(self.schedule.config, kind=self.sampling.get("sampler", "ddim"))
        out = sample(
            pred_fn, tuple(video.shape), sampler, num_steps=self.sampling.get("num_steps", 25),
            text_scale=self.sampling.get("text_scale", 1.0), image_scale=self.sampling.get("image_scale", 1.0),
            eta=self.sampling.get("eta", 0.0), generator=generator, device=self.device,
        )
        return out.clamp(-1, 1)

    def configure_optimizers(self) -> Any:
        """Optimizer (partial from config) over UNet + fusion, with an optional per-step LR schedule."""
        params = [p for p in [*self.unet.parameters(), *self.fusion.parameters()] if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

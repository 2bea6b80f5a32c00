"""`VideoDiffusionModule`: trains a `VideoDiffusion` (UNet + fusion + schedule) and keeps its EMA (Lightning glue)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from wantrain.diffusion.cond_aug import CondAug
from wantrain.diffusion.flow import FlowMatching
from wantrain.diffusion.model import Conditions, VideoDiffusion
from wantrain.diffusion.sampling import sampling_options
from wantrain.diffusion.schedule import NoiseSchedule
from wantrain.diffusion.space import PIXELS, LatentSpace, Space, check_unet_channels
from wantrain.encoders.conditioning import FrozenEncoders
from wantrain.errors import WantrainError
from wantrain.evaluation.video_metrics import psnr
from wantrain.inference.checkpoints import DIFFUSION
from wantrain.nets.lora import add_lora, lora_settings
from wantrain.nets.trainable import set_trainable
from wantrain.training.guarded_module import GuardedEMAModule
from wantrain.training.lightning_private import attached_trainer, ddp_finds_unused_parameters
from wantrain.training.param_groups import decay_groups
from wantrain.training.preflight import PreflightOnce
from wantrain.training.sample_videos import SampleVideo, SampleVideos, side_by_side
from wantrain.training.video_quality_metrics import VideoQualityMetrics


class VideoDiffusionModule(PreflightOnce, GuardedEMAModule):
    """Trains `model` (a `VideoDiffusion`: UNet + fusion) on video clips; `ema` is its EMA copy for sampling."""

    # what its checkpoints hold (the model entry `inference` reads): the trained network and its weights' prefixes
    saved_kind, trained_net = DIFFUSION, "model"
    weight_prefixes = {"ema": "ema.module.", "raw": "model."}

    def __init__(
        self,
        unet: nn.Module | None,
        fusion: nn.Module | None,
        schedule: NoiseSchedule,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable[..., Any] | None = None,
        text_encoder: Callable[[], nn.Module] | None = None,
        image_encoder: Callable[[], nn.Module] | None = None,
        objective: str = "ddpm",
        flow: FlowMatching | None = None,
        space: str = "pixel",
        vae: Callable[[], nn.Module] | None = None,
        conditioning: str = "live",
        build_tiny_encoders: bool = False,
        ema_decay: float = 0.999,
        ema_start_step: int = 0,
        timestep_buckets: int = 4,
        sampling: dict[str, Any] | None = None,
        max_nonfinite_steps: int = 10,
        trainable: list[str] | None = None,
        lora: dict[str, Any] | None = None,
        cond_aug: dict[str, Any] | None = None,
        weight_decay_exclude: list[str] | None = None,
        net: nn.Module | None = None,
        video_metrics: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if conditioning not in ("live", "cached"):
            raise WantrainError(f"model.conditioning must be 'live' or 'cached', got {conditioning!r}")
        objectives = {"ddpm": schedule, "flow": flow}
        if objectives.get(objective) is None:
            raise WantrainError(f"model.objective={objective!r}: use ddpm (model.schedule) or flow (model.flow)")
        if space not in ("pixel", "latent"):
            raise WantrainError(f"model.space must be 'pixel' or 'latent', got {space!r}")
        self.save_hyperparameters(ignore=["unet", "fusion", "net", "schedule", "flow", "optimizer", "lr_scheduler",
                                          "text_encoder", "image_encoder", "vae"])
        # model.cond_aug: noise on the conditioning frame, its level as micro-conditioning. Bad values raise
        # ValueError naming the key: `fit` prints it in one line (commands/failures.py), the schema checked the keys.
        self.model = VideoDiffusion(unet, fusion, objectives[objective], timestep_buckets,
                                    CondAug(**cond_aug) if cond_aug else None, net=net)
        # LoRA adapters on the UNet (model.lora.rank), then trainable groups (model.trainable; with LoRA: [lora])
        self.lora = lora_settings(**lora) if lora and lora.get("rank") is not None else None
        if self.lora is not None:
            add_lora(self.model.denoiser, self.lora)
        groups = trainable if trainable is not None else (["lora"] if self.lora else None)
        self.trainable_groups = None if groups is None else [str(g) for g in groups]
        set_trainable(self.model, self.trainable_groups)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        # Frozen encoders live outside the module tree: no DDP wrapping, not in checkpoints, not in EMA.
        self.encoders = FrozenEncoders(text_encoder, image_encoder, build_tiny_encoders,
                                       vae if space == "latent" else None)
        self._space: Space | None = None
        # the EMA of the trainable parameters; NaN/inf gradients skip the step, K in a row stop the run
        self.init_ema_and_guards(self.model, ema_decay, max_nonfinite_steps, {"": "train/nonfinite_steps"})
        self.sampling = dict(sampling or {})
        self.sample_videos = SampleVideos(self.sampling.get("every_n_steps", 0), **self.sampling.pop("video", {}))
        self.val_examples: dict[str, Any] | None = None  # the first validation batch's clips, for sample videos
        self._samples: tuple[Any, torch.Tensor] | None = None  # their EMA samples at one step (sampled_examples)
        metrics = dict(video_metrics or {})  # model.video_metrics: val/<metric> of those samples every N validations
        self.video_metrics = (VideoQualityMetrics(**metrics) if int(metrics.get("every_n_validations") or 0) > 0
                              else None)

    @property
    def unet(self) -> nn.Module | None:
        """The trained UNet (None with a DiT backbone)."""
        return self.model.unet

    @property
    def denoiser(self) -> nn.Module:
        """The trained denoiser: the UNet or the DiT backbone (for callbacks that address networks by name)."""
        return self.model.denoiser

    @property
    def fusion(self) -> nn.Module | None:
        """The trained condition fusion (the UNet's; None with a backbone that conditions itself)."""
        return self.model.fusion

    def parallel_networks(self) -> list[nn.Module]:
        """What trainer=fsdp2 shards (alike, so the EMA update stays shard-local): the network and its EMA."""
        return [self.model, self.ema.module]

    @property
    def space(self) -> Space:
        """Pixel space, or the latent space of the frozen VAE (loaded on first use)."""
        if self._space is None:
            self._space = PIXELS if self.hparams.space == "pixel" else LatentSpace(self.encoders.load_vae())
        return self._space

    # --- setup -------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Build the tiny offline encoders (and VAE) at their configured paths when asked and missing (local rank 0)."""
        self.encoders.build_missing()

    def setup(self, stage: str) -> None:
        """Load the frozen encoders (and VAE) once per process; check widths and channels, and the preflight's
        checks unless `prepare_run` already ran them (again in latent space: the VAE's rules are known now)."""
        trainer = attached_trainer(self)
        datamodule = trainer.datamodule if trainer is not None else None
        try:
            check_unet_channels(self.denoiser, self.space, "model.unet" if self.model.net is None else "model.net")
        except ValueError as err:
            raise WantrainError(str(err)) from None
        self.preflight_unless_done(datamodule, trainer)
        if self.hparams.conditioning == "live":
            self.encoders.load()
            self.encoders.check_dims(*self.model.condition_dims())

    def preflight_scope(self) -> bool:
        """Whether the VAE is loaded: its downsampling and frame rule join the checks."""
        return self.hparams.space == "latent" and self._space is not None

    def check_run(self, datamodule: Any, trainer: pl.Trainer | None) -> None:
        """One-line errors: data.resolution and every data.buckets shape (with the T = 1 image buckets) against the
        UNet's downsampling (and the VAE's shape rules once it is loaded); image shards under DDP."""
        resolution = getattr(datamodule, "resolution", None)
        self.check_resolution(resolution)
        num_frames = getattr(datamodule, "num_frames", None)
        if num_frames and resolution and self._space is not None:
            h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
            self._space.check_shape(int(num_frames), int(h), int(w))
        for h, w, t in getattr(datamodule, "bucket_shapes", None) or ():
            self.check_bucket(h, w, t)
        if getattr(datamodule, "image_shards", None) is not None and trainer is not None and trainer.world_size > 1 \
                and not ddp_finds_unused_parameters(trainer.strategy):
            raise WantrainError("data.image_shards under DDP: image steps (T = 1) leave the UNet's temporal layers "
                                "without gradient; set trainer.strategy=ddp_find_unused_parameters_true")

    def downsampling(self) -> int:
        """Pixels per UNet bottleneck cell: the UNet's downsampling, times the VAE's once the latent space is built."""
        return int(getattr(self.denoiser, "downscale", 1)) * (self.space.spatial_factor if self._space else 1)

    def check_resolution(self, resolution: int | tuple[int, int] | None) -> None:
        """Fail in one line when `data.resolution` does not divide by the UNet's (and the VAE's) downsampling."""
        factor = self.downsampling()
        if resolution is None or factor <= 1:
            return
        h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        if h % factor or w % factor:
            near = [max(factor, v // factor * factor) for v in (h, w)]
            fix = near[0] if isinstance(resolution, int) else near
            raise WantrainError(
                f"data.resolution={resolution} is not divisible by the downsampling factor {factor} "
                f"(2**(len(model.unet.channel_mult)-1), times the VAE's in latent space); set data.resolution to "
                f"a multiple of {factor} (e.g. {fix})"
            )

    def check_bucket(self, height: int, width: int, frames: int) -> None:
        """Fail in one line when a data.buckets shape does not divide by the UNet's (and the VAE's) downsampling."""
        factor = self.downsampling()
        name = f"{height}x{width}x{frames}"
        if height % factor or width % factor:
            near = "x".join(str(max(factor, v // factor * factor)) for v in (height, width))
            raise WantrainError(f"data.buckets: bucket {name} (HxWxT) is not divisible by the downsampling factor "
                                f"{factor}; use H and W that are multiples of {factor} (e.g. {near}x{frames}), or "
                                f"data.buckets.multiple={factor} when generating them")
        try:
            if self._space is not None:  # the VAE's frame rule (e.g. 4k+1), once the space is built (setup)
                self._space.check_shape(int(frames), int(height), int(width))
        except (ValueError, WantrainError) as err:
            raise WantrainError(f"data.buckets: bucket {name}: {err}") from None

    # --- conditioning -----------------------------------------------------------------------------------

    def conditions(self, batch: dict[str, Any]) -> Conditions:
        """The batch's conditions, from the live frozen encoders or from cached embeddings (encoded once)."""
        if self.hparams.conditioning == "cached":
            takes_image = self.model.condition_dims()[1] is not None  # text-to-video: no image tokens
            missing = [k for k in ("t5", "t5_mask", "dit")[:3 if takes_image else 2] if k not in batch]
            if missing:
                raise WantrainError(f"model.conditioning=cached but batches lack {missing}; "
                                    "run `python -m wantrain encode` and set data.embeddings=[t5,dit]")
            text, mask = batch["t5"], batch["t5_mask"]
            tokens = batch["dit"] if takes_image else text.new_zeros(len(text), 0, 0)
        else:
            text, mask, tokens = self.encoders.encode(batch["caption"], batch["image"], self.device)
        if "first_latent" in batch and self.hparams.space == "latent":  # cached by `encode`: no VAE call
            frames = self.cached_latents(batch, "first_latent")
        else:
            frames = self.space.first_frames(batch["image"].to(self.device), batch["video"].shape[2])
        names = getattr(self.denoiser, "micro_conditioning", ())  # model.unet.micro_conditioning: batch keys, e.g. fps
        micro = {n: torch.as_tensor(batch[n]) for n in names if n in batch} or None
        return Conditions(text, mask, tokens, frames, micro, self.space.image_frames(frames.shape[2])).to(self.device)

    def clean(self, batch: dict[str, Any]) -> torch.Tensor:
        """x0 in model space: the clips (B, 3, T, H, W), or their latents (B, C, T', h, w), cached or encoded live."""
        if "latent" in batch and self.hparams.space == "latent":
            return self.cached_latents(batch, "latent")
        return self.space.encode(batch["video"])

    def cached_latents(self, batch: dict[str, Any], name: str) -> torch.Tensor:
        """batch[name] (B, C, T', h, w) from `encode`, checked against the shape the VAE gives the batch's clips."""
        latents = batch[name]
        want = self.space.shape(*batch["video"].shape[2:])
        if tuple(latents.shape[1:]) != want:
            raise WantrainError(f"cached {name}.npy latents have shape {tuple(latents.shape[1:])} but this VAE gives "
                                f"{want} for {tuple(batch['video'].shape[2:])} clips: re-run `python -m wantrain "
                                "encode` with this data.num_frames / data.resolution, or drop them from "
                                "data.embeddings")
        return latents.to(self.device, torch.float32)

    def log_buckets(self, prefix: str, losses: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> None:
        """Log the mean loss of each timestep bucket that has samples."""
        buckets = self.model.bucket_of(t)
        for i in range(self.model.timestep_buckets):
            picked = buckets == i
            if picked.any():
                self.log(f"{prefix}/loss_t{i}", losses[picked].mean(), batch_size=int(picked.sum()), **kwargs)

    # --- Lightning hooks ---------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Noise-prediction loss at random timesteps with condition dropout."""
        losses, t = self.model.loss(self.clean(batch), self.conditions(batch))
        loss = losses.mean()
        b = losses.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log_buckets("train", losses.detach(), t)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step (the guard in `on_before_optimizer_step` may have dropped NaN/inf gradients), then, when the step was
        finite, update the EMA from `ema_start_step` on (before it, the EMA keeps its initial weights).

        Here rather than in `on_train_batch_end`: ModelCheckpoint saves in the callbacks' `on_train_batch_end`,
        which Lightning runs before the module's, so a checkpoint would miss its own step's EMA update.
        """
        super().optimizer_step(*args, **kwargs)
        if self.last_step_finite:
            self.ema.follow(self.model, self.global_step, int(self.hparams.ema_start_step), copy_before_start=False)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss at fixed timesteps (one per bucket) and fixed noise, without condition dropout."""
        if self.val_examples is None:
            self.val_examples = {k: v[: self.sampling.get("num_videos", 2)] for k, v in batch.items()
                                  if isinstance(v, (torch.Tensor, list))}
        generator = torch.Generator(device=self.device).manual_seed(1000 + batch_idx)
        b = batch["video"].shape[0]
        x0 = self.clean(batch)
        losses = self.model.validation_losses(x0, self.conditions(batch), generator)  # (buckets, B)
        t = torch.cat(self.model.validation_timesteps(b, self.device))
        losses = losses.flatten()
        self.log("val/loss", losses.mean(), prog_bar=True, batch_size=b, sync_dist=True)
        self.log_buckets("val", losses, t, sync_dist=True)

    def configure_callbacks(self) -> list[pl.Callback]:
        """Video-quality metrics every `model.video_metrics.every_n_validations`, then sample videos every
        `model.sampling.every_n_steps` (`model.sampling.video`: fps, folder); in this order, as the sample videos
        let go of the kept clips."""
        return [self.video_metrics, self.sample_videos] if self.video_metrics else [self.sample_videos]

    def sampled_examples(self, examples: dict[str, Any]) -> torch.Tensor:
        """The EMA samples (B, 3, T, H, W) of the kept validation clips, made once per validation and step."""
        key = (self.global_step, id(examples))
        if self._samples is None or self._samples[0] != key:
            self._samples = (key, self.generate(examples))
        return self._samples[1]

    def sample_video(self, examples: dict[str, Any]) -> SampleVideo:
        """Sample the kept validation clips from their first frames + captions (EMA weights), log their PSNR, and
        lay them out as truth | sample (called by the `SampleVideos` callback on every rank)."""
        videos = self.sampled_examples(examples)
        truth = examples["video"].to(videos.device)
        self.log("val/sample_psnr", psnr(videos, truth).mean(), batch_size=videos.shape[0], sync_dist=True)
        if self.hparams.space == "latent":  # against the VAE's own reconstruction: the diffusion model alone
            recon = self.space.decode(self.space.encode(truth))
            self.log("val/sample_psnr_vs_recon", psnr(videos, recon).mean(), batch_size=videos.shape[0],
                     sync_dist=True)
        captions = list(examples.get("caption", []))
        note = {"step": self.global_step, "captions": captions,
                "layout": "rows: clips; left: truth, right: sample"}
        return SampleVideo(f"step{self.global_step:07d}", side_by_side(examples["video"], videos), note,
                           " | ".join(captions))

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], seed: int | None = None) -> torch.Tensor:
        """Sample clips (B, 3, T, H, W) in [-1, 1] for a batch's first frames + captions with the EMA model;
        clip i from seed `seed + i` (default `sampling.seed`), exactly as `wantrain sample` draws it."""
        first = int(self.sampling.get("seed", 0) if seed is None else seed)
        options = sampling_options(self.sampling, self.model.schedule.samplers)
        seeds = [first + i for i in range(batch["video"].shape[0])]
        return self.space.decode(self.ema.module.sample_from_seeds(self.conditions(batch), seeds,
                                                                   clip_sample=self.space.bounded, **options))

    def configure_optimizers(self) -> Any:
        """Optimizer (partial from config) over the trainable parameters of UNet + fusion (model.trainable), with an
        optional per-step LR schedule; model.weight_decay_exclude puts norms / biases / embeddings in a group without
        weight decay."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.hparams.get("weight_decay_exclude"):
            try:
                params = decay_groups(self.model, self.hparams.weight_decay_exclude)
            except ValueError as err:
                raise WantrainError(str(err)) from None
        optimizer = self.optimizer_factory(params)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

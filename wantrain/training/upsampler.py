"""`UpsamplerModule`: trains one ×2 stage of the cascaded upsampler (content loss + GAN, manual optimization).

Step counting: Lightning's `global_step` counts every `LightningOptimizer.step()`, so a GAN with two
optimizers would advance it by 2 per batch (1 during the pixel warm-up). Here only the generator's step
goes through the LightningOptimizer; discriminator steps go through the same strategy/precision path
(`strategy.optimizer_step`) without touching the counter. So `global_step` == batches trained ==
`trainer.max_steps`' unit, and checkpoint intervals (`every_n_train_steps`) count batches too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.strategies import DDPStrategy
from torch import nn

from wantrain.degradations.pairs import PairTransform, make_pair, pair_generator
from wantrain.degradations.pipeline import DegradeConfig
from wantrain.errors import WantrainError
from wantrain.evaluation.upsampler import bicubic, comparison_frames, sr_metrics
from wantrain.inference.cascade import upsample
from wantrain.inference.checkpoints import UPSAMPLER
from wantrain.inference.export import export_upsampler
from wantrain.losses.adversarial import AdversarialLoss, GANSchedule, r1_penalty
from wantrain.losses.perceptual import LPIPSLoss
from wantrain.nets.trainable import set_trainable
from wantrain.training.callbacks import ExportAtTrainEnd
from wantrain.training.guarded_module import GuardedEMAModule
from wantrain.training.lightning_private import attached_trainer, ddp_finds_unused_parameters
from wantrain.training.preflight import PreflightOnce
from wantrain.training.sample_videos import SampleVideo, SampleVideos

# model.usm: usm_sharpen's arguments + whether training degrades the sharpened HR (Real-ESRGAN, RealBasicVSR)
USM_KEYS = ("weight", "sigma", "threshold", "degrade_sharpened")
VALIDATION_DEFAULTS: dict[str, Any] = {
    "use_ema": True, "lpips": None, "crop_size": None, "tile": None, "tile_overlap": 16, "seed": 1234,
    "num_videos": 2, "every_n_steps": 0, "video": {"fps": 8},
}


def _plain(value: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists (anything else unchanged)."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


class UpsamplerModule(PreflightOnce, GuardedEMAModule):
    """Trains cascade stage `stage` (`+experiment=sr_stageN`): `generator` (an `UpsampleStage`) against
    `discriminator`; the EMA of the generator is validated through `inference.cascade.upsample` and exported."""

    # what its checkpoints hold (the model entry `inference` reads): the trained network and its weights' prefixes
    saved_kind, trained_net = UPSAMPLER, "generator"
    weight_prefixes = {"ema": "ema.module.", "raw": "generator."}

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        content_loss: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        stage: int = 1,
        base_size: int | None = 64,
        crop_size: int | None = None,
        degrade: dict[str, Any] | None = None,
        usm: dict[str, float] | None = None,
        gan: dict[str, Any] | None = None,
        grad_clip_g: float | None = 1.0,
        grad_clip_d: float | None = 1.0,
        ema_decay: float = 0.999,
        ema_start: int = 0,
        validation: dict[str, Any] | None = None,
        export_dir: str | None = None,
        seed: int = 0,
        max_nonfinite_steps: int = 10,
        trainable: list[str] | None = None,
        make_pairs: str = "workers",
    ) -> None:
        super().__init__()
        if make_pairs not in ("workers", "step"):
            raise WantrainError(f"model.make_pairs={make_pairs!r}: use workers (DataLoader workers, on the host) or "
                                "step (in the training step, on its device)")
        if int(stage) < 1:
            raise WantrainError(f"model.stage={stage}: cascade stages count from 1 (sr_stage1 maps 64 -> 128 px)")
        usm = _plain(usm)  # USM-sharpened HR: LR source and content-loss target (Real-ESRGAN); None: off
        unknown = sorted(set(usm or {}) - set(USM_KEYS))
        if unknown:
            raise WantrainError(f"unknown model.usm keys {unknown}: use {list(USM_KEYS)}, or model.usm=null")
        # plain containers in the checkpoint's hyper_parameters (Hydra passes DictConfigs; weights_only loads)
        degrade, gan, validation, trainable = (_plain(v) for v in (degrade, gan, validation, trainable))
        self.save_hyperparameters(ignore=["generator", "discriminator", "content_loss", "optimizer_g", "optimizer_d"])
        self.automatic_optimization = False
        self.generator, self.discriminator, self.content_loss = generator, discriminator, content_loss
        self.optimizer_g_factory, self.optimizer_d_factory = optimizer_g, optimizer_d
        self.degrade_cfg = DegradeConfig.from_dict(degrade)
        if self.degrade_cfg.scale != 2:
            raise WantrainError(f"model.degrade.scale={self.degrade_cfg.scale}: every cascade stage is ×2, set it to 2")
        self.gan = GANSchedule.from_config(gan)  # OptionError (one line) on a bad model.gan
        self.adversarial = AdversarialLoss(self.gan.loss)
        self.val_cfg = {**VALIDATION_DEFAULTS, **dict(validation or {})}
        unknown = set(self.val_cfg) - set(VALIDATION_DEFAULTS)
        if unknown:
            raise WantrainError(f"unknown model.validation keys {sorted(unknown)}: use {sorted(VALIDATION_DEFAULTS)}")
        lp = self.val_cfg["lpips"]
        # metric network: frozen, not trained, not in checkpoints (LPIPSLoss drops its weights from state_dict)
        self.lpips_metric = LPIPSLoss(**dict(lp)) if lp else None
        self.lr_size = base_size * 2 ** (stage - 1) if base_size else None  # None: data.resolution / 2
        self._hr_size: tuple[int, int] | None = None  # frame size of the training clips (before crops)
        self._codec_threads: int | None = None  # make_pairs=step: host threads of the codecs (codec_threads)
        # model.trainable: which generator parameters train (null: all); the rest frozen, out of the EMA (a pattern
        # that matches nothing raises ValueError naming it; `fit` prints it in one line)
        set_trainable(generator, trainable)
        # the EMA of G; NaN/inf gradients skip that G (or D) update, K in a row stop the run (one guard per network)
        self.init_ema_and_guards(generator, ema_decay, max_nonfinite_steps,
                                 {"g": "train/nonfinite_steps", "d": "train/nonfinite_d_steps"})
        self.batches = 0  # batches trained (== global_step); saved in checkpoints with the D step count
        self.d_steps = 0
        self.val_examples: dict[str, torch.Tensor] | None = None  # LR | bicubic | SR | HR of the first val batch
        video = dict(self.val_cfg["video"] or {})
        self.sample_videos = SampleVideos(int(self.val_cfg["every_n_steps"] or 0), int(video.get("fps", 8)))

    # --- setup and counters -------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """The preflight's checks, unless `prepare_run` already ran them for this data module and Trainer."""
        trainer = attached_trainer(self)
        datamodule = trainer.datamodule if trainer is not None else None
        self.preflight_unless_done(datamodule, trainer)
        if stage == "fit" and hasattr(datamodule, "train_transform"):  # pairs (or their seeds) from the workers
            datamodule.train_transform = self.pair_transform()

    def check_run(self, datamodule: Any, trainer: pl.Trainer | None) -> None:
        """One-line errors: data.resolution is this stage's HR size; DDP without unused-parameter detection (G and
        D are each idle in the other's backward)."""
        self.check_resolution(getattr(datamodule, "resolution", None))
        strategy = trainer.strategy if trainer is not None else None
        if isinstance(strategy, DDPStrategy) and strategy.world_size > 1 and not ddp_finds_unused_parameters(strategy):
            raise WantrainError("the upsampler GAN under DDP needs unused-parameter detection: "
                                "add trainer.strategy=ddp_find_unused_parameters_true")

    @property
    def phase(self) -> str:
        """'pixel' during the content-loss-only warm-up, then 'gan'."""
        return self.gan.phase(self.batches)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the batch / D-step counters (the phase and λ follow from them) and the guards' counters."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["upsampler_counters"] = {"batches": self.batches, "d_steps": self.d_steps, "phase": self.phase}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the counters saved by `on_save_checkpoint`."""
        super().on_load_checkpoint(checkpoint)
        counters = checkpoint.get("upsampler_counters", {})
        self.batches = int(counters.get("batches", checkpoint.get("global_step", 0)))
        self.d_steps = int(counters.get("d_steps", 0))

    # --- data ---------------------------------------------------------------------------------------

    def _generator(self, salt: int) -> torch.Generator:
        """A CPU generator for degradations/crops, distinct per rank and batch, reproducible on resume."""
        rank = self.global_rank if attached_trainer(self) is not None else 0
        return torch.Generator().manual_seed((int(self.hparams.seed) * 1_000_003 + rank * 7919 + salt) % (2 ** 63))

    def check_resolution(self, resolution: int | tuple[int, int] | None) -> None:
        """Fail in one line, before a Trainer exists, when `data.resolution` is not this stage's HR size (the
        check `make_pair` does on every batch) or cannot be halved."""
        if resolution is None:
            return
        h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        if self.lr_size is not None and (h, w) != (2 * self.lr_size, 2 * self.lr_size):
            raise WantrainError(f"sr_stage{self.hparams.stage} maps {self.lr_size} -> {2 * self.lr_size} px but "
                                f"data.resolution={resolution}: set data.resolution={2 * self.lr_size}")
        if h % 2 or w % 2:
            raise WantrainError(f"data.resolution={resolution} is the HR size of a ×2 stage: use an even size")

    def make_pair(self, video: torch.Tensor, train: bool, generator: torch.Generator, codec_threads: int = 1,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """HR clip (B, 3, T, H, W) -> (LR, noise level (B,), HR after cropping, the content loss's target): the
        stage's `degradations.pairs.make_pair` (validation degrades the plain HR, a real input). Training pairs are
        made by the DataLoader workers (`pair_transform`) when the data module takes it."""
        h, w = video.shape[-2:]
        self.check_clip_size(h, w)
        crop = self.hparams.crop_size if train else self.val_cfg["crop_size"]
        return make_pair(video, self.degrade_cfg, generator, train, crop, self.hparams.usm, codec_threads)

    def check_clip_size(self, h: int, w: int) -> None:
        """One line when the clips are not this stage's HR size; remembers the size for export."""
        if self.lr_size is not None and (h, w) != (2 * self.lr_size, 2 * self.lr_size):
            raise WantrainError(f"sr_stage{self.hparams.stage} maps {self.lr_size} -> {2 * self.lr_size} px but the "
                                f"clips are {h}x{w}: set data.resolution={2 * self.lr_size}")
        self._hr_size = (int(h), int(w))

    def pair_transform(self) -> PairTransform:
        """The training pairs as a DataLoader-worker transform (setup hands it to the data module); with
        `make_pairs=step` it only seeds each batch's pair, which the step makes on its device."""
        return PairTransform(self.degrade_cfg, self.hparams.crop_size, self.hparams.usm,
                             in_step=self.hparams.make_pairs == "step")

    def codec_threads(self) -> int:
        """Host threads for the video codecs of pairs made in the step: this process's share of its CPUs (counted
        once, at the first step that needs it)."""
        if self._codec_threads is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            devices = int(getattr(attached_trainer(self), "num_devices", 1) or 1)
            self._codec_threads = max(1, cpus // max(1, devices))
        return self._codec_threads

    # --- training -----------------------------------------------------------------------------------

    def _step_uncounted(self, optimizer: Any) -> None:
        """Optimizer step through the strategy + precision plugin, without advancing `global_step`."""
        raw = getattr(optimizer, "optimizer", optimizer)
        self.trainer.strategy.optimizer_step(raw, closure=lambda: None)

    def _clip(self, optimizer: Any, value: float | None) -> None:
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=float(value), gradient_clip_algorithm="norm")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """One G update (content + λ·GAN), then `d_updates` D updates every `d_every` batches (GAN phase)."""
        opt_g, opt_d = self.optimizers()
        if "lr" in batch:  # made by the DataLoader worker (pair_transform)
            lr, level, hr = batch["lr"], batch["level"], batch["video"]
            target = batch.get("target", hr)  # (the clip size was checked at start: preflight, data.resolution)
        elif "pair_seed" in batch:  # make_pairs=step: the worker's seed, the pair made here on the step's device
            lr, level, hr, target = self.make_pair(batch["video"], True, pair_generator(batch["pair_seed"]),
                                                   self.codec_threads())
        else:
            lr, level, hr, target = self.make_pair(batch["video"], True, self._generator(self.batches))
        gan_on = self.phase == "gan"
        lam = self.gan.weight_at(self.batches)
        b = hr.shape[0]

        self.toggle_optimizer(opt_g)
        sr = self.generator(lr, level)  # (B, 3, T, H, W)
        content, parts = self.content_loss(sr, target)
        loss_g = content
        if gan_on:
            loss_adv = self.adversarial.generator(self.discriminator(sr))
            loss_g = loss_g + lam * loss_adv
            self.log("train/loss_g_adv", loss_adv.detach(), batch_size=b)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        trained = [p for p in self.generator.parameters() if p.requires_grad]
        self.guard_gradients(trained, "g", "generator ")
        self._clip(opt_g, self.hparams.grad_clip_g)
        opt_g.step()  # the only counted step: global_step += 1 per batch (a no-op when the check dropped the grads)
        self.untoggle_optimizer(opt_g)
        # the EMA of G after each G step (also a skipped one); before `ema_start` batches it copies G
        self.ema.follow(self.generator, self.batches, int(self.hparams.ema_start), copy_before_start=True)

        fake = sr.detach()
        for _ in range(self.gan.d_due(self.batches)):
            self._discriminator_update(opt_d, hr, fake)

        self.batches += 1
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=b)
        self.log("train/loss_g", loss_g.detach(), prog_bar=True, batch_size=b)
        self.log("train/gan_weight", lam, batch_size=b)
        self.log("train/phase", float(gan_on), batch_size=b)
        self.log("trainer/batches", float(self.batches), batch_size=b)
        self.log_nonfinite()

    def _discriminator_update(self, opt_d: Any, real: torch.Tensor, fake: torch.Tensor) -> None:
        """D loss on real vs detached fakes (+ lazy R1 every `r1_every` D steps), clipped, one uncounted step."""
        r1_weight = self.gan.r1_weight(self.d_steps)
        r1_due = r1_weight > 0
        self.toggle_optimizer(opt_d)
        real = real.detach().requires_grad_(r1_due)
        real_logits = self.discriminator(real)
        fake_logits = self.discriminator(fake)
        loss_d = self.adversarial.discriminator(real_logits, fake_logits)
        if r1_due:
            penalty = r1_penalty(real_logits, real)
            loss_d = loss_d + r1_weight * penalty
            self.log("train/r1", penalty.detach(), batch_size=real.shape[0])
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        self.guard_gradients(list(self.discriminator.parameters()), "d", "discriminator ")
        self._clip(opt_d, self.hparams.grad_clip_d)
        self._step_uncounted(opt_d)
        self.untoggle_optimizer(opt_d)
        self.d_steps += 1
        self.log("train/loss_d", loss_d.detach(), batch_size=real.shape[0])
        self.log("train/d_real", real_logits.detach().float().mean(), batch_size=real.shape[0])
        self.log("train/d_fake", fake_logits.detach().float().mean(), batch_size=real.shape[0])

    # --- validation / test --------------------------------------------------------------------------

    def upsample(self, lr: torch.Tensor, use_ema: bool | None = None) -> torch.Tensor:
        """SR clip (B, 3, T, 2h, 2w) in [-1, 1] from clean LR (B, 3, T, h, w) with the EMA (default) or live G,
        through the one inference path (`sample` and exports run the same `upsample`)."""
        use_ema = self.val_cfg["use_ema"] if use_ema is None else use_ema
        net = self.ema.module if use_ema else self.generator
        return upsample(net, lr, stage=int(self.hparams.stage), tile=self.val_cfg["tile"],
                        overlap=int(self.val_cfg["tile_overlap"]))

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, prefix: str) -> None:
        """Metrics of SR and of the bicubic baseline on deterministic degradations of the batch."""
        generator = self._generator(10 ** 9 + int(self.val_cfg["seed"]) + batch_idx)
        lr, _level, hr, _target = self.make_pair(batch["video"], False, generator)
        sr, baseline = self.upsample(lr), bicubic(lr)
        if prefix == "val" and self.val_examples is None:
            n = int(self.val_cfg["num_videos"])
            self.val_examples = {"lr": lr[:n].cpu(), "bicubic": baseline[:n].cpu(), "sr": sr[:n].cpu(),
                                 "hr": hr[:n].cpu()}
        for suffix, pred in (("", sr), ("_bicubic", baseline)):
            for name, value in sr_metrics(pred, hr, self.lpips_metric).items():
                self.log(f"{prefix}/{name}{suffix}", value, batch_size=hr.shape[0], sync_dist=True,
                         prog_bar=prefix == "val" and name == "psnr")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """`val/psnr`, `val/psnr_bicubic`, ... (PSNR/SSIM on RGB and Y, LPIPS, temporal error)."""
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Same metrics as validation under `test/`."""
        self._evaluate(batch, batch_idx, "test")

    def configure_callbacks(self) -> list[pl.Callback]:
        """LR | bicubic | SR | HR videos every `model.validation.every_n_steps` batches; the export of the EMA
        generator to `model.export_dir/sr_stageN/` at the end of training when it is set."""
        callbacks: list[pl.Callback] = [self.sample_videos]
        if self.hparams.export_dir:
            callbacks.append(ExportAtTrainEnd(Path(self.hparams.export_dir) / f"sr_stage{int(self.hparams.stage)}"))
        return callbacks

    def sample_video(self, examples: dict[str, torch.Tensor]) -> SampleVideo:
        """The side-by-side video sr_stageN_stepNNNNNNN (LR | bicubic | SR | HR) of the kept validation clips."""
        step, stage = self.global_step, int(self.hparams.stage)
        layout = "rows: clips; columns: LR (nearest) | bicubic | SR (EMA) | HR"
        frames = comparison_frames(examples["lr"], examples["bicubic"], examples["sr"], examples["hr"])
        return SampleVideo(f"sr_stage{stage}_step{step:07d}", frames, {"step": step, "stage": stage, "layout": layout},
                           layout)

    # --- export and optimizers ----------------------------------------------------------------------

    def export(self, folder: str | Path, use_ema: bool = True) -> Path:
        """Write the (EMA) generator as an exported stage (config.json + model.safetensors) to `folder`."""
        if self.lr_size is not None:
            lr_size = (self.lr_size, self.lr_size)
        elif self._hr_size is not None:
            lr_size = (self._hr_size[0] // 2, self._hr_size[1] // 2)
        else:  # no batch seen in this process (resumed at max_steps): the datamodule's clip size
            res = self.trainer.datamodule.resolution
            lr_size = (res // 2, res // 2) if isinstance(res, int) else (res[0] // 2, res[1] // 2)
        return export_upsampler(self.ema.module if use_ema else self.generator, int(self.hparams.stage), lr_size,
                                folder, validation=self.val_cfg, weights_kind="ema" if use_ema else "raw",
                                source=str(self.trainer.default_root_dir) if attached_trainer(self) is not None else "")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[G optimizer, D optimizer] from the `_partial_` factories (Adam β=(0.9, 0.99) in the configs)."""
        return [self.optimizer_g_factory([p for p in self.generator.parameters() if p.requires_grad]),
                self.optimizer_d_factory([p for p in self.discriminator.parameters() if p.requires_grad])]

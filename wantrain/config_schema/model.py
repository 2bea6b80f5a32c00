"""The schema of the model options (conf/model/, `model.*`): the plain-value options of both LightningModules.
The networks inside (`model.unet`, `model.generator`, ...) are `_target_` nodes, checked against their
constructors' signatures (config_schema/targets.py); these classes hold what is ours to bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wantrain.degradations.pipeline import DegradeConfig
from wantrain.diffusion.cond_aug import CondAug
from wantrain.diffusion.sampling import SamplingOptions, VideoOptions
from wantrain.evaluation.quality_options import VideoMetricsOptions
from wantrain.losses.adversarial import GANSchedule
from wantrain.schema import option


@dataclass
class OptimizerOptions:
    """`model.optimizer*`: a torch optimizer (`_partial_`); other keys go to its constructor (checked there)."""

    lr: float = option(1e-4, "learning rate", gt=0)
    weight_decay: float = option(0.0, "decoupled weight decay (AdamW) or L2", ge=0)
    betas: list[float] = option(doc="Adam's (beta1, beta2)", ge=0, lt=1, factory=lambda: [0.9, 0.999])
    eps: float = option(1e-8, "Adam's epsilon", gt=0)


@dataclass
class LoraOptions:
    """`model.lora`: LoRA adapters (peft) on the UNet's layers."""

    rank: int | None = option(None, "null: no LoRA", ge=1)
    alpha: float | None = option(None, "null: = rank", gt=0)
    dropout: float = option(0.0, "dropout on the adapter input", ge=0, lt=1)
    target_modules: list[str] = option(doc="module-name suffixes that get adapters", factory=list)


@dataclass
class DiffusionOptions:
    """`model.*` of the video diffusion stage (VideoDiffusionModule)."""

    conditioning: str = option("live", "live encoders or cached embeddings", choices=("live", "cached"))
    build_tiny_encoders: bool = option(False, "build tiny random encoders on first use (CPU runs, tests)")
    objective: str = option("ddpm", "ddpm (model.schedule) or flow (model.flow)", choices=("ddpm", "flow"))
    space: str = option("pixel", "pixels in [-1, 1] or a frozen VAE's latents", choices=("pixel", "latent"))
    optimizer: OptimizerOptions | None = option(None, "the optimizer")
    sampling: SamplingOptions | None = option(None, "sampling of validation videos")
    lora: LoraOptions | None = option(None, "LoRA adapters")
    cond_aug: CondAug | None = option(None, "conditioning-frame noise augmentation (null: off)")
    ema_decay: float = option(0.999, "EMA decay of the sampled weights", ge=0, le=1)
    ema_start_step: int = option(0, "EMA updates from this step on", ge=0)
    timestep_buckets: int = option(4, "loss logged per timestep bucket", ge=1)
    max_nonfinite_steps: int = option(10, "stop after this many NaN/inf steps in a row", ge=1)
    trainable: list[str] | None = option(None, "module-name patterns that train (null: all)")
    weight_decay_exclude: list[str] | None = option(None, "no weight decay on these module names")
    video_metrics: TrainingVideoMetrics | None = option(None, "video-quality metrics of the EMA samples (val/...)")


@dataclass
class TrainingVideoMetrics(VideoMetricsOptions):
    """`model.video_metrics`: the video-quality metrics (CLIP score, consistency, motion, ...) of the EMA samples of
    the kept validation clips, logged as val/<metric>."""

    every_n_validations: int = option(0, "every this many validations (0: off)", ge=0)


@dataclass
class UsmOptions:
    """`model.usm`: unsharp masking of the HR target (Real-ESRGAN's gt_usm)."""

    weight: float = option(0.5, "sharpening amount", ge=0)
    sigma: float = option(8.0, "Gaussian sigma of the blur", gt=0)
    threshold: float = option(10.0, "mask threshold (0..255 units)", ge=0)
    degrade_sharpened: bool = option(True, "degrade the sharpened HR (Real-ESRGAN) or the plain one")


@dataclass
class LpipsOptions:
    """`model.validation.lpips`: the LPIPS validation metric."""

    net: str = option("alex", "LPIPS trunk", choices=("alex", "vgg", "squeeze"))
    trunk_path: str | None = option(None, "trunk weights (null: torch hub cache)")
    allow_random_weights: bool = option(False, "random trunk where no weights exist (tests)")


@dataclass
class UpsamplerValidation:
    """`model.validation`: the upsampler's validation."""

    use_ema: bool = option(True, "validate the EMA generator")
    lpips: LpipsOptions | None = option(None, "LPIPS metric (null: off)")
    crop_size: int | None = option(None, "HR centre crop (null: whole frames)", ge=1)
    tile: int | None = option(None, "LR tile size for tiled inference (null: whole frames)", ge=1)
    tile_overlap: int = option(16, "tile overlap in LR pixels", ge=0)
    seed: int = option(1234, "seed of the validation degradations")
    num_videos: int = option(2, "side-by-side sample videos", ge=0)
    every_n_steps: int = option(0, "write sample videos every N steps (0: only at validation)", ge=0)
    video: VideoOptions | None = option(None, "mp4 settings")


@dataclass
class UpsamplerOptions:
    """`model.*` of a cascade stage (UpsamplerModule)."""

    stage: int = option(1, "cascade stage N (sr_stageN)", ge=1)
    base_size: int | None = option(None, "LR size of stage 1 (null: data.resolution / 2)", ge=1)
    crop_size: int | None = option(None, "HR training crop (null: whole frames)", ge=8)
    degrade: DegradeConfig | None = option(None, "LR degradations")
    usm: UsmOptions | None = option(None, "USM-sharpened targets (null: off)")
    gan: GANSchedule | None = option(None, "adversarial schedule")
    optimizer_g: OptimizerOptions | None = option(None, "generator optimizer")
    optimizer_d: OptimizerOptions | None = option(None, "discriminator optimizer")
    grad_clip_g: float | None = option(1.0, "generator gradient clip norm (null: off)", gt=0)
    grad_clip_d: float | None = option(1.0, "discriminator gradient clip norm (null: off)", gt=0)
    ema_decay: float = option(0.999, "EMA decay of the generator", ge=0, le=1)
    ema_start: int = option(0, "batches before the EMA starts averaging", ge=0)
    validation: UpsamplerValidation | None = option(None, "validation")
    export_dir: str | None = option(None, "export the EMA generator here at the end of fit")
    seed: int = option(0, "seed of the training degradations")
    max_nonfinite_steps: int = option(10, "stop after this many NaN/inf steps in a row", ge=1)
    trainable: list[str] | None = option(None, "module-name patterns that train (null: all)")
    make_pairs: str = option("workers", "where training pairs are made: workers (DataLoader workers, host) or step "
                                        "(the training step's device; codecs on host threads)",
                             choices=("workers", "step"))


# the options schema of each LightningModule, by its `_target_`
MODEL_OPTIONS: dict[str, type] = {
    "wantrain.training.video_diffusion.VideoDiffusionModule": DiffusionOptions,
    "wantrain.training.upsampler.UpsamplerModule": UpsamplerOptions,
}


def options_for(target: Any) -> type | None:
    """The options schema of a model node's `_target_` (None for a model wantrain does not know)."""
    return MODEL_OPTIONS.get(str(target))

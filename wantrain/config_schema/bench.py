"""The schemas of `bench`: conf/bench.yaml's own keys and each benchmark's `bench.*` (conf/bench/ACTION.yaml).
Defaults are the YAML's; torch-free to import (help pages read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wantrain.config_schema.commands import DEVICE
from wantrain.config_schema.data import DataOptions, Shards
from wantrain.config_schema.run import RunOptions, TrainerOptions
from wantrain.schema import borrowed, option


@dataclass
class BenchOptions:
    """conf/bench.yaml: where the table's JSON goes; `bench` is the chosen benchmark's options."""

    run_name: str = option("${wantrain_run_stamp:}", "the launch's stamp (STAMP_N for sweep point N)")
    run_dir: str = option("${paths.runs_dir}/bench", "the benchmarks' folder")
    out_dir: str = option("${run_dir}", "the rows, the bench config and the host go to "
                                        "OUT_DIR/<action>-<run_name>.json")
    seed: int = option(0, "torch seed set before the benchmark runs")
    paths: Any = borrowed(RunOptions, "paths")
    bench: Any = option(None, "the benchmark's options (conf/bench/ACTION.yaml)")


@dataclass
class DataBench:
    """`bench data`: clips/s of the data pipeline vs raw decoding, by workers and clip length; buckets + images."""

    shards: Shards = option(None, "measure your own shards (null: a synthetic set written to a temp dir)")
    num_clips: int = option(128, "synthetic clips", ge=1)
    shard_size: int = option(16, "synthetic clips per shard", ge=1)
    source_frames: int = option(32, "synthetic clips' frames (8 fps)", ge=1)
    source_size: int = option(128, "synthetic clips' side", ge=8)
    gop: int = option(8, "synthetic clips' keyframe interval", ge=1)
    long_frames: int = option(320, "long-vs-short clip: same window, this many source frames", ge=1)
    num_frames: int = borrowed(DataOptions, "num_frames", "the window (T)", default=16)
    frame_stride: int = borrowed(DataOptions, "frame_stride", default=1)
    resolution: int = borrowed(DataOptions, "resolution", "the output side", default=64)
    batch_size: int = borrowed(DataOptions, "batch_size", default=4)
    workers: list[int] = option(doc="DataLoader worker counts measured", ge=0, factory=lambda: [1, 2])
    backend: str = borrowed(DataOptions, "decode_backend", default="pyav")
    repeats: int = option(2, "best of N passes", ge=1)
    length_trials: int = option(20, "windows read per clip length", ge=1)
    seed: int = option(0, "seed of the synthetic set and the data order")
    buckets: list[list[int]] | None = option(doc="a mixed set through these [H, W, T] buckets (+ T = 1 buckets), "
                                                 "videos only and with image steps, vs raw decoding; null: skip",
                                             ge=1, factory=lambda: [[64, 64, 16], [64, 96, 16], [96, 64, 16],
                                                                    [64, 64, 8]])
    mixed_shapes: list[list[int]] = option(doc="source shapes [H, W, T] of the mixed set, in turn", ge=1,
                                           factory=lambda: [[128, 192, 32], [192, 128, 32], [128, 128, 32],
                                                            [96, 96, 12]])
    num_images: int = option(64, "images in the mixed set", ge=0)
    image_ratio: float = borrowed(DataOptions, "image_ratio", default=0.25)


@dataclass
class LatentFactors:
    """`bench.latent`: the VAE's factors in latent space (Wan2.1's AutoencoderKLWan)."""

    spatial_factor: int = option(8, "pixels per latent pixel (per side)", ge=1)
    temporal_factor: int = option(4, "frames 4k+1 -> k+1 latent frames; 1 for a per-frame AutoencoderKL", ge=1)


@dataclass
class UnetLatent(LatentFactors):
    """`bench unet`'s latent: the VAE's factors and channels."""

    channels: int = option(16, "latent channels (the tiny VAE has 4)", ge=1)


@dataclass
class PlanBench:
    """`bench plan`: memory per GPU and speed of a training config, traced on FakeTensors."""

    overrides: list[str] = option(doc="training-config overrides, e.g. [\"+experiment=i2v_64\", "
                                      "\"data.batch_size=4\"] (the command line's non-bench ones)", factory=list)
    precision: str | None = option(None, "null: the trainer's", choices=("bf16-mixed", "16-mixed", "32-true"))
    gpus: int = option(8, "GPUs FSDP shards over (the ddp rows do not depend on it)", ge=1)
    gpu: str = option("H100", "named GPU for samples/s (bf16 dense peak from wantrain.training.throughput)")
    peak_tflops: float | None = option(None, "or give the bf16 dense peak yourself", gt=0)
    mfu: float = option(0.35, "assumed model FLOPs utilisation for samples/s (bench unet measures it on a GPU)",
                        gt=0, le=1)
    capacities_gb: list[float] = option(doc="GPU memory sizes (decimal GB) for the largest-batch columns", gt=0,
                                        factory=lambda: [24, 80, 141])
    reserve: float = option(0.1, "fraction of a GPU kept free for fragmentation (besides 1 GB for context)",
                            ge=0, lt=1)
    image_tokens: int = option(256, "image-encoder tokens per clip (DiT-XL/2 at 256 px: (256/16)^2)", ge=0)
    latent: LatentFactors = option(doc="the VAE's factors in latent space", factory=LatentFactors)
    sequence_parallel: int = option(1, "ranks per sequence-parallel group of the DiT (trainer=fsdp2 "
                                       "sequence_parallel x ring_degree): the fsdp rows' activations per GPU / this",
                                    ge=1)
    cpu_offload: bool = option(False, "add fsdp+offload rows (FSDP2 CPUOffloadPolicy: weights, gradients, optimizer "
                                      "states and the EMA on the CPU; the GPU holds the units it computes)")
    optimizer_bytes: float = option(8.0, "optimizer state bytes per trainable parameter: 8 = AdamW (two fp32 "
                                         "moments), 2 = 8-bit AdamW (wantrain.training.optimizers.adamw_8bit)", gt=0)


@dataclass
class QualityBench:
    """`bench quality`: learning quality on real photographs filmed by a moving virtual camera."""

    parts: list[str] = option(doc="which parts to run", choices=("base", "sr"), factory=lambda: ["base", "sr"])
    seed: int = option(0, "seed of the camera paths and the training")
    threads: int | None = option(1, "torch CPU threads (null: torch default); 1 on a busy small box", ge=1)
    photo_scale: float = option(1.0, "the photos (427x640) are first resized by this: the scene", gt=0)
    held_out_split: float = option(0.55, "x < split·W: training clips; x >= split·W: held-out clips", gt=0, lt=1)
    min_detail: float = option(0.04, "a clip is the first of `tries` camera paths with mean |horizontal gradient| "
                                     ">= this, else the most detailed", ge=0)
    tries: int = option(8, "camera paths tried per clip", ge=1)
    camera_speed: list[float] = option(doc="pan speed range, scene pixels per frame, random direction", ge=0,
                                       factory=lambda: [0.5, 2.0])
    camera_zoom: list[float] = option(doc="window scale at the first / last frame: a slow zoom", gt=0,
                                      factory=lambda: [1.0, 1.3])
    caption: str = option("a photograph filmed by a slowly moving camera", "the clips' caption")
    base_frames: int = option(8, "base overfit: frames", ge=1)
    base_size: int = option(16, "base overfit: side", ge=1)
    base_steps: int = option(200, "base overfit: training steps", ge=1)
    base_batch: int = option(4, "base overfit: batch size", ge=1)
    sr_frames: int = option(4, "x2 stage: frames", ge=1)
    sr_size: int = option(64, "x2 stage: HR clip side (LR = sr_size / 2)", ge=2)
    sr_batches: int = option(600, "x2 stage: training batches", ge=1)
    sr_curve: list[int] = option(doc="x2 stage: also scored after these many batches (the curve over batches)",
                                 ge=1, factory=lambda: [100, 200, 300, 400])
    sr_batch: int = option(4, "x2 stage: batch size", ge=1)
    eval_clips: int = option(8, "held-out clips", ge=1)
    degraded_noise: float = option(0.02, "Gaussian sigma in [-1, 1] units of the degraded evaluation", ge=0)
    degraded_jpeg: int = option(70, "JPEG quality of the degraded evaluation", ge=1, le=100)
    data_dir: str = option("${paths.data_dir}", "the tiny T5 / DiT encoders of the base model are built here once")
    lpips_trunk: str | None = option(None, "path of alexnet-owt-7be5be79.pth for LPIPS (null: no LPIPS column)")
    base_model: dict[str, Any] = option(doc="the i2v_tiny model (conf/model/i2v_tiny.yaml), as the one-clip "
                                            "overfit test trains it", factory=dict)
    sr_model: dict[str, Any] = option(doc="the sr_tiny model (conf/model/sr_tiny.yaml) with the PSNR phase's "
                                          "changes", factory=dict)


@dataclass
class StepBench:
    """`bench step`: the Lightning fit loop's steps/s vs a bare PyTorch loop doing the same work."""

    device: str = option("auto", "auto: cuda when present, else cpu", pattern=DEVICE)
    precision: str = option("auto", "auto: bf16-mixed on CUDA, 32-true on CPU",
                            choices=("auto", "32-true", "bf16-mixed"))
    batch_size: int = option(2, "clips per batch", ge=1)
    num_frames: int = option(4, "frames per clip", ge=1)
    height: int = option(16, "frame height", ge=1)
    width: int = option(16, "frame width", ge=1)
    steps: int = option(5, "training steps per run (Trainer max_steps and bare-loop length)", ge=1)
    warmup: int = option(1, "first steps of each run left out of the timing", ge=0)
    repeats: int = option(2, "alternating Lightning / bare runs per shape; the best of each is reported", ge=1)
    scaling: bool = option(True, "also rows at 2T frames and 2x the pixels (W doubled)")
    gradient_clip_val: float | None = borrowed(TrainerOptions, "gradient_clip_val", "in both loops")
    seed: int = option(0, "seed of the model and the batch")
    threads: int | None = option(1, "torch intra-op threads (null: torch default)", ge=1)
    overrides: list[str] = option(doc="training-config overrides, e.g. [\"model.unet.model_channels=64\"] or "
                                      "[\"+experiment=i2v_latent_tiny\"]", factory=list)
    spaces: bool = option(False, "instead, per resolution, the bare step per clip in pixel vs latent space (live "
                                 "VAE encode + UNet; cached: UNet only)")
    resolutions: list[int | list[int]] = option(doc="spaces: square sides or [H, W] pairs", ge=1,
                                                factory=lambda: [32, 64, 128])
    latent_overrides: list[str] = option(doc="spaces: added to `overrides` for the latent-space module",
                                         factory=lambda: ["+experiment=i2v_latent_tiny"])


@dataclass
class UnetBench:
    """`bench unet`: SpatioTemporalUNet fwd+bwd time, FLOPs and MFU, beside diffusers' UNet3DConditionModel."""

    device: str = option("auto", "auto: cuda when present, else cpu", pattern=DEVICE)
    dtype: str = option("auto", "autocast dtype: auto (bf16 on GPU, fp32 on CPU)",
                        choices=("auto", "bf16", "fp16", "fp32"))
    batch_size: int = option(2, "clips per batch", ge=1)
    num_frames: int = option(8, "frames per clip", ge=1)
    height: int = option(16, "frame height", ge=1)
    width: int = option(16, "frame width", ge=1)
    context_len: int = option(16, "text tokens", ge=1)
    warmup: int = option(1, "untimed iterations", ge=0)
    iters: int = option(3, "timed iterations", ge=1)
    seed: int = option(0, "seed of the model and the inputs")
    compile: bool = option(False, "torch.compile our model (GPU)")
    channels_last: bool = option(False, "channels_last memory format")
    peak_tflops: float | None = option(None, "bf16 dense peak for MFU (null: from the GPU name)", gt=0)
    compare_diffusers: bool = option(True, "also time diffusers' UNet3DConditionModel at a matched size")
    space: str = option("pixel", "pixel: the UNet sees the clip; latent: the VAE latents of the clip",
                        choices=("pixel", "latent"))
    latent: UnetLatent = option(doc="the VAE's factors in latent space", factory=UnetLatent)
    unet: dict[str, Any] = option(doc="SpatioTemporalUNet arguments (conf/model/ has the real ones)", factory=dict)


@dataclass
class DitBench:
    """`bench dit`: the Wan DiT through wantrain beside diffusers' direct transformer call (the wrapper's cost)."""

    device: str = borrowed(UnetBench, "device", default="auto")
    dtype: str = borrowed(UnetBench, "dtype", default="auto")
    batch_size: int = borrowed(UnetBench, "batch_size", default=1)
    latent_frames: int = option(3, "latent frames (Wan: 1 + (frames - 1) / 4)", ge=1)
    latent_height: int = option(16, "latent height (Wan2.1: height / 8), even", ge=2)
    latent_width: int = option(16, "latent width (Wan2.1: width / 8), even", ge=2)
    prompt_tokens: int = option(24, "text tokens before the zero padding (of 512)", ge=1, le=512)
    image_tokens: int = option(257, "CLIP tokens (I2V: 257 for ViT-H/14 at 224 px)", ge=1)
    architecture: str | None = option(None, "a released Wan transformer by name (nets/wan_architectures.py); null: "
                                            "bench.transformer")
    transformer: dict[str, Any] = option(doc="WanTransformer3DModel arguments when architecture is null",
                                         factory=dict)
    warmup: int = borrowed(UnetBench, "warmup", default=1)
    iters: int = borrowed(UnetBench, "iters", default=5)
    seed: int = borrowed(UnetBench, "seed", default=0)
    peak_tflops: float | None = borrowed(UnetBench, "peak_tflops")


@dataclass
class UpsamplerBench:
    """`bench upsampler`: fwd+bwd of a stage and of the discriminator, tiled vs untiled inference."""

    name: str = option("upsampler", "the benchmark's name (recorded with the config)")
    device: str = option("auto", "auto: cuda when present, else cpu", pattern=DEVICE)
    precision: str = option("fp32", "bf16: autocast", choices=("fp32", "bf16"))
    batch: int = option(1, "clips per batch", ge=1)
    frames: int = option(4, "frames per clip", ge=1)
    size: int = option(32, "LR frame size for the training-step timings (HR = 2x)", ge=1)
    channels: int = option(16, "stage channels", ge=1)
    num_blocks: int = option(2, "residual blocks", ge=1)
    detail_blocks: int = option(1, "detail enhancer blocks", ge=0)
    temporal_kernel: int = option(3, "temporal kernel size", ge=1)
    upsample: str = option("nearest", "upsampling layer", choices=("nearest", "pixelshuffle"))
    discriminator: str = option("unet", "discriminator kind", choices=("unet", "patch3d", "unet_temporal"))
    disc_channels: int = option(16, "discriminator channels", ge=1)
    warmup: int = option(1, "untimed iterations", ge=0)
    repeats: int = option(3, "timed iterations", ge=1)
    tiled_size: int = option(64, "LR frame size for the inference comparison", ge=1)
    tile: int = option(32, "LR tile side", ge=1)
    overlap: int = option(8, "tile overlap", ge=0)
    chunk: int | None = option(None, "frames per temporal chunk (null: whole clip)", ge=1)
    chunk_overlap: int = option(2, "frames shared by neighbouring chunks", ge=0)
    seed: int = option(0, "seed of the model and the inputs")
    threads: int | None = option(1, "torch CPU threads (null: torch default); 1 avoids OpenMP spin-waits", ge=1)
    pair_stages: list[str] = option(doc="experiments whose training pairs (crop + degradations) are timed on the "
                                        "host against their planned GPU step ([] : none)",
                                    factory=lambda: ["sr_stage1", "sr_stage2", "sr_stage3", "sr_stage4"])
    pair_overrides: list[str] = option(doc="training overrides for those experiments (e.g. data.batch_size=4)",
                                       factory=list)
    pair_gpu: str = option("H100", "named GPU of the planned step (bench plan's bench.gpu)")
    pair_mfu: float = option(0.35, "MFU of the planned step (bench plan's bench.mfu)", gt=0, le=1)


# nodes a benchmark resolves itself, against its own root (bench quality: the models' ${model.*} interpolations)
RESOLVED_BY_THE_BENCHMARK: dict[str, tuple[str, ...]] = {"quality": ("base_model", "sr_model")}
# each benchmark's `bench.*` schema, by action
BENCHES: dict[str, type] = {"data": DataBench, "dit": DitBench, "plan": PlanBench, "quality": QualityBench,
                            "step": StepBench, "unet": UnetBench, "upsampler": UpsamplerBench}

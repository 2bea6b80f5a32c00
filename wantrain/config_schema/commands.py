"""The schemas of the other commands' own keys: conf/sample.yaml, test.yaml, encode.yaml and shards.yaml (bench: in
config_schema/bench.py). Defaults are the YAML's; an option that is another schema's option (a sampling setting, a
data key, a synthetic-set size) borrows that field's doc and bounds instead of repeating them.

Torch-free to import (help pages read it): the sampling and validation schemas it borrows from are imported when a
value is first checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wantrain.config_schema.data import DataOptions, Shards, SyntheticOptions
from wantrain.config_schema.run import RunOptions
from wantrain.evaluation.quality_options import VideoMetricsOptions
from wantrain.schema import borrowed, option

# `device`: what wantrain.ranks.pick_device (torch.device) takes
DEVICE = (r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda, cuda:N or mps")
STAMP = "${oc.env:SLURM_JOB_ID,${oc.env:WANTRAIN_RUN_STAMP,local}}"


def _sampling() -> type:
    from wantrain.diffusion.sampling import SamplingOptions

    return SamplingOptions


def _video() -> type:
    from wantrain.diffusion.sampling import VideoOptions

    return VideoOptions


def _validation() -> type:
    from wantrain.config_schema.model import UpsamplerValidation

    return UpsamplerValidation


def _checkpoints(name: str) -> str:
    return f"null: the checkpoint's model.sampling.{name}"


@dataclass
class SampleOptions:
    """conf/sample.yaml: image + prompt (or a prompts file) to mp4s through the base model and the cascade."""

    run_name: str = borrowed(RunOptions, "run_name", default=STAMP)
    run_dir: str = option("${paths.runs_dir}/sample/${run_name}", "this command's folder")
    base_ckpt: str = option("???", "the video diffusion stage: a .ckpt, a run folder (its checkpoints/last.ckpt), "
                                   "an exported model folder, or an export root (its stages when sr_ckpts is null)")
    sr_ckpts: str | list[str] | None = option(None, "upsampler stages in cascade order (sr_stage1, sr_stage2, ...), "
                                                    "e.g. [runs/sr1/export/sr_stage1,...]")
    use_ema: bool = option(True, "false: the raw (non-EMA) weights of .ckpt files")
    lora: str | None = option(None, "a LoRA file merged onto base_ckpt (export_lora writes "
                                    "DIR/lora/pytorch_lora_weights.safetensors)")
    image: str | None = option(None, "first frame (png/jpg/...), resized to cover the base resolution and "
                                     "centre-cropped")
    prompt: str | float | None = option(None, "the prompt of the single clip")
    prompts: str | None = option(None, ".csv or .jsonl with image, prompt[, seed][, out], split over ranks; "
                                       "relative image paths: from its folder")
    out: str | None = option(None, "single clip: mp4 path (null: OUT_DIR/sample.mp4)")
    out_dir: str = option("${run_dir}", "batch outputs (NNNNN.mp4 per row without `out`) and "
                                        "samples-rankR.jsonl records")
    batch_size: int = option(4, "clips sampled together (batch mode)", ge=1)
    seed: int = option(0, "single clip: its seed; batch: rows without a seed get seed + row index", ge=0)
    sampler: str | None = borrowed(_sampling, "sampler", _checkpoints("sampler"))
    steps: int | None = borrowed(_sampling, "num_steps", _checkpoints("num_steps"))
    eta: float | None = borrowed(_sampling, "eta", _checkpoints("eta"))
    shift: float | None = borrowed(_sampling, "shift", _checkpoints("shift"))
    text_scale: float | None = borrowed(_sampling, "text_scale", _checkpoints("text_scale"))
    image_scale: float | None = borrowed(_sampling, "image_scale", _checkpoints("image_scale"))
    guidance_rescale: float | None = borrowed(_sampling, "guidance_rescale", _checkpoints("guidance_rescale"))
    guidance_ramp: float | None = borrowed(_sampling, "guidance_ramp", _checkpoints("guidance_ramp"))
    frame0: str | None = borrowed(_sampling, "frame0", _checkpoints("frame0"))
    cond_aug: float | None = borrowed(_sampling, "cond_aug", _checkpoints("cond_aug"))
    num_frames: int | None = option(None, "null: the frames the base model was trained on", ge=1)
    size: int | None = option(None, "output frame height (base·2^k, k <= stages); null: after the last given stage",
                              ge=1)
    tile: int | str | None = option("auto", "auto: tile stages whose input side > 256 px (128 px tiles); INT: the "
                                            "LR tile side; null: never", ge=1, pattern=("auto", "auto"))
    tile_overlap: int = option(16, "tile overlap in LR pixels", ge=0)
    sr_noise_level: float = option(0.0, "noise-conditioned stages get their input noise-augmented at this level "
                                        "(seeded per clip, as in training) and are told it; 0: clean input",
                                   ge=0, le=1)
    check_sizes: bool = option(True, "refuse stages trained for another input size than the clip entering them")
    fps: float | None = borrowed(_video, "fps", "null: the checkpoint's model.sampling.video.fps, else 8; also the "
                                                "fps a model with micro_conditioning [fps, ...] is told")
    motion: float | None = option(None, "the motion score told to a model trained with micro_conditioning "
                                        "[..., motion] (null: 0)")
    crf: int = option(18, "H.264 quality (lower: better, larger)", ge=0, le=51)
    grid: bool = option(False, "also write the frames as a PNG grid beside each mp4")
    grid_cols: int | None = option(None, "frames per grid row (null: ceil(sqrt(T)))", ge=1)
    text_encoder: str | None = option(None, "null: the text encoder path saved in the base checkpoint")
    image_encoder: str | None = option(None, "null: the image encoder path saved in the base checkpoint")
    device: str = option("auto", "auto: cuda:LOCAL_RANK when present, else cpu", pattern=DEVICE)
    precision: str = option("auto", "auto: bf16 autocast on GPUs that support it, else fp32",
                            choices=("auto", "fp32", "bf16"))
    export: str | None = option(None, "DIR: write base/ and sr_stageN/ (config.json + model.safetensors) and stop, "
                                      "unless image/prompts are given")
    format: str = option("wantrain", "export format: wantrain (base/ + sr_stageN/) or diffusers (a Wan backbone as "
                                     "its diffusers pipeline folder: transformer/, vae/, text_encoder/, ...)",
                         choices=("wantrain", "diffusers"))
    export_lora: bool = option(False, "with export: also write the LoRA adapters alone (DIR/lora/, peft/diffusers "
                                      "names; a Wan backbone also in ComfyUI's original Wan names) of a LoRA "
                                      "fine-tune")
    paths: Any = borrowed(RunOptions, "paths")


@dataclass
class EvalData:
    """`test`'s data.*: non-null keys override the checkpoint's data config."""

    test_shards: Shards = borrowed(DataOptions, "test_shards", "null: the val shards")
    val_shards: Shards = borrowed(DataOptions, "val_shards")
    val_batch_size: int | None = borrowed(DataOptions, "val_batch_size")
    num_workers: int | None = borrowed(DataOptions, "num_workers")
    num_frames: int | None = borrowed(DataOptions, "num_frames")
    resolution: int | list[int] | None = borrowed(DataOptions, "resolution")
    frame_stride: int | None = borrowed(DataOptions, "frame_stride")
    fps: float | list[float] | None = borrowed(DataOptions, "fps")
    decode_backend: str | None = borrowed(DataOptions, "decode_backend")


@dataclass
class EvalDiffusion:
    """`test`'s diffusion.*: the generated clips of a diffusion checkpoint's sample metrics."""

    num_videos: int = option(8, "clips generated (from the set's first frames and captions) for the sample "
                                "metrics / FVD", ge=0)
    sampler: str | None = borrowed(_sampling, "sampler", _checkpoints("sampler"))
    steps: int | None = borrowed(_sampling, "num_steps", _checkpoints("num_steps"))
    text_scale: float | None = borrowed(_sampling, "text_scale", _checkpoints("text_scale"))
    image_scale: float | None = borrowed(_sampling, "image_scale", _checkpoints("image_scale"))
    eta: float | None = borrowed(_sampling, "eta", _checkpoints("eta"))
    i3d_weights: str | None = option(None, "path of i3d_pretrained_400.pt (Inception-I3D): adds FVD")
    video_metrics: VideoMetricsOptions = option(doc="networks of the video-quality metrics (CLIP score, consistency, "
                                                    "motion; docs/evaluation.md)", factory=VideoMetricsOptions)
    text_encoder: str | None = option(None, "null: the text encoder path saved in the checkpoint")
    image_encoder: str | None = option(None, "null: the image encoder path saved in the checkpoint")


@dataclass
class EvalUpsampler:
    """`test`'s upsampler.*: an upsampler checkpoint's validation settings (as its model.validation)."""

    lpips: dict[str, Any] | None = borrowed(_validation, "lpips", "e.g. {net: alex, trunk_path: /weights/"
                                                                  "alexnet-owt-7be5be79.pth}: adds lpips and tLP")
    tile: int | None = borrowed(_validation, "tile", "LR tile side for large frames (null: whole frames)")
    crop_size: int | None = borrowed(_validation, "crop_size", "HR centre crop (null: whole frames)")


@dataclass
class EvalOptions:
    """conf/test.yaml: evaluate a diffusion or upsampler checkpoint on a shard set."""

    run_name: str = borrowed(RunOptions, "run_name", default=STAMP)
    run_dir: str = option("${paths.runs_dir}/test/${run_name}", "this command's folder (metrics.json)")
    seed: int = option(0, "seed of the generated clips", ge=0)
    ckpt: str = option("???", "a .ckpt, a run folder (its checkpoints/last.ckpt) or an exported stage folder")
    out: str | None = option(None, "also write the JSON here")
    use_ema: bool = option(True, "evaluate the EMA weights (false: the raw weights, which `validate` uses)")
    device: str = option("auto", "auto: cuda when present, else cpu", pattern=DEVICE)
    limit_batches: int | None = option(None, "evaluate at most this many batches (null: all)", ge=1)
    data: EvalData = option(doc="non-null keys override the checkpoint's data config", factory=EvalData)
    diffusion: EvalDiffusion = option(doc="diffusion checkpoints", factory=EvalDiffusion)
    upsampler: EvalUpsampler = option(doc="upsampler checkpoints", factory=EvalUpsampler)
    paths: Any = borrowed(RunOptions, "paths")


@dataclass
class EncodeOptions:
    """conf/encode.yaml: the frozen encoders' embeddings (and VAE latents) cached into shards."""

    run_name: str = borrowed(RunOptions, "run_name", default=STAMP)
    run_dir: str = option("${paths.runs_dir}/encode/${run_name}", "this command's folder")
    seed: int = borrowed(RunOptions, "seed", default=0)
    out: str = option("???", "output folder of the shards with embeddings")
    shards: Shards = option(None, "shard spec to encode (brace pattern, list, directory, ...); null: "
                                  "data.train_shards and data.val_shards")
    batch_size: int = option(16, "clips per encoder batch", ge=1)
    latents: bool | str = option("auto", "cache the VAE's clip latents: auto (when model.space=latent)",
                                 choices=("auto", True, False))
    device: str = option("auto", "auto: cuda:LOCAL_RANK when a GPU is present, else cpu", pattern=DEVICE)
    init_from: str | None = option(None, "the diffusers folder a Wan experiment takes its encoders and VAE from "
                                         "(model.*.path: ${init_from}); nothing else reads it here")
    init_required: bool = borrowed(RunOptions, "init_required", default=False)
    paths: Any = borrowed(RunOptions, "paths")
    data: Any = borrowed(RunOptions, "data")
    model: Any = borrowed(RunOptions, "model")
    trainer: Any = borrowed(RunOptions, "trainer")


@dataclass
class ShardsSynthetic:
    """`shards`' synthetic.*: how each synthetic clip looks."""

    num_frames: int = borrowed(SyntheticOptions, "num_frames", default=32)
    size: int = borrowed(SyntheticOptions, "size", default=128)
    fps: int = borrowed(SyntheticOptions, "fps", default=8)
    gop: int = borrowed(SyntheticOptions, "gop", default=8)


@dataclass
class ShardsOptions:
    """conf/shards.yaml: write the synthetic set, or pack a folder of videos into shards."""

    run_name: str = borrowed(RunOptions, "run_name", default="${oc.env:WANTRAIN_RUN_STAMP,local}")
    run_dir: str = option("${paths.runs_dir}/shards/${run_name}", "this command's folder")
    seed: int = borrowed(SyntheticOptions, "seed", default=0)
    out: str = option("${paths.data_dir}/synthetic", "where shards go (both actions)")
    in_: str | None = option(None, "from-folder: input folder of videos (mp4/webm/mkv/avi/gif/mov; a same-named "
                                   ".txt is the caption)")
    captions: str | None = option(None, "from-folder: optional csv with a `caption` column and a "
                                        "path/file/filename/video/key column")
    shard_size: int = option(32, "samples per shard (both actions)", ge=1)
    max_shard_bytes: int = option(1073741824, "from-folder: byte cap per shard", ge=1)
    prefix: str = option("shard", "from-folder: shard names PREFIX-NNNNN.tar")
    allow_missing_caption: bool = option(False, "from-folder: keep videos without a caption (else skipped)")
    min_frames: int = option(1, "from-folder: skip videos with fewer frames", ge=1)
    progress: bool = option(True, "from-folder: a progress bar")
    num_clips: int = borrowed(SyntheticOptions, "num_clips", "synthetic", default=256)
    num_val_clips: int = borrowed(SyntheticOptions, "num_val_clips", "synthetic (val-*.tar)", default=32)
    synthetic: ShardsSynthetic = option(doc="synthetic: how each clip looks", factory=ShardsSynthetic)
    paths: Any = borrowed(RunOptions, "paths")

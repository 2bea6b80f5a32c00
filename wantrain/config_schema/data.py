"""The schema of `data.*` (conf/data/): the shard data module's options, typed and bounded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wantrain.schema import option

Shards = str | list[str] | None


@dataclass
class SyntheticOptions:
    """`data.synthetic`: the built-in synthetic set, written under paths.data_dir on first use."""

    out_dir: str = option("", "folder of the generated shards")
    num_clips: int = option(256, "training clips", ge=1)
    num_val_clips: int = option(32, "validation clips", ge=0)
    shard_size: int = option(32, "clips per shard", ge=1)
    num_frames: int = option(32, "frames per clip", ge=1)
    size: int = option(128, "frame size (square)", ge=8)
    fps: float = option(8, "frame rate of the mp4s", gt=0)
    gop: int = option(8, "keyframe interval of the mp4s", ge=1)
    seed: int = option(0, "seed of the generated content")
    shapes: list[list[int]] | None = option(None, "train clips' [H, W, T] in turn (null: size x num_frames)", ge=1)
    num_images: int = option(0, "images in img2dataset layout beside the clips", ge=0)
    val_shapes: list[list[int]] | None = option(None, "validation clips' [H, W, T] (null: shapes)", ge=1)


@dataclass
class DataOptions:
    """`data.*`: WebDataset video shards -> clips (B, C, T, H, W) in [-1, 1] with captions and first frames."""

    train_shards: Shards = option(None, "training shards: brace pattern, glob, list, folder, URL list file, pipe:CMD")
    val_shards: Shards = option(None, "validation shards (null: no validation loop)")
    test_shards: Shards = option(None, "shards of `wantrain test`")
    batch_size: int = option(4, "clips per batch per device", ge=1)
    val_batch_size: int | None = option(None, "validation batch size (null: batch_size)", ge=1)
    num_workers: int = option(4, "DataLoader worker processes (0: load in the main process)", ge=0)
    num_frames: int = option(16, "frames per clip", ge=1)
    resolution: int | list[int] = option(64, "frame size: an int (square) or [H, W]", ge=1)
    frame_stride: int = option(1, "take every Nth source frame", ge=1)
    fps: float | list[float] | None = option(None, "target frame rate (overrides frame_stride); a list: one drawn "
                                                   "per clip", gt=0)
    samples_per_epoch: int = option(10000, "clips per epoch (resampled shards have no natural end)", ge=1)
    embeddings: list[str] = option(doc="cached KEY.<name>.npy embeddings to load, e.g. [t5, dit]", factory=list)
    max_skip_fraction: float = option(0.1, "stop when more than this share of samples is corrupt", ge=0, le=1)
    loop_short_clips: bool = option(False, "loop clips shorter than num_frames x stride instead of skipping them")
    seed: int = option(0, "data order seed")
    resampled: bool = option(True, "draw shards with replacement (an endless stream)")
    shuffle_buffer: int = option(64, "samples in the shuffle buffer", ge=0)
    decode_backend: str = option("pyav", "video decoder", choices=("pyav", "torchcodec", "auto"))
    image_from: str = option("frame", "the conditioning image: the clip's first frame or KEY.jpg",
                             choices=("frame", "jpg"))
    persistent_workers: bool = option(True, "keep loader workers between epochs")
    pin_memory: bool = option(False, "pinned host memory for batches")
    buckets: Any = option(None, "null, a list of [H, W, T] / [H, W, T, batch_size], or {area, aspect_ratios, "
                                "num_frames, multiple}")
    max_upscale: float | None = option(2.0, "with buckets: filter sources needing more upscaling", gt=0)
    image_shards: Shards = option(None, "img2dataset image shards, trained as T = 1 clips")
    image_ratio: float = option(0.0, "share of steps that are image batches", ge=0, le=1)
    filters: dict[str, Any] | None = option(None, "KEY.json field filters, e.g. {aesthetic_score: {min: 4.5}}")
    motion_key: str | None = option(None, "KEY.json field carried as batch['motion'] (micro-conditioning)")
    synthetic: SyntheticOptions | None = option(None, "the built-in synthetic set (conf/data/synthetic.yaml)")

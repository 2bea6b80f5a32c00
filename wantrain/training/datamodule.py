"""VideoShardDataModule: WebDataset-style video shards (or the synthetic set) as a LightningDataModule."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from wantrain.data.buckets import Bucket, describe, make_buckets
from wantrain.data.dataset import ShardLoader, VideoShardDataset
from wantrain.data.filters import EXTRA_REASONS, MetadataFilter
from wantrain.data.images import ImageDecoder
from wantrain.data.samples import CACHED_LATENTS, SampleDecoder
from wantrain.data.shards import expand_shard_spec, is_remote
from wantrain.data.synthetic import write_synthetic_dataset
from wantrain.errors import WantrainError
from wantrain.io.tar import read_samples
from wantrain.ranks import data_rank, dist_rank


def fps_setting(fps) -> float | tuple[float, ...] | None:  # noqa: ANN001 - a number, a list or null from config
    """data.fps as the decoder takes it: None, one float, or a tuple of floats (one drawn per clip)."""
    if fps is None or isinstance(fps, (int, float)):
        return float(fps) if fps else None
    values = tuple(float(v) for v in fps)
    if not values or min(values) <= 0:
        raise WantrainError(f"data.fps must be a positive number or a list of them (e.g. [4, 8, 12]); got {list(fps)}")
    return values


class VideoShardDataModule(pl.LightningDataModule):
    """Train/val batches `{video, image, caption, key, <emb>, <emb>_mask, skipped}` from tar shards."""

    def __init__(
        self,
        train_shards: str | Sequence[str] | None = None,
        val_shards: str | Sequence[str] | None = None,
        batch_size: int = 4,
        num_workers: int = 2,
        num_frames: int = 16,
        resolution: int | Sequence[int] = 64,
        frame_stride: int = 1,
        fps: float | Sequence[float] | None = None,
        samples_per_epoch: int = 256,
        embeddings: Sequence[str] = (),
        max_skip_fraction: float = 0.1,
        loop_short_clips: bool = False,
        seed: int = 0,
        synthetic: dict | None = None,
        val_batch_size: int | None = None,
        test_shards: str | Sequence[str] | None = None,
        resampled: bool = True,
        shuffle_buffer: int = 32,
        decode_backend: str = "pyav",
        image_from: str = "frame",
        persistent_workers: bool = True,
        pin_memory: bool = False,
        buckets: Sequence | dict | None = None,
        max_upscale: float | None = 2.0,
        image_shards: str | Sequence[str] | None = None,
        image_ratio: float = 0.0,
        filters: dict | None = None,
        motion_key: str | None = None,
    ) -> None:
        super().__init__()
        if train_shards is None and val_shards is None and test_shards is None:
            raise ValueError("no shards configured; set data.train_shards (and data.val_shards)")
        self.train_shards, self.val_shards, self.test_shards = train_shards, val_shards, test_shards
        self.batch_size, self.val_batch_size = int(batch_size), int(val_batch_size or batch_size)
        self.num_workers, self.samples_per_epoch = int(num_workers), int(samples_per_epoch)
        self.num_frames = int(num_frames)
        self.resolution = resolution if isinstance(resolution, int) else tuple(int(v) for v in resolution)
        self.max_skip_fraction = float(max_skip_fraction)
        self.seed, self.resampled, self.shuffle_buffer = int(seed), bool(resampled), int(shuffle_buffer)
        self.synthetic = dict(synthetic) if synthetic is not None else None
        self.persistent_workers, self.pin_memory = persistent_workers, pin_memory
        decoder_args = dict(
            num_frames=self.num_frames, resolution=self.resolution, frame_stride=int(frame_stride),
            fps=fps_setting(fps), loop_short_clips=bool(loop_short_clips),
            embeddings=tuple(str(e) for e in embeddings), backend=decode_backend, image_from=image_from,
        )
        self.decoder_args = decoder_args
        SampleDecoder(**decoder_args)  # validate arguments now
        self.filters = MetadataFilter(filters)
        self.motion_key = motion_key
        self.image_shards, self.image_ratio = image_shards, float(image_ratio)
        # (batch, generator) -> batch in the training loader's workers: set by a module that makes its inputs there
        # (the upsampler's LR/HR pairs, UpsamplerModule.setup)
        self.train_transform: Callable[[dict, torch.Generator], dict] | None = None
        if image_shards is not None and not 0.0 < self.image_ratio <= 1.0:
            raise WantrainError(f"data.image_shards is set but data.image_ratio={image_ratio}: give the share of steps "
                                "that are image batches, e.g. data.image_ratio=0.25")
        size = (self.resolution, self.resolution) if isinstance(self.resolution, int) else self.resolution
        self.buckets: list[Bucket] = make_buckets(buckets, self.batch_size, (*size, self.num_frames),
                                                  image_sizes=image_shards is not None)
        self.bucketed = buckets is not None
        if self.bucketed and self.num_frames > 1 and not any(b.frames > 1 for b in self.buckets):
            raise WantrainError(f"data.buckets has no video bucket (T > 1) among {[b.name for b in self.buckets]}: add "
                                "one, e.g. [32,32,8]")
        self.max_upscale = float(max_upscale) if max_upscale and self.bucketed else None
        if self.bucketed and any(e in CACHED_LATENTS for e in decoder_args["embeddings"]):
            raise WantrainError("data.buckets cannot be used with cached latents (encoded at one clip shape): drop "
                                "latent/first_latent from data.embeddings or set data.buckets=null")

    # -- buckets, filters and what the counters are named ----------------------------------------------
    @property
    def bucket_shapes(self) -> list[tuple[int, int, int]]:
        """Every (H, W, T) a training batch can have (checked against the model's downsampling at start)."""
        return [(b.height, b.width, b.frames) for b in self.buckets]

    @property
    def bucket_names(self) -> list[str]:
        """`HxWxT` of every bucket, in a fixed order (the data/bucket_<name> counters)."""
        return [b.name for b in self.buckets]

    @property
    def filter_reasons(self) -> list[str]:
        """Every reason a sample can be filtered for, in a fixed order (the data/filtered_<reason> counters)."""
        return [*self.filters.reasons, *EXTRA_REASONS]

    def mean_batch_size(self) -> float:
        """Samples per training batch on average: video buckets' mean, image buckets' mean for image steps."""
        def mean(frames_one: bool) -> float:
            sizes = [b.batch_size for b in self.buckets if (b.frames == 1) == frames_one] or [self.batch_size]
            return sum(sizes) / len(sizes)
        if not self.bucketed and self.image_shards is None:
            return float(self.batch_size)
        ratio = self.image_ratio if self.image_shards is not None else 0.0
        return (1 - ratio) * mean(self.num_frames == 1) + ratio * mean(True)

    def describe_buckets(self) -> str:
        """The bucket table printed at the start of a fit."""
        images = f"; image batches: {self.image_ratio:.0%} of steps" if self.image_shards is not None else ""
        return f"data buckets ({len(self.buckets)}{images}):\n{describe(self.buckets)}"

    def _decoders(self, train: bool) -> tuple[SampleDecoder, ImageDecoder | None]:
        video = [b for b in self.buckets if b.frames > 1 or self.num_frames == 1] if self.bucketed and train else []
        common = dict(max_upscale=self.max_upscale, filters=self.filters, motion_key=self.motion_key)
        decoder = SampleDecoder(**self.decoder_args, buckets=tuple(video), **common)
        if not train or self.image_shards is None:
            return decoder, None
        images = tuple(b for b in self.buckets if b.frames == 1) if self.bucketed else ()
        return decoder, ImageDecoder(self.resolution, self.decoder_args["embeddings"], images, **common)

    # -- shards -----------------------------------------------------------------------------------
    def _missing(self) -> bool:
        """True when a configured local shard does not exist."""
        for spec in (self.train_shards, self.val_shards):
            if spec is None:
                continue
            try:
                urls = expand_shard_spec(spec, check=False)
            except (OSError, ValueError):
                return True
            if not urls or any(not is_remote(u) and not os.path.isfile(u) for u in urls):
                return True
        return False

    def check_shards(self, names: Sequence[str] = ("train_shards", "val_shards", "image_shards")) -> None:
        """Fail in one line, before anything is written, when configured local shards are missing or their first
        sample lacks the cached embeddings `data.embeddings` names (a configured synthetic set is generated)."""
        if self.synthetic is not None and self._missing():
            return
        wanted = {f"{name}.npy" for name in self.decoder_args["embeddings"]}
        for name in names:
            spec = getattr(self, name)
            if spec is None:
                continue
            urls = self._urls(spec, name)
            local = next((u for u in urls if not is_remote(u)), None)
            if not wanted or local is None:
                continue
            first = next(read_samples(local, lambda ext: ext in wanted), None)
            lacking = sorted(wanted - set(first or {}))
            if lacking:
                raise WantrainError(
                    f"data.embeddings asks for {', '.join(lacking)} but the first sample of {local} has none: cache "
                    "them with `python -m wantrain encode out=DIR` and train on DIR, or set data.embeddings=[]")

    def preflight(self, datamodule: Any = None, trainer: pl.Trainer | None = None) -> None:
        """The preflight protocol (`training/preflight.py`): the data module checks itself alone, its shards (the
        checks with the model and the strategy are the LightningModule's)."""
        self.check_shards()

    def prepare_data(self) -> None:
        """Write the synthetic set when it is configured and its shards are missing (local rank 0 only)."""
        if self.synthetic is not None and self._missing():
            print(f"writing the synthetic data set to {self.synthetic.get('out_dir')} (first run only)", flush=True)
            write_synthetic_dataset(**self.synthetic)

    def _urls(self, spec, name: str) -> list[str]:
        hint = " (or configure data.synthetic to generate them)" if self.synthetic is None else ""
        try:
            return expand_shard_spec(spec, check=True)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"data.{name}: {exc}{hint}") from None

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return data_rank(trainer)  # a sequence-parallel group reads one stream
        return dist_rank()

    def _loader(self, spec, name: str, train: bool) -> ShardLoader:
        rank, world = self._rank()
        batch_size = self.batch_size if train else self.val_batch_size
        decoder, images = self._decoders(train)
        image_urls = self._urls(self.image_shards, "image_shards") if images is not None else []
        dataset = VideoShardDataset(
            self._urls(spec, name), decoder, batch_size, train=train,
            resampled=self.resampled, seed=self.seed, rank=rank, world_size=world, shuffle_buffer=self.shuffle_buffer,
            buckets=self.buckets if train else (), image_shards=image_urls, image_decoder=images,
            image_ratio=self.image_ratio, batch_transform=self.train_transform if train else None,
        )
        batches = None
        if train and self.resampled:  # mean batch size over buckets: samples_per_epoch counts about right
            mean = self.mean_batch_size()
            batches = max(1, math.ceil(self.samples_per_epoch / (mean * world)))
        return ShardLoader(dataset, num_workers=self.num_workers, batches_per_epoch=batches,
                           persistent_workers=self.persistent_workers, pin_memory=self.pin_memory)

    def setup(self, stage: str) -> None:
        """Print the bucket table once (rank 0) when a fit uses buckets or images."""
        if stage == "fit" and (self.bucketed or self.image_shards is not None) and self._rank()[0] == 0:
            print(self.describe_buckets(), flush=True)

    # -- loaders ----------------------------------------------------------------------------------
    def train_dataloader(self) -> ShardLoader:
        """Endless resampled shards cut into equal epochs per rank (samples_per_epoch / world_size each)."""
        if self.train_shards is None:
            raise ValueError("data.train_shards is not set; point it at your training shards")
        if not self.resampled and self._rank()[1] > 1:
            raise ValueError("data.resampled=false gives ranks unequal batch counts (DDP would hang); "
                             "set data.resampled=true")
        return self._loader(self.train_shards, "train_shards", train=True)

    def val_dataloader(self) -> ShardLoader | list:
        """One deterministic pass over the validation shards (split over ranks and workers)."""
        return [] if self.val_shards is None else self._loader(self.val_shards, "val_shards", train=False)

    def test_dataloader(self) -> ShardLoader | list:
        """One deterministic pass over test_shards (the validation shards when unset)."""
        spec = self.test_shards if self.test_shards is not None else self.val_shards
        return [] if spec is None else self._loader(spec, "test_shards", train=False)

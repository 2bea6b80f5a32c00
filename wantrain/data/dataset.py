"""DDP-safe batch stream over video shards, and a loader with a fixed number of batches per epoch."""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wantrain.data.buckets import Bucket
from wantrain.data.collate import collate_samples
from wantrain.data.filters import FilterCounter
from wantrain.data.images import ImageDecoder
from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import assign_shards, shard_order
from wantrain.data.skips import SkipCounter
from wantrain.data.streams import BucketStream
from wantrain.io.tar import read_samples
from wantrain.ranks import dist_rank

POSITION_KEY = "__position__"  # (worker, epoch, position after the batch), added to batches for ShardLoader


def _ignore(reason: str, detail: str) -> None:
    """A shard error another (rank, worker) reading the same shard counts."""


def make_seed(*parts: int) -> int:
    """A 63-bit seed mixing `parts` (seed, rank, worker, epoch) with no collisions between neighbours."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _buffer_shuffle(samples: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """Shuffle a stream through a buffer of `size` raw samples."""
    buf: list[dict] = []
    for s in samples:
        buf.append(s)
        if len(buf) >= size:
            i = rng.randrange(len(buf))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


class VideoShardDataset(IterableDataset):
    """Yields collated one-bucket batches; each (rank, worker) reads its own shards with seed (seed, rank, worker,
    epoch).

    train=True: shards resampled forever (or one shuffled pass with resampled=False), shuffled samples,
    random windows/crops. train=False: one deterministic pass, centred windows/crops. Finite passes keep
    their partial last batches. Each batch's "skipped" / "filtered" hold the skips / filtered samples met since the
    previous batch, "bucket" its `HxWxT`, "fps" / "motion" (B,) the clips' effective fps and motion score.

    Buckets: each sample goes to its bucket (the decoder picks it); a batch is handed out when a bucket holds its
    batch size. Images: with `image_shards`, a share `image_ratio` of the steps are image batches (T = 1 clips);
    whether step k is an image step is drawn from (seed, epoch, worker, k) without the rank, so all DDP ranks take
    image steps together (the UNet's temporal layers get no gradient on any rank at T = 1), while the video
    bucket of a step is each rank's own (gradients do not depend on the clip shape; waiting for one shared bucket
    would need unbounded buffers on an endless stream).

    Resumable: shard order and shuffle buffer draw from the stream's RNG, and each sample's window/crop from
    its own RNG seeded by (seed, rank, worker, epoch, position in the shuffled stream). A worker's position is
    {video: {next, pending}, image: {...}, batches} (see BucketStream), so a pass restarts at any batch by reading
    (never decoding) the raw samples before it, except those waiting in a bucket (`resume`, set by ShardLoader).
    """

    def __init__(
        self,
        shards: list[str],
        decoder: SampleDecoder,
        batch_size: int,
        train: bool = True,
        resampled: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle_buffer: int = 32,
        max_empty_shards: int | None = None,
        buckets: Sequence[Bucket] = (),
        image_shards: Sequence[str] = (),
        image_decoder: ImageDecoder | None = None,
        image_ratio: float = 0.0,
        batch_transform: Callable[[dict, torch.Generator], dict] | None = None,
    ) -> None:
        super().__init__()
        if not shards:
            raise ValueError("VideoShardDataset needs at least one shard")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if image_shards and (image_decoder is None or not 0.0 < image_ratio <= 1.0):
            raise ValueError(f"image shards need an image decoder and 0 < image_ratio <= 1 (got {image_ratio})")
        self.shards, self.decoder, self.batch_size = list(shards), decoder, batch_size
        self.train, self.resampled, self.seed = train, resampled and train, seed
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer = shuffle_buffer
        self.max_empty_shards = max_empty_shards if max_empty_shards is not None else 2 * len(self.shards) + 8
        self.buckets = tuple(buckets)
        self.image_shards, self.image_decoder = list(image_shards), image_decoder
        self.image_ratio = float(image_ratio) if self.image_shards else 0.0
        # training: (batch, generator) -> batch, run in the worker (an upsampler's LR/HR pairs); the generator is
        # seeded from the batch's place in the stream, so it is the same after a resume
        self.batch_transform = batch_transform if train else None
        self.epoch = 0  # set by ShardLoader before each pass (seen by non-persistent workers)
        self._worker_passes = 0  # passes made by a persistent worker's copy
        self.report_position = False  # ShardLoader: tag batches with (worker, epoch, position after the batch)
        # ShardLoader after a restore: {"epoch", "rotation", "positions"} for the pass of that epoch only
        self.resume: dict | None = None

    def where(self) -> tuple[int, int]:
        """(rank, world_size) this dataset reads for."""
        rank, world = (self.rank, self.world_size) if self.rank is not None else dist_rank()
        return rank, world or 1

    def _where(self) -> tuple[int, int, int, int, int]:
        rank, world = self.where()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        if info is not None:  # persistent workers keep their copy: count passes locally
            epoch += self._worker_passes
            self._worker_passes += 1
        return rank, world, worker, num_workers, epoch

    def _raw(self, shards: list[str], wanted, modulo: int, residue: int, rng: random.Random,  # noqa: ANN001
             counter: SkipCounter, where: str) -> Iterator[dict]:
        empty_in_a_row = 0
        order = shard_order(shards, rng, self.resampled) if self.train else iter(shards)
        for url in order:
            got = False
            # shard-level errors are counted once per shard: by the reader of residue 0
            on_error = counter.add if residue == 0 else _ignore
            for sample in read_samples(url, wanted, on_error, modulo, residue):
                got = True
                yield sample
            empty_in_a_row = 0 if got else empty_in_a_row + 1
            if self.resampled and empty_in_a_row >= self.max_empty_shards:
                raise RuntimeError(
                    f"{where} read {empty_in_a_row} shards in a row without one sample "
                    f"({len(shards)} shard(s) here, keeping every {modulo}th sample): the shards are "
                    "unreadable or hold fewer samples than ranks x workers; check them or use fewer workers"
                )

    def _stream(self, kind: int, urls: list[str], where: tuple[int, int, int, int, int], state: dict | None,
                skips: SkipCounter, filtered: FilterCounter) -> BucketStream:
        """The bucketed stream of video (kind 0) or image (kind 1) shards for this (rank, worker, epoch)."""
        rank, world, worker, num_workers, epoch = where
        shards, modulo, residue = assign_shards(urls, rank, world, worker, num_workers)
        extra = () if kind == 0 else (-2, kind)  # video seeds stay those of the single-stream pipeline
        rng = random.Random(make_seed(self.seed, rank, worker, epoch, int(self.train), *extra))
        decoder = self.decoder if kind == 0 else self.image_decoder
        samples = self._raw(shards, decoder.wanted, modulo, residue, rng, skips, f"rank {rank} worker {worker}")
        if self.train and self.shuffle_buffer > 1:
            samples = _buffer_shuffle(samples, self.shuffle_buffer, rng)
        tail = () if kind == 0 else (kind,)

        def decode(raw: dict, position: int) -> dict:
            seed = make_seed(self.seed, rank, worker, epoch, int(self.train), position, *tail)
            return decoder(raw, random.Random(seed) if self.train else None)

        sizes = {b.name: b.batch_size for b in self.buckets}
        return BucketStream(enumerate(samples), decode, sizes, self.batch_size, skips, filtered, state)

    def image_step(self, epoch: int, worker: int, batch: int) -> bool:
        """Whether batch `batch` of `worker` in `epoch` is an image batch (the same draw on every rank)."""
        return bool(self.image_ratio) and random.Random(make_seed(self.seed, epoch, worker, batch, 3)).random() < \
            self.image_ratio

    def __iter__(self) -> Iterator[dict]:
        rank, world, physical, num_workers, epoch = self._where()
        resume = self.resume if self.train and self.resume and self.resume["epoch"] == epoch else None
        # after a restore, physical worker 0 plays the worker whose batch comes next (round-robin order)
        worker = (physical + resume["rotation"]) % num_workers if resume else physical
        saved = resume["positions"][worker] if resume else None
        saved = saved if isinstance(saved, dict) else {}
        where = (rank, world, worker, num_workers, epoch)
        skips, filtered = SkipCounter(), FilterCounter()
        streams = {"video": self._stream(0, self.shards, where, saved.get("video"), skips, filtered)}
        if self.image_shards:
            streams["image"] = self._stream(1, self.image_shards, where, saved.get("image"), skips, filtered)
        batches = int(saved.get("batches", 0))
        while True:
            kind = "image" if self.image_step(epoch, worker, batches) else "video"
            got = streams[kind].next_batch()
            if got is None:
                return
            batches += 1
            name, samples = got
            batch = collate_samples(samples, self.decoder.embeddings, skips.take())
            batch["filtered"] = filtered.take()
            batch["bucket"] = name
            batch["fps"] = torch.tensor([float(s["fps"]) for s in samples])
            batch["motion"] = torch.tensor([float(s["motion"]) for s in samples])
            if self.batch_transform is not None:
                seed = make_seed(self.seed, rank, worker, epoch, batches, 5)
                batch = self.batch_transform(batch, torch.Generator().manual_seed(seed))
            if self.report_position:
                batch[POSITION_KEY] = (worker, epoch, {"batches": batches, **{k: st.state for k, st in
                                                                              streams.items()}})
            yield batch


def gather_states(state: dict, world: int) -> list[dict]:
    """Every rank's `state` (a collective under torch.distributed with `world` > 1, else just this one)."""
    if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        states: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(states, state)
        return states
    return [state]


class ShardLoader:
    """A DataLoader over a VideoShardDataset; with `batches_per_epoch` every epoch (and rank) has that length.

    Stateful (Lightning saves `state_dict()` in checkpoints and calls `load_state_dict()` on resume): the state
    is the epoch and, per worker, the raw position after the last batch handed out (counted here in the main
    process, so batches prefetched by the workers do not count), for every rank. After a restore the
    interrupted epoch continues exactly where it stopped, for epochs of fixed length (`batches_per_epoch`);
    a finite pass restarts its epoch.
    """

    def __init__(
        self,
        dataset: VideoShardDataset,
        num_workers: int = 0,
        batches_per_epoch: int | None = None,
        persistent_workers: bool = True,
        pin_memory: bool = False,
        prefetch_factor: int | None = 2,
        multiprocessing_context: str | None = None,
    ) -> None:
        # not `.dataset`: Lightning would take this loader for a DataLoader over an IterableDataset and warn that
        # its __len__ may be wrong with workers; here it is exact (every rank and epoch yields batches_per_epoch)
        self.shard_dataset, self.batches_per_epoch = dataset, batches_per_epoch
        dataset.report_position = True
        self.num_workers = max(1, num_workers)
        self.loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            persistent_workers=persistent_workers and num_workers > 0,
            pin_memory=pin_memory,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
            # worker base seeds from a generator of our own: iterating never moves the global torch RNG
            generator=torch.Generator().manual_seed(make_seed(dataset.seed, 7)),
        )
        self._epoch = 0  # the epoch of the next pass
        self._progress: dict | None = None  # the pass in flight (or last finished)
        self._restored: dict | None = None  # a loaded state, applied by the next pass

    def _fresh(self, epoch: int) -> dict:
        return {"epoch": epoch, "batches": 0, "next_worker": 0, "positions": [0] * self.num_workers}

    def _begin(self) -> dict:
        """The progress record of the pass that starts now (a restored one continues its epoch)."""
        restored, self._restored = self._restored, None
        if restored is None:
            return self._fresh(self._epoch)
        done = self.batches_per_epoch is not None and restored["batches"] >= self.batches_per_epoch
        if done or restored["batches"] == 0:
            return self._fresh(restored["epoch"] + int(done))
        if self.batches_per_epoch is None:  # finite pass: Lightning prefetches it, positions may run ahead
            return self._fresh(restored["epoch"])
        return {**restored, "positions": list(restored["positions"])}

    def __iter__(self) -> Iterator[dict]:
        progress = self._begin()
        self._progress, self._epoch = progress, progress["epoch"] + 1
        self.shard_dataset.epoch = progress["epoch"]
        self.shard_dataset.resume = None if progress["batches"] == 0 else {
            "epoch": progress["epoch"], "rotation": progress["next_worker"], "positions": progress["positions"]}
        for batch in iter(self.loader):
            worker, _, after = batch.pop(POSITION_KEY)
            progress["positions"][worker] = after
            progress["next_worker"] = (worker + 1) % self.num_workers
            progress["batches"] += 1
            yield batch
            if self.batches_per_epoch is not None and progress["batches"] >= self.batches_per_epoch:
                return
        if self.batches_per_epoch is not None:
            raise RuntimeError(
                f"the batch stream ended after {progress['batches']} of {self.batches_per_epoch} batches; "
                "use resampled shards for training (data.resampled=true)"
            )

    @property
    def _iterator(self):  # noqa: ANN202 - Lightning's teardown stops the workers through `loader._iterator`
        return self.loader._iterator

    @_iterator.setter
    def _iterator(self, value) -> None:  # noqa: ANN001
        self.loader._iterator = value

    def __len__(self) -> int:
        if self.batches_per_epoch is None:
            raise TypeError("a validation pass has no fixed length")
        return self.batches_per_epoch

    def _signature(self) -> dict:
        """What must not change for saved positions to mean the same samples."""
        ds = self.shard_dataset
        shards = hashlib.blake2b("\n".join(ds.shards).encode(), digest_size=8).hexdigest()
        return {"world_size": ds.where()[1], "num_workers": self.num_workers, "batch_size": ds.batch_size,
                "seed": ds.seed, "shards": shards, "shuffle_buffer": ds.shuffle_buffer, "resampled": ds.resampled,
                "buckets": [[b.name, b.batch_size] for b in ds.buckets], "image_ratio": ds.image_ratio,
                "image_shards": hashlib.blake2b("\n".join(ds.image_shards).encode(), digest_size=8).hexdigest()}

    def state_dict(self) -> dict:
        """Every rank's position (a collective under DDP: Lightning calls it on all ranks when saving)."""
        own = self._restored or self._progress or self._fresh(self._epoch)
        rank, world = self.shard_dataset.where()
        own = {**own, "positions": list(own["positions"]), "signature": self._signature(), "rank": rank}
        return {"version": 1, "ranks": gather_states(own, world)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position; a changed setup (ranks, workers, shards...) starts a new epoch."""
        rank, _ = self.shard_dataset.where()
        states = state.get("ranks", [])
        # entries name the data rank they read for (the ranks of a sequence-parallel group read the same stream)
        own = next((s for i, s in enumerate(states) if s.get("rank", i) == rank), None)
        if own is not None and own.get("signature") == self._signature():
            self._restored = {k: own[k] for k in ("epoch", "batches", "next_worker", "positions")}
            return
        epoch = max((int(s.get("epoch", 0)) for s in states), default=-1) + 1
        saved = own.get("signature") if own is not None else None
        warnings.warn(f"the data position of the checkpoint does not fit this setup (saved {saved}, now "
                      f"{self._signature()}): training continues with a new data epoch {epoch}", stacklevel=2)
        self._restored = self._fresh(epoch)

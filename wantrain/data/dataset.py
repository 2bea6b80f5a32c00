"""DDP-safe batch stream over video shards, and a loader with a fixed number of batches per epoch."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wantrain.data.collate import collate_samples
from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import assign_shards, read_shard, shard_order
from wantrain.data.skips import SkipCounter, SkipError


def make_seed(*parts: int) -> int:
    """A 63-bit seed mixing `parts` (seed, rank, worker, epoch) with no collisions between neighbours."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def dist_info() -> tuple[int, int]:
    """(rank, world_size) of torch.distributed, (0, 1) outside it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


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
    """Yields collated batches; each (rank, worker) reads its own shards with seed (seed, rank, worker, epoch).

    train=True: shards resampled forever (or one shuffled pass with resampled=False), shuffled samples,
    random windows/crops. train=False: one deterministic pass, centred windows/crops. Finite passes keep
    their partial last batch. Each batch's "skipped" holds the skips met since the previous batch.
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
    ) -> None:
        super().__init__()
        if not shards:
            raise ValueError("VideoShardDataset needs at least one shard")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.shards, self.decoder, self.batch_size = list(shards), decoder, batch_size
        self.train, self.resampled, self.seed = train, resampled and train, seed
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer = shuffle_buffer
        self.max_empty_shards = max_empty_shards if max_empty_shards is not None else 2 * len(self.shards) + 8
        self.epoch = 0  # set by ShardLoader before each pass (seen by non-persistent workers)
        self._worker_passes = 0  # passes made by a persistent worker's copy

    def _where(self) -> tuple[int, int, int, int, int]:
        rank, world = (self.rank, self.world_size) if self.rank is not None else dist_info()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        if info is not None:  # persistent workers keep their copy: count passes locally
            epoch += self._worker_passes
            self._worker_passes += 1
        return rank, world or 1, worker, num_workers, epoch

    def _raw(self, shards: list[str], modulo: int, residue: int, rng: random.Random, counter: SkipCounter,
             where: str) -> Iterator[dict]:
        empty_in_a_row = 0
        order = shard_order(shards, rng, self.resampled) if self.train else iter(shards)
        for url in order:
            got = False
            for sample in read_shard(url, self.decoder.wanted, counter, modulo, residue, residue == 0):
                got = True
                yield sample
            empty_in_a_row = 0 if got else empty_in_a_row + 1
            if self.resampled and empty_in_a_row >= self.max_empty_shards:
                raise RuntimeError(
                    f"{where} read {empty_in_a_row} shards in a row without one sample "
                    f"({len(shards)} shard(s) here, keeping every {modulo}th sample): the shards are "
                    "unreadable or hold fewer samples than ranks x workers; check them or use fewer workers"
                )

    def __iter__(self) -> Iterator[dict]:
        rank, world, worker, num_workers, epoch = self._where()
        shards, modulo, residue = assign_shards(self.shards, rank, world, worker, num_workers)
        rng = random.Random(make_seed(self.seed, rank, worker, epoch, int(self.train)))
        counter = SkipCounter()
        where = f"rank {rank} worker {worker}"
        samples = self._raw(shards, modulo, residue, rng, counter, where)
        if self.train and self.shuffle_buffer > 1:
            samples = _buffer_shuffle(samples, self.shuffle_buffer, rng)
        batch: list[dict] = []
        full: list[dict] | None = None  # a full batch is handed out once the next good sample (or the end) arrives,
        for raw in samples:  # so skips met in between travel with it and a finite pass loses none
            try:
                sample = self.decoder(raw, rng if self.train else None)
            except SkipError as exc:
                counter.add(exc.reason, f"{raw['__url__']}:{raw['__key__']}: {exc}")
                continue
            if full is not None:
                yield collate_samples(full, self.decoder.embeddings, counter.take())
                full = None
            batch.append(sample)
            if len(batch) == self.batch_size:
                full, batch = batch, []
        if full is not None:
            yield collate_samples(full, self.decoder.embeddings, counter.take())
        elif batch:  # only finite passes end: their last partial batch is kept
            yield collate_samples(batch, self.decoder.embeddings, counter.take())


class ShardLoader:
    """A DataLoader over a VideoShardDataset; with `batches_per_epoch` every epoch (and rank) has that length."""

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
        self.dataset, self.batches_per_epoch = dataset, batches_per_epoch
        self.loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            persistent_workers=persistent_workers and num_workers > 0,
            pin_memory=pin_memory,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
        )
        self._epoch = 0

    def __iter__(self) -> Iterator[dict]:
        self.dataset.epoch = self._epoch
        self._epoch += 1
        it = iter(self.loader)
        if self.batches_per_epoch is None:
            yield from it
            return
        count = 0
        for batch in it:
            yield batch
            count += 1
            if count >= self.batches_per_epoch:
                return
        raise RuntimeError(
            f"the batch stream ended after {count} of {self.batches_per_epoch} batches; "
            "use resampled shards for training (data.resampled=true)"
        )

    def __len__(self) -> int:
        if self.batches_per_epoch is None:
            raise TypeError("a validation pass has no fixed length")
        return self.batches_per_epoch

"""DDP-safe batch stream over video shards, and a loader with a fixed number of batches per epoch."""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wantrain.data.collate import collate_samples
from wantrain.data.samples import SampleDecoder
from wantrain.data.shards import assign_shards, shard_order
from wantrain.data.skips import SkipCounter, SkipError
from wantrain.io.tar import read_samples
from wantrain.ranks import dist_rank

POSITION_KEY = "__position__"  # (worker, epoch, next raw position), added to batches for ShardLoader


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
    """Yields collated batches; each (rank, worker) reads its own shards with seed (seed, rank, worker, epoch).

    train=True: shards resampled forever (or one shuffled pass with resampled=False), shuffled samples,
    random windows/crops. train=False: one deterministic pass, centred windows/crops. Finite passes keep
    their partial last batch. Each batch's "skipped" holds the skips met since the previous batch.

    Resumable: shard order and shuffle buffer draw from the stream's RNG, and each sample's window/crop from
    its own RNG seeded by (seed, rank, worker, epoch, position in the shuffled stream). So a pass can restart
    at any position by reading (never decoding) the raw samples before it (`resume`, set by ShardLoader).
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
        self.report_position = False  # ShardLoader: tag batches with (worker, epoch, next raw position)
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

    def _raw(self, shards: list[str], modulo: int, residue: int, rng: random.Random, counter: SkipCounter,
             where: str) -> Iterator[dict]:
        empty_in_a_row = 0
        order = shard_order(shards, rng, self.resampled) if self.train else iter(shards)
        for url in order:
            got = False
            # shard-level errors are counted once per shard: by the reader of residue 0
            on_error = counter.add if residue == 0 else _ignore
            for sample in read_samples(url, self.decoder.wanted, on_error, modulo, residue):
                got = True
                yield sample
            empty_in_a_row = 0 if got else empty_in_a_row + 1
            if self.resampled and empty_in_a_row >= self.max_empty_shards:
                raise RuntimeError(
                    f"{where} read {empty_in_a_row} shards in a row without one sample "
                    f"({len(shards)} shard(s) here, keeping every {modulo}th sample): the shards are "
                    "unreadable or hold fewer samples than ranks x workers; check them or use fewer workers"
                )

    def _collate(self, samples: list[dict], counter: SkipCounter, tag: tuple[int, int, int]) -> dict:
        batch = collate_samples(samples, self.decoder.embeddings, counter.take())
        if self.report_position:
            batch[POSITION_KEY] = tag
        return batch

    def __iter__(self) -> Iterator[dict]:
        rank, world, physical, num_workers, epoch = self._where()
        resume = self.resume if self.train and self.resume and self.resume["epoch"] == epoch else None
        # after a restore, physical worker 0 plays the worker whose batch comes next (round-robin order)
        worker = (physical + resume["rotation"]) % num_workers if resume else physical
        start = int(resume["positions"][worker]) if resume else 0
        shards, modulo, residue = assign_shards(self.shards, rank, world, worker, num_workers)
        rng = random.Random(make_seed(self.seed, rank, worker, epoch, int(self.train)))
        counter = SkipCounter()
        where = f"rank {rank} worker {worker}"
        samples = self._raw(shards, modulo, residue, rng, counter, where)
        if self.train and self.shuffle_buffer > 1:
            samples = _buffer_shuffle(samples, self.shuffle_buffer, rng)
        batch: list[dict] = []
        full: list[dict] | None = None  # a full batch is handed out once the next good sample (or the end) arrives,
        position = -1  # so skips met in between travel with it and a finite pass loses none
        for position, raw in enumerate(samples):
            if position < start:  # consumed before the interruption: read, never decoded
                continue
            if position == start and start:
                counter.take()  # skips met while fast-forwarding were reported before the interruption
            seed = make_seed(self.seed, rank, worker, epoch, int(self.train), position)
            try:
                sample = self.decoder(raw, random.Random(seed) if self.train else None)
            except SkipError as exc:
                counter.add(exc.reason, f"{raw['__url__']}:{raw['__key__']}: {exc}")
                continue
            if full is not None:  # resuming at `position` re-reads this sample: batch `full` is complete
                yield self._collate(full, counter, (worker, epoch, position))
                full = None
            batch.append(sample)
            if len(batch) == self.batch_size:
                full, batch = batch, []
        if full is not None:
            yield self._collate(full, counter, (worker, epoch, position + 1))
        elif batch:  # only finite passes end: their last partial batch is kept
            yield self._collate(batch, counter, (worker, epoch, position + 1))


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
                "seed": ds.seed, "shards": shards, "shuffle_buffer": ds.shuffle_buffer, "resampled": ds.resampled}

    def state_dict(self) -> dict:
        """Every rank's position (a collective under DDP: Lightning calls it on all ranks when saving)."""
        own = self._restored or self._progress or self._fresh(self._epoch)
        own = {**own, "positions": list(own["positions"]), "signature": self._signature()}
        return {"version": 1, "ranks": gather_states(own, self.shard_dataset.where()[1])}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position; a changed setup (ranks, workers, shards...) starts a new epoch."""
        rank, _ = self.shard_dataset.where()
        states = state.get("ranks", [])
        own = states[rank] if rank < len(states) else None
        if own is not None and own.get("signature") == self._signature():
            self._restored = {k: own[k] for k in ("epoch", "batches", "next_worker", "positions")}
            return
        epoch = max((int(s.get("epoch", 0)) for s in states), default=-1) + 1
        saved = own.get("signature") if own is not None else None
        warnings.warn(f"the data position of the checkpoint does not fit this setup (saved {saved}, now "
                      f"{self._signature()}): training continues with a new data epoch {epoch}", stacklevel=2)
        self._restored = self._fresh(epoch)

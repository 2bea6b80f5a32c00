"""One (rank, worker, epoch)'s samples of one kind (video or image shards) cut into one-bucket batches, resumable."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from wantrain.data.filters import FilterCounter, Filtered
from wantrain.data.skips import SkipCounter, SkipError


def bucket_of(sample: dict) -> str:
    """`HxWxT` of a decoded sample's clip (3, T, H, W)."""
    _, t, h, w = sample["video"].shape
    return f"{h}x{w}x{t}"


class BucketStream:
    """Pulls decoded samples from `raw` (enumerated raw samples) into per-bucket lists; `next_batch` returns the
    first list that reaches its bucket's batch size.

    A completed batch is handed out once the next good sample (or the end) is found, so the skips met in between
    travel with it and the state says: "resume at raw position `next`; the samples at positions `pending[name]`
    were waiting in bucket `name`". Restoring that state re-reads (never decodes) raw samples before `next`, except
    the pending ones, which are decoded again (each sample's crop/window comes from its own position's RNG, so they
    come back bitwise). Finite passes flush their partial buckets at the end (in bucket-name order).
    """

    def __init__(self, raw: Iterator[tuple[int, dict]], decode: Callable[[dict, int], dict],
                 batch_sizes: dict[str, int], default_batch_size: int, skips: SkipCounter,
                 filtered: FilterCounter, state: dict | None = None) -> None:
        self.raw, self.decode = raw, decode
        self.batch_sizes, self.default_batch_size = batch_sizes, default_batch_size
        self.skips, self.filtered = skips, filtered
        state = state or {"next": 0, "pending": {}}
        self.start = int(state["next"])
        self.resume_pending = {int(p) for ps in state["pending"].values() for p in ps}
        self.pending: dict[str, list[tuple[int, dict]]] = {}
        self.lookahead: tuple[int, dict] | None = None
        self.ready: tuple[str, list[dict]] | None = None
        self.end = self.start
        self.state = {"next": self.start, "pending": {k: list(v) for k, v in state["pending"].items()}}

    def _add(self, position: int, sample: dict) -> None:
        name = bucket_of(sample)
        waiting = self.pending.setdefault(name, [])
        waiting.append((position, sample))
        if len(waiting) >= self.batch_sizes.get(name, self.default_batch_size):
            self.ready = (name, [s for _, s in waiting])
            self.pending[name] = []

    def _pull(self) -> tuple[int, dict] | None:
        """The next good (position, sample), or None at the end of the raw stream."""
        for position, raw in self.raw:
            self.end = position + 1
            if position < self.start:  # consumed before the interruption: read, decoded only if it was pending
                if position in self.resume_pending:
                    self._add(position, self.decode(raw, position))
                continue
            if position == self.start and self.start:  # skips met while fast-forwarding were reported before
                self.skips.take(), self.filtered.take()
            try:
                return position, self.decode(raw, position)
            except Filtered as exc:
                self.filtered.add(exc.reason, f"{raw['__url__']}:{raw['__key__']}: {exc}")
            except SkipError as exc:
                self.skips.add(exc.reason, f"{raw['__url__']}:{raw['__key__']}: {exc}")
        return None

    def next_batch(self) -> tuple[str, list[dict]] | None:
        """(bucket name, samples) of the next batch; None when a finite stream is exhausted."""
        while True:
            if self.ready is not None:
                done, self.ready = self.ready, None
                self.lookahead = self._pull()
                self.state = {"next": self.lookahead[0] if self.lookahead else self.end,
                              "pending": {k: [p for p, _ in v] for k, v in self.pending.items() if v}}
                return done
            item, self.lookahead = (self.lookahead, None) if self.lookahead is not None else (self._pull(), None)
            if item is None:
                for name in sorted(k for k, v in self.pending.items() if v):
                    samples = [s for _, s in self.pending.pop(name)]
                    self.state = {"next": self.end, "pending": {k: [p for p, _ in v] for k, v in self.pending.items()
                                                                if v}}
                    return name, samples
                return None
            self._add(*item)

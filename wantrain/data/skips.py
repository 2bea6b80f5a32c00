"""Counting samples the data pipeline skips, per reason (plain Python, no Lightning)."""

from __future__ import annotations

import logging
from collections import Counter

from wantrain.errors import WantrainError

log = logging.getLogger(__name__)

# Fixed order: the skip monitor reduces these as one vector across DDP ranks.
SKIP_REASONS: tuple[str, ...] = (
    "truncated_tar",
    "unreadable_shard",
    "undecodable_video",
    "missing_video",
    "missing_caption",
    "bad_json",
    "too_short",
    "zero_size",
    "bad_embedding",
    "missing_embedding",
    "bad_image",
    "too_large",
    "other",
)

# What to do when nothing usable comes out of the shards, per dominant skip reason.
FIXES: dict[str, str] = {
    "too_short": "every clip is shorter than the window: lower data.num_frames / data.frame_stride (or data.fps), "
                 "or set data.loop_short_clips=true",
    "missing_caption": "the samples have no captions: add KEY.txt (or a json 'caption') to the shards",
    "zero_size": "the samples have empty members: rebuild the shards",
    "too_large": "the videos are larger than SampleDecoder.max_frame_pixels: downscale them when building shards",
    "missing_embedding": "the shards lack cached embeddings: run `python -m wantrain encode` or drop data.embeddings",
}


class NoUsableSamples(WantrainError):
    """The data pipeline skipped a long run of samples without finding one it could use."""


class SkipError(Exception):
    """A sample (or shard) cannot be used; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason if reason in SKIP_REASONS else "other"


class SkipCounter:
    """Counts skips per reason in one worker; `take()` hands over the counts since the last take.

    More than `max_pending` skips between two takes (i.e. without a batch being made) raise NoUsableSamples:
    a stream whose every sample is unusable (clips shorter than the window, no captions, ...) would otherwise
    loop over resampled shards forever without producing a batch.
    """

    def __init__(self, max_warnings: int = 20, max_pending: int | None = 1000) -> None:
        self.total: Counter[str] = Counter()
        self.pending: Counter[str] = Counter()
        self.max_warnings = max_warnings
        self.max_pending = max_pending
        self._warned = 0

    def add(self, reason: str, detail: str = "") -> None:
        """Count one skip and warn (the first `max_warnings` times per worker)."""
        reason = reason if reason in SKIP_REASONS else "other"
        self.total[reason] += 1
        self.pending[reason] += 1
        if self._warned < self.max_warnings:
            self._warned += 1
            more = " (further skips are counted silently)" if self._warned == self.max_warnings else ""
            log.warning("skipping sample: %s: %s%s", reason, detail, more)
        if self.max_pending is not None and sum(self.pending.values()) > self.max_pending:
            raise NoUsableSamples(self._no_batch_message(detail))

    def _no_batch_message(self, detail: str) -> str:
        """One line: how many were skipped and why, the last example, and the fix for the main reason."""
        counts = ", ".join(f"{r}={c}" for r, c in self.pending.most_common())
        worst = self.pending.most_common(1)[0][0]
        fix = FIXES.get(worst, "check the shards (the warnings above name the broken samples)")
        return (f"{sum(self.pending.values())} samples in a row were skipped without one usable ({counts}; last: "
                f"{detail.splitlines()[0][:200] if detail else 'n/a'}): {fix}")

    def take(self) -> dict[str, int]:
        """Return and reset the counts accumulated since the previous call."""
        out = dict(self.pending)
        self.pending.clear()
        return out


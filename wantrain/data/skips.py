"""Counting samples the data pipeline skips, per reason (plain Python, no Lightning)."""

from __future__ import annotations

import logging
from collections import Counter

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
    "other",
)


class SkipError(Exception):
    """A sample (or shard) cannot be used; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason if reason in SKIP_REASONS else "other"


class SkipCounter:
    """Counts skips per reason in one worker; `take()` hands over the counts since the last take."""

    def __init__(self, max_warnings: int = 20) -> None:
        self.total: Counter[str] = Counter()
        self.pending: Counter[str] = Counter()
        self.max_warnings = max_warnings
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

    def take(self) -> dict[str, int]:
        """Return and reset the counts accumulated since the previous call."""
        out = dict(self.pending)
        self.pending.clear()
        return out


def merge_skips(total: dict[str, int], new: dict[str, int]) -> dict[str, int]:
    """Add the counts of `new` into `total` (in place) and return it."""
    for reason, count in new.items():
        total[reason] = total.get(reason, 0) + int(count)
    return total

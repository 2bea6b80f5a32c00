"""Metadata filters on KEY.json fields (min/max per field), counted apart from corruption skips."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

from wantrain.data.skips import NoUsableSamples
from wantrain.errors import WantrainError

# reasons not named after a json field: the source is smaller than every bucket allows (data.max_upscale)
EXTRA_REASONS: tuple[str, ...] = ("too_small",)


class Filtered(Exception):
    """A sample left out on purpose (by data.filters or the bucket upscaling limit); `reason` names why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _lookup(meta: dict, field: str):
    """meta[field], where `field` may be a dotted path (`video_metadata.streams.0.width`); None when absent."""
    value = meta
    for part in field.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


class MetadataFilter:
    """`{field: {min: a, max: b}}` (or `[a, b]`, null = open) on KEY.json fields: width, height, duration, fps,
    num_frames, aesthetic_score, motion_score... any numeric field, by name or dotted path. A sample whose field is
    missing, not numeric or out of range is Filtered with reason = the field name (dots -> underscores)."""

    def __init__(self, filters: Mapping | None = None) -> None:
        self.bounds: dict[str, tuple[float | None, float | None]] = {}
        for field, rule in dict(filters or {}).items():
            if isinstance(rule, Mapping) or hasattr(rule, "keys"):
                rule = dict(rule)
                unknown = set(rule) - {"min", "max"}
                lo, hi = rule.get("min"), rule.get("max")
            else:
                unknown = set()
                lo, hi = (list(rule) + [None, None])[:2] if rule is not None else (None, None)
            if unknown or (lo is None and hi is None):
                raise WantrainError(f"data.filters.{field} must give min and/or max, e.g. "
                                    f"data.filters.{field}={{min:4.5}} or [4.5,null]; got {rule}")
            self.bounds[str(field)] = (None if lo is None else float(lo), None if hi is None else float(hi))

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reasons this filter can give, in a fixed order."""
        return tuple(f.replace(".", "_") for f in self.bounds)

    def __bool__(self) -> bool:
        return bool(self.bounds)

    def check(self, meta: dict) -> None:
        """Raise Filtered when `meta` fails a bound."""
        for field, (lo, hi) in self.bounds.items():
            value = _lookup(meta, field)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise Filtered(field.replace(".", "_"), f"json has no numeric {field!r} ({value!r})") from None
            if math.isnan(number) or (lo is not None and number < lo) or (hi is not None and number > hi):
                raise Filtered(field.replace(".", "_"), f"{field}={number:g} outside [{lo}, {hi}]")


class FilterCounter:
    """Counts filtered samples per reason in one worker; `take()` hands over the counts since the last take.

    More than `max_pending` filtered in a row without a batch raise NoUsableSamples (filters that leave nothing).
    """

    def __init__(self, max_pending: int = 5000) -> None:
        self.pending: Counter[str] = Counter()
        self.max_pending = max_pending

    def add(self, reason: str, detail: str = "") -> None:
        """Count one filtered sample."""
        self.pending[reason] += 1
        if sum(self.pending.values()) > self.max_pending:
            counts = ", ".join(f"{r}={c}" for r, c in self.pending.most_common())
            raise NoUsableSamples(f"{sum(self.pending.values())} samples in a row were filtered out ({counts}; last: "
                                  f"{detail[:200]}): loosen data.filters (or data.max_upscale / data.buckets)")

    def take(self) -> dict[str, int]:
        """Return and reset the counts accumulated since the previous call."""
        out = dict(self.pending)
        self.pending.clear()
        return out

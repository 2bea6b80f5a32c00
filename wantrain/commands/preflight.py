"""Checks before a run starts that turn would-be DDP hangs into one-line errors."""

from __future__ import annotations

import os
from typing import Any

from wantrain.data.shards import expand_shard_spec, is_remote
from wantrain.data.skips import SkipCounter
from wantrain.errors import WantrainError
from wantrain.io.tar import read_samples


def count_samples(urls: list[str]) -> int:
    """Samples (distinct keys) in local tar shards, reading headers only."""
    counter = SkipCounter(max_pending=None)
    return sum(1 for url in urls for _ in read_samples(url, lambda ext: False, counter.add))


def check_validation_split(datamodule: Any, world_size: int) -> None:
    """Every rank needs at least one validation sample: a rank with none skips the epoch-end metric reduction
    (`sync_dist=True`) the others wait in, and DDP hangs. Batch sizes larger than a rank's share are fine (the last
    batch is partial); training shards are resampled, so any size works there."""
    spec = getattr(datamodule, "val_shards", None)
    if world_size <= 1 or spec is None:
        return
    try:
        urls = expand_shard_spec(spec, check=False)
    except (OSError, ValueError):
        return  # reported with its fix when the loader is built
    if not urls or len(urls) >= world_size or any(is_remote(u) or not os.path.isfile(u) for u in urls):
        return  # whole shards per rank (or not countable here)
    found = count_samples(urls)
    if found < world_size:
        raise WantrainError(
            f"data.val_shards hold {found} sample(s) for {world_size} ranks: every rank needs at least one "
            "validation sample (a rank without one would hang DDP at the end of validation); add validation "
            "clips, use fewer devices, or set data.val_shards=null"
        )

"""Shard specs as users write them, and splitting shards over ranks/workers (reading them: wantrain.io.tar)."""

from __future__ import annotations

import glob
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import braceexpand

REMOTE_PREFIXES = ("pipe:", "http://", "https://", "sftp://", "scp://", "ftps://")
LIST_SUFFIXES = (".txt", ".list", ".shards", ".urls")


def is_remote(url: str) -> bool:
    """True for `pipe:` commands and URLs webdataset's gopen opens itself."""
    return url.startswith(REMOTE_PREFIXES)


def expand_shard_spec(spec: str | list[str] | tuple[str, ...], check: bool = True) -> list[str]:
    """Expand a shard spec (brace pattern, glob, list, directory, text file of URLs, `pipe:`, http(s)) to URLs.

    Multiple specs may be joined with `::` (webdataset's convention). With `check`, local shards must
    exist and the result must not be empty (FileNotFoundError naming the path otherwise).
    """
    if spec is None:
        raise ValueError("no shard spec given; set e.g. data.train_shards=/data/shards/{00000..00099}.tar")
    if isinstance(spec, (list, tuple)) or (not isinstance(spec, str) and hasattr(spec, "__iter__")):
        urls = [u for item in spec for u in expand_shard_spec(str(item), check=False)]
    else:
        urls = []
        for part in str(spec).split("::"):
            urls.extend(_expand_one(part.strip()))
    if check:
        if not urls:
            raise FileNotFoundError(f"shard spec {spec!r} matches no shards; check the path or pattern")
        missing = [u for u in urls if not is_remote(u) and not os.path.isfile(_local(u))]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(
                f"shard {missing[0]} does not exist{more}; build shards with `python -m wantrain shards ...` "
                "or fix the data.*_shards path"
            )
    return urls


def _local(url: str) -> str:
    return url[len("file:") :] if url.startswith("file:") else url


def _expand_one(spec: str) -> list[str]:
    if not spec:
        return []
    if is_remote(spec):
        return list(braceexpand.braceexpand(spec))
    if re.match(r"^[a-z][a-z0-9+.-]*://", spec) and not spec.startswith("file://"):
        raise ValueError(f"cannot open {spec!r} directly; use 'pipe:CMD' (e.g. 'pipe:aws s3 cp {spec} -')")
    path = os.path.expanduser(spec[len("file://") :] if spec.startswith("file://") else _local(spec))
    out: list[str] = []
    for item in braceexpand.braceexpand(path):
        if any(c in item for c in "*?["):
            out.extend(sorted(glob.glob(item, recursive=True)))
        elif os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.tar")))
            out.extend(found or sorted(glob.glob(os.path.join(item, "**", "*.tar"), recursive=True)))
        elif item.endswith(LIST_SUFFIXES) and os.path.isfile(item):
            out.extend(_read_list(Path(item)))
        else:
            out.append(item)
    return out


def _read_list(path: Path) -> list[str]:
    """Shard URLs from a text file, one spec per line (blank lines and # comments ignored)."""
    out: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not is_remote(line) and not os.path.isabs(os.path.expanduser(line)) and "://" not in line:
            line = str(path.parent / line)
        out.extend(_expand_one(line))
    return out


def assign_shards(
    shards: list[str], rank: int, world_size: int, worker: int, num_workers: int
) -> tuple[list[str], int, int]:
    """This (rank, worker)'s shards and a sample filter `(modulo, residue)`.

    Shards are split by node, then by worker. Where there are fewer shards than ranks (or workers),
    every one of them reads all shards and keeps samples whose position % modulo == residue, so the
    (rank, worker) streams stay disjoint and none is empty.
    """
    modulo, residue = 1, 0
    if len(shards) >= world_size:
        shards = shards[rank::world_size]
    else:
        modulo, residue = world_size, rank
    if len(shards) >= num_workers:
        shards = shards[worker::num_workers]
    else:
        residue, modulo = residue + modulo * worker, modulo * num_workers
    return shards, modulo, residue


def shard_order(shards: list[str], rng: random.Random, resampled: bool) -> Iterator[str]:
    """Shards to read: an endless random draw (resampled) or one shuffled pass."""
    if resampled:
        while True:
            yield shards[rng.randrange(len(shards))]
    order = list(shards)
    rng.shuffle(order)
    yield from order

"""Shard specs as users write them, reading tar shards into raw samples, and splitting shards over ranks/workers."""

from __future__ import annotations

import glob
import os
import random
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import braceexpand
import webdataset as wds

from wantrain.data.skips import SkipCounter

REMOTE_PREFIXES = ("pipe:", "http://", "https://", "sftp://", "scp://", "ftps://")
LIST_SUFFIXES = (".txt", ".list", ".shards", ".urls")
_KEY_EXT = re.compile(r"^((?:.*/)?[^/.]+)\.([^/]*)$")


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


def split_key(name: str) -> tuple[str, str] | None:
    """Split a tar member name into (key, extension) the way webdataset does (first dot of the basename)."""
    m = _KEY_EXT.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def read_shard(
    url: str,
    wanted: Callable[[str], bool],
    counter: SkipCounter,
    modulo: int = 1,
    residue: int = 0,
    count_shard_errors: bool = True,
) -> Iterator[dict]:
    """Raw samples `{"__key__", "__url__", ext: bytes}` of one shard, only members whose extension is `wanted`.

    A truncated or unreadable shard ends the shard: the partial sample is dropped and the shard is counted
    once (truncated_tar / unreadable_shard). Nothing is unpickled or decoded here.
    """
    try:
        stream = wds.gopen(url, "rb")
    except (OSError, ValueError) as exc:
        if count_shard_errors:
            counter.add("unreadable_shard", f"{url}: {exc}")
        return
    current: dict | None = None
    position = -1
    started = False
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            started = True
            for member in tar:
                if not member.isfile():
                    continue
                parts = split_key(member.name)
                if parts is None or os.path.basename(parts[0]).startswith(("_", ".")):
                    continue
                key, ext = parts
                if current is None or current["__key__"] != key:
                    if current is not None and position % modulo == residue:
                        yield current
                    position += 1
                    current = {"__key__": key, "__url__": url}
                if position % modulo == residue and wanted(ext):
                    f = tar.extractfile(member)
                    current[ext] = f.read() if f is not None else b""
        if current is not None and position % modulo == residue:
            yield current
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if count_shard_errors:
            reason = "truncated_tar" if started else "unreadable_shard"
            counter.add(reason, f"{url}: {exc}")
    finally:
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - a failing pipe: command reports on close; already counted or harmless
            pass


def shard_order(shards: list[str], rng: random.Random, resampled: bool) -> Iterator[str]:
    """Shards to read: an endless random draw (resampled) or one shuffled pass."""
    if resampled:
        while True:
            yield shards[rng.randrange(len(shards))]
    order = list(shards)
    rng.shuffle(order)
    yield from order

"""Tar shards in the webdataset layout: the one reader (raw samples, exact error accounting) and the one writer.

A sample is the run of consecutive members sharing a key: `dir/KEY.EXT` -> key `dir/KEY`, extension `EXT`
(everything after the first dot of the basename, lowercased), as webdataset splits them. Members without an
extension, or whose basename starts with `_` or `.`, belong to no sample and are ignored.

The reader is ours, not webdataset's `tar_file_iterator` + `group_by_keys`: those yield the partial sample of a
truncated shard, cannot tell a shard that never opened from one cut short, and read every member of samples that
another rank/worker keeps. The writer is `webdataset.TarWriter`, made reproducible and atomic.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import webdataset as wds
from webdataset.tariterators import base_plus_ext

VIDEO_EXTENSIONS: tuple[str, ...] = ("mp4", "webm", "mkv", "avi", "gif", "mov")  # containers a sample's video may use
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")  # a sample's optional conditioning image

OnError = Callable[[str, str], None]  # (reason, detail): e.g. SkipCounter.add


def split_key(name: str) -> tuple[str, str] | None:
    """A member name -> (key, lowercased extension), webdataset's rule; None for members of no sample."""
    key, ext = base_plus_ext(name)
    if key is None or os.path.basename(key).startswith(("_", ".")):
        return None
    return key, ext.lower()


def read_samples(
    url: str | os.PathLike,
    wanted: Callable[[str], bool] | None = None,
    on_error: OnError | None = None,
    modulo: int = 1,
    residue: int = 0,
) -> Iterator[dict]:
    """Raw samples `{"__key__", "__url__", ext: bytes}` of one shard (a path, URL or `pipe:` command).

    Only members whose extension is `wanted` (all when None) are read; samples whose position in the shard
    % `modulo` != `residue` are skipped without reading any member. Nothing is decoded or unpickled.
    A shard that cannot be opened or is cut short ends there: the partial sample is dropped and `on_error`
    is called once with "unreadable_shard" or "truncated_tar"; without `on_error` the error is raised.
    """
    url = os.fspath(url)
    try:
        stream = wds.gopen(url, "rb")
    except (OSError, ValueError) as exc:
        if on_error is None:
            raise
        on_error("unreadable_shard", f"{url}: {exc}")
        return
    current: dict | None = None
    position = -1
    started = False
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            started = True
            for member in tar:
                parts = split_key(member.name) if member.isfile() else None
                if parts is None:
                    continue
                key, ext = parts
                if current is None or current["__key__"] != key:
                    if current is not None and position % modulo == residue:
                        yield current
                    position += 1
                    current = {"__key__": key, "__url__": url}
                if position % modulo == residue and (wanted is None or wanted(ext)):
                    f = tar.extractfile(member)
                    current[ext] = f.read() if f is not None else b""
        if current is not None and position % modulo == residue:
            yield current
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if on_error is None:
            raise
        on_error("truncated_tar" if started else "unreadable_shard", f"{url}: {exc}")
    finally:
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - a failing pipe: command reports on close; already counted or harmless
            pass


def is_complete(path: str | os.PathLike) -> bool:
    """True if `path` is a whole tar: every member's data present and the end-of-archive blocks written."""
    try:
        with tarfile.open(path, "r") as tar:
            members = tar.getmembers()
        end = 0
        if members:
            last = members[-1]
            end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        with open(path, "rb") as f:
            f.seek(end)
            return f.read(2 * tarfile.BLOCKSIZE) == bytes(2 * tarfile.BLOCKSIZE)
    except (OSError, tarfile.TarError, EOFError):
        return False


class ShardWriter:
    """Write samples `{"__key__": KEY, EXT: bytes}` into one tar shard at `path`: members `KEY.EXT` (sorted by
    extension, fixed mtime/owner/mode, so the same samples give the same bytes), written to a temporary file
    renamed over `path` on a clean exit (a failure or kill never leaves a partial shard at `path`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}"
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._tar = wds.TarWriter(self._file, encoder=False, user="", group="", mode=0o644, mtime=0)
        self.count = 0

    def write(self, sample: Mapping[str, bytes]) -> int:
        """Add one sample (keys starting with `_` other than `__key__` are not written); returns its bytes."""
        self.count += 1
        return self._tar.write(dict(sample))

    def close(self) -> Path:
        """Finish the archive and move it to `path`."""
        self._tar.close()
        self._file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; `path` is left as it was."""
        try:
            self._tar.close()  # may fail again (e.g. a full disk): the file is dropped either way
        except Exception:  # noqa: BLE001
            pass
        finally:
            self._file.close()
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shard(path: str | os.PathLike, samples: Iterable[Mapping[str, bytes]]) -> Path:
    """Write `samples` as one tar shard at `path` (see ShardWriter); returns the path."""
    with ShardWriter(path) as writer:
        for sample in samples:
            writer.write(sample)
    return writer.path

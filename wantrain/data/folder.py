"""A folder of videos (+ .txt captions or a csv) to tar shards in the video2dataset layout; resumable."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from wantrain.data.video import VideoDecodeError, open_video
from wantrain.io.tar import VIDEO_EXTENSIONS, write_shard

PROGRESS = "_progress.jsonl"


@dataclass
class FolderSummary:
    """What a from-folder run wrote and skipped."""

    shards: list[str] = field(default_factory=list)
    written: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> source paths
    resumed_from: int = 0  # samples already in shards from a previous run

    def describe(self) -> str:
        """A short human summary."""
        lines = [f"{self.written} clip(s) in {len(self.shards)} shard(s) ({self.resumed_from} from a previous run)"]
        for reason, paths in sorted(self.skipped.items()):
            more = " ..." if len(paths) > 5 else ""
            lines.append(f"skipped {len(paths)} ({reason}): " + ", ".join(paths[:5]) + more)
        return "\n".join(lines)


def read_caption_csv(path: str | os.PathLike, path_column: str | None = None,
                     caption_column: str = "caption") -> dict[str, str]:
    """{relative path or stem: caption} from a csv with a caption column and a path/file/key/video column."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        names = ("path", "file", "filename", "video", "key", "videoid")
        key_col = path_column or next((c for c in names if c in cols), None)
        if key_col is None or caption_column not in cols:
            raise ValueError(f"{path}: need a '{caption_column}' column and a path column "
                             f"(path/file/filename/video/key); found {cols}")
        return {row[key_col].strip(): (row[caption_column] or "").strip() for row in reader}


def _probe(data: bytes) -> dict:
    """Container metadata of a video, decoding its first frame (raises VideoDecodeError)."""
    reader = open_video(data)
    try:
        reader.get_frames([0])
        m = reader.meta
        return {"fps": m.fps, "frames": m.num_frames, "size": [m.height, m.width],
                "duration": (m.num_frames / m.fps) if m.num_frames else None}
    finally:
        reader.close()


def _caption_for(video: Path, root: Path, table: dict[str, str] | None) -> str | None:
    txt = video.with_suffix(".txt")
    if txt.is_file():
        text = txt.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            return text
    if table:
        rel = video.relative_to(root).as_posix()
        for k in (rel, video.name, video.stem, str(video)):
            if table.get(k):
                return table[k]
    return None


def _load_progress(out: Path) -> tuple[list[dict], set[str]]:
    done, entries = set(), []
    path = out / PROGRESS
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                e = json.loads(line)
                if e.get("shard") is None or (out / e["shard"]).is_file():
                    entries.append(e)
                    done.update(e["sources"])
                    done.update(p for ps in e.get("skipped", {}).values() for p in ps)
    return entries, done


def write_shards_from_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    captions_csv: str | os.PathLike | None = None,
    shard_size: int = 1000,
    max_shard_bytes: int = 1 << 30,
    prefix: str = "shard",
    allow_missing_caption: bool = False,
    min_frames: int = 1,
    progress: bool = True,
) -> FolderSummary:
    """Pack videos under `in_dir` into `out_dir/{prefix}-NNNNN.tar` (KEY.<ext>, KEY.txt, KEY.json).

    Resumable: each finished shard is recorded in `_progress.jsonl`; a rerun skips recorded sources and
    continues numbering. Unreadable videos, missing captions and too-short clips are skipped and reported.
    """
    root, out = Path(in_dir).expanduser(), Path(out_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist; pass in=DIR with your videos")
    table = read_caption_csv(captions_csv) if captions_csv else None
    videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS)
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {root}")
    out.mkdir(parents=True, exist_ok=True)
    entries, done = _load_progress(out)
    summary = FolderSummary(shards=[e["shard"] for e in entries if e.get("shard")])
    summary.resumed_from = summary.written = sum(len(e["sources"]) for e in entries)
    for e in entries:
        for reason, paths in e.get("skipped", {}).items():
            summary.skipped.setdefault(reason, []).extend(paths)
    next_index = len(summary.shards)
    next_key = summary.written

    pending: list[tuple[str, dict[str, bytes]]] = []
    pending_src: list[str] = []
    pending_skip: dict[str, list[str]] = {}
    size = 0

    def flush() -> None:
        nonlocal pending, pending_src, pending_skip, size, next_index
        name = None
        if pending:
            name = f"{prefix}-{next_index:05d}.tar"
            write_shard(out / name, ({"__key__": key, **members} for key, members in pending))
            summary.shards.append(name)
            next_index += 1
        if pending or pending_skip:
            with open(out / PROGRESS, "a") as f:
                f.write(json.dumps({"shard": name, "sources": pending_src, "skipped": pending_skip}) + "\n")
        pending, pending_src, pending_skip, size = [], [], {}, 0

    todo = [v for v in videos if str(v.relative_to(root)) not in done]
    for video in tqdm(todo, desc="from-folder", unit="clip", disable=not progress):
        rel = str(video.relative_to(root))
        data = video.read_bytes()
        reason, caption, meta = None, None, {}
        if not data:
            reason = "zero_size"
        else:
            caption = _caption_for(video, root, table)
            if caption is None and not allow_missing_caption:
                reason = "missing_caption"
            else:
                try:
                    meta = _probe(data)
                except VideoDecodeError:
                    reason = "undecodable_video"
                else:
                    if meta["frames"] is not None and meta["frames"] < min_frames:
                        reason = "too_short"
        if reason:
            pending_skip.setdefault(reason, []).append(rel)
            summary.skipped.setdefault(reason, []).append(rel)
        else:
            key = f"{next_key:09d}"
            next_key += 1
            meta.update({"caption": caption or "", "source": rel})
            members = {video.suffix.lower().lstrip("."): data, "json": json.dumps(meta, sort_keys=True).encode()}
            if caption:
                members["txt"] = caption.encode()
            pending.append((key, members))
            pending_src.append(rel)
            summary.written += 1
            size += sum(len(v) for v in members.values())
        if len(pending) >= shard_size or size >= max_shard_bytes:
            flush()
    flush()
    return summary


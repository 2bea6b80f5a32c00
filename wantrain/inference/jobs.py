"""Sampling jobs: one image + prompt from the command line, or many from a .csv / .jsonl file, split over ranks."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from wantrain.errors import WantrainError


@dataclass
class Job:
    """One clip to make: row index in the prompts file, image path, prompt, seed and output mp4 path."""

    index: int
    image: Path
    prompt: str
    seed: int
    out: Path


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise WantrainError(f"prompts={path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise WantrainError(f"prompts={path} line {n} is not JSON ({err.msg})") from None
        return rows
    raise WantrainError(f"prompts={path}: use a .csv or .jsonl file (columns image, prompt[, seed][, out])")


def read_jobs(path: str | Path, seed: int, out_dir: str | Path) -> list[Job]:
    """Jobs from a prompts file. Relative image paths are taken from the file's folder, relative `out` paths
    from `out_dir`; a row without a seed gets `seed + row index`, without `out` gets `out_dir/NNNNN.mp4`."""
    path, out_dir = Path(path), Path(out_dir)
    jobs = []
    for i, row in enumerate(_rows(path)):
        if not isinstance(row, dict) or not row.get("image") or row.get("prompt") is None:
            got = sorted(row) if isinstance(row, dict) else repr(row)
            raise WantrainError(f"prompts={path} row {i} needs 'image' and 'prompt' (got {got})")
        image = Path(str(row["image"])).expanduser()
        image = image if image.is_absolute() else path.parent / image
        raw_seed = row.get("seed")
        try:
            row_seed = int(raw_seed) if raw_seed not in (None, "") else seed + i
        except ValueError:
            raise WantrainError(f"prompts={path} row {i}: seed {raw_seed!r} is not an integer") from None
        out = Path(str(row["out"])) if row.get("out") else Path(f"{i:05d}.mp4")
        jobs.append(Job(i, image, str(row["prompt"]), row_seed, out if out.is_absolute() else out_dir / out))
    if not jobs:
        raise WantrainError(f"prompts={path} has no rows")
    return jobs


def my_share(jobs: list[Job], rank: int, world: int) -> list[Job]:
    """Every `world`-th job from `rank`: ranks share the file without talking to each other."""
    return jobs[rank::world]

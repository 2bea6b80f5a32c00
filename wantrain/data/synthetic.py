"""Deterministic synthetic video set: moving / scaling / colour-changing shapes on textures, real mp4 shards."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wantrain.io.mp4 import encode_mp4
from wantrain.io.tar import write_shard

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
    "cyan": (40, 210, 220),
}
# motion name -> (dx, dy) in fractions of the frame over the clip, scale factor at the end
MOTIONS: dict[str, tuple[float, float, float]] = {
    "moves left": (-0.4, 0.0, 1.0),
    "moves right": (0.4, 0.0, 1.0),
    "moves up": (0.0, -0.4, 1.0),
    "moves down": (0.0, 0.4, 1.0),
    "grows": (0.0, 0.0, 1.8),
    "shrinks": (0.0, 0.0, 0.5),
}
BACKGROUNDS: tuple[str, ...] = ("striped", "checkered", "noisy", "gradient")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ClipSpec:
    """Everything that defines one synthetic clip."""

    shape: str
    colour: str
    end_colour: str  # == colour when the shape does not change colour
    motion: str
    background: str

    @property
    def caption(self) -> str:
        """The caption describing the clip's motion."""
        turn = f" and turns {self.end_colour}" if self.end_colour != self.colour else ""
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {self.shape} {self.motion}{turn} on a {self.background} background"


def caption_corpus() -> list[str]:
    """Every caption the generator can emit (sorted, unique)."""
    out = set()
    for shape, colour, end, motion, bg in itertools.product(SHAPES, COLOURS, COLOURS, MOTIONS, BACKGROUNDS):
        out.add(ClipSpec(shape, colour, end, motion, bg).caption)
    return sorted(out)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, 0x5EED])


def clip_spec(seed: int, index: int) -> ClipSpec:
    """The (deterministic) description of clip `index` of the set seeded by `seed`."""
    rng = _rng(seed, index)
    names = list(COLOURS)
    colour = names[rng.integers(len(names))]
    end = colour if rng.random() < 0.5 else names[rng.integers(len(names))]
    return ClipSpec(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=colour,
        end_colour=end,
        motion=list(MOTIONS)[rng.integers(len(MOTIONS))],
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
    )


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float texture in [0, 255]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(30, 120, size=3).astype(np.float32)
    other = rng.uniform(60, 200, size=3).astype(np.float32)
    if kind == "striped":
        period = rng.uniform(6, 16)
        angle = rng.uniform(0, math.pi)
        t = (np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0)[..., None]
    elif kind == "checkered":
        cell = int(rng.integers(6, 16))
        t = (((xx // cell) + (yy // cell)) % 2)[..., None]
    elif kind == "noisy":
        coarse = rng.uniform(0, 1, size=(size // 8 + 1, size // 8 + 1))
        t = np.kron(coarse, np.ones((8, 8)))[:size, :size, None].astype(np.float32)
    else:  # gradient
        angle = rng.uniform(0, 2 * math.pi)
        t = ((xx * math.cos(angle) + yy * math.sin(angle)) / size * 0.5 + 0.5).clip(0, 1)[..., None]
    return base * (1 - t) + other * t


def _coverage(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """(H, W) anti-aliased coverage of a shape of radius `r` centred at (cx, cy)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    if shape == "circle":
        d = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "square":
        d = np.maximum(np.abs(dx), np.abs(dy)) - r * 0.85
    elif shape == "diamond":
        d = (np.abs(dx) + np.abs(dy)) - r * 1.2
    else:  # triangle pointing up: max of three half-plane distances
        s3 = math.sqrt(3) / 2
        d = np.maximum.reduce([dy - r * 0.5, -s3 * dx - 0.5 * dy - r * 0.5, s3 * dx - 0.5 * dy - r * 0.5]) * 1.6
    return np.clip(0.5 - d, 0.0, 1.0)


def render_clip(spec: ClipSpec, seed: int, index: int, num_frames: int = 32, size: int = 128) -> np.ndarray:
    """Render clip frames as (T, H, W, 3) uint8."""
    rng = _rng(seed, index + 1_000_003)
    bg = _background(spec.background, size, rng)
    dx, dy, scale_end = MOTIONS[spec.motion]
    r0 = size * rng.uniform(0.1, 0.16)
    margin = r0 * max(1.0, scale_end) + 2
    x0 = rng.uniform(margin - dx * size * (dx < 0), size - margin - dx * size * (dx > 0))
    y0 = rng.uniform(margin - dy * size * (dy < 0), size - margin - dy * size * (dy > 0))
    c0 = np.array(COLOURS[spec.colour], np.float32)
    c1 = np.array(COLOURS[spec.end_colour], np.float32)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        a = t / max(num_frames - 1, 1)
        cov = _coverage(spec.shape, x0 + dx * size * a, y0 + dy * size * a, r0 * (1 + (scale_end - 1) * a), size)
        col = c0 * (1 - a) + c1 * a
        frames[t] = np.clip(bg * (1 - cov[..., None]) + col * cov[..., None], 0, 255).astype(np.uint8)
    return frames


def _crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre (height, width) crop of (T, S, S, 3) frames."""
    top, left = (frames.shape[1] - height) // 2, (frames.shape[2] - width) // 2
    return np.ascontiguousarray(frames[:, top : top + height, left : left + width])


def _scores(seed: int, index: int) -> dict:
    """Metadata scores as Open-Sora's tools write them (aesthetic_score, motion_score), deterministic per clip."""
    rng = _rng(seed, index + 2_000_029)
    aesthetic, motion = rng.uniform(3.0, 7.0), rng.uniform(0.0, 4.0)
    return {"aesthetic_score": round(float(aesthetic), 3), "motion_score": round(float(motion), 3)}


def shaped_sample(seed: int, index: int, shape: tuple[int, int, int], fps: int, gop: int) -> dict[str, bytes]:
    """A (H, W, T) clip (landscape / portrait / square, any length) with width/height/num_frames/scores in json."""
    h, w, t = shape
    spec = clip_spec(seed, index)
    frames = _crop(render_clip(spec, seed, index, t, max(h, w)), h, w)
    meta = {"caption": spec.caption, "fps": fps, "num_frames": t, "width": w, "height": h, "duration": t / fps,
            **_scores(seed, index)}
    return {"mp4": encode_mp4(frames, fps=fps, gop=gop), "txt": spec.caption.encode(),
            "json": json.dumps(meta, sort_keys=True).encode()}


def image_sample(seed: int, index: int, height: int, width: int) -> dict[str, bytes]:
    """An img2dataset sample {"jpg", "txt", "json"}: the first frame of a synthetic clip, (height, width)."""
    import io

    from PIL import Image

    spec = clip_spec(seed, index)
    frame = _crop(render_clip(spec, seed, index, 2, max(height, width))[:1], height, width)[0]
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=92)
    meta = {"caption": spec.caption, "width": width, "height": height, "key": f"{index:09d}", "status": "success",
            **_scores(seed, index)}
    return {"jpg": buf.getvalue(), "txt": spec.caption.encode(), "json": json.dumps(meta, sort_keys=True).encode()}


def synthetic_sample(seed: int, index: int, num_frames: int, size: int, fps: int, gop: int) -> dict[str, bytes]:
    """One sample's members {"mp4", "txt", "json"} in the video2dataset layout."""
    spec = clip_spec(seed, index)
    mp4 = encode_mp4(render_clip(spec, seed, index, num_frames, size), fps=fps, gop=gop)
    meta = {
        "caption": spec.caption,
        "fps": fps,
        "frames": num_frames,
        "size": [size, size],
        "duration": num_frames / fps,
        "shape": spec.shape,
        "colour": spec.colour,
        "end_colour": spec.end_colour,
        "motion": spec.motion,
        "background": spec.background,
    }
    return {"mp4": mp4, "txt": spec.caption.encode(), "json": json.dumps(meta, sort_keys=True).encode()}


def _write_shard(path: Path, seed: int, indices: range, shapes: list | None = None, **clip_args: int) -> None:
    if shapes:
        fps, gop = clip_args["fps"], clip_args["gop"]
        samples = ({"__key__": f"{i:09d}", **shaped_sample(seed, i, tuple(shapes[i % len(shapes)]), fps, gop)}
                   for i in indices)
    else:
        samples = ({"__key__": f"{i:09d}", **synthetic_sample(seed, i, **clip_args)} for i in indices)
    write_shard(path, samples)


def _write_images(path: Path, seed: int, indices: range, shapes: list) -> None:
    """An img2dataset-layout image shard (images of the (H, W) of `shapes`, in turn)."""
    write_shard(path, ({"__key__": f"{i:09d}", **image_sample(seed, i, *tuple(shapes[i % len(shapes)])[:2])}
                       for i in indices))


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    num_clips: int = 256,
    num_val_clips: int = 32,
    shard_size: int = 32,
    num_frames: int = 32,
    size: int = 128,
    fps: int = 8,
    gop: int = 8,
    seed: int = 0,
    shapes: list | None = None,
    num_images: int = 0,
    val_shapes: list | None = None,
) -> dict:
    """Write train-NNNNN.tar + val-NNNNN.tar under `out_dir` atomically; returns the manifest.

    `shapes` ([[H, W, T], ...]): train clips take these shapes in turn (a mix of aspect ratios and lengths, with
    width/height/num_frames/aesthetic_score/motion_score in their json) instead of `size` x `num_frames`;
    `num_images` > 0 adds images-NNNNN.tar in img2dataset's layout (KEY.jpg, KEY.txt, KEY.json); `val_shapes`: the
    validation clips' shapes (default `shapes`; validation crops one shape, so leave out clips shorter than it).

    Same arguments give byte-identical shards. An existing complete set with the same
    arguments is reused; concurrent callers (DDP ranks) never see half-written shards.
    """
    if num_frames < 2 or size < 16 or shard_size < 1 or num_clips < 1 or num_val_clips < 0:
        raise ValueError("synthetic set needs num_frames>=2, size>=16, shard_size>=1, num_clips>=1, num_val_clips>=0")
    out = Path(out_dir).expanduser().absolute()
    args = dict(num_clips=num_clips, num_val_clips=num_val_clips, shard_size=shard_size, num_frames=num_frames,
                size=size, fps=fps, gop=gop, seed=seed)
    if shapes or num_images:
        args.update(shapes=[[int(v) for v in s] for s in shapes or []], num_images=int(num_images))
    if val_shapes:
        args["val_shapes"] = [[int(v) for v in s] for s in val_shapes]
    existing = _read_manifest(out)
    if existing is not None:
        if existing["args"] != args:
            raise ValueError(f"{out} holds a synthetic set made with {existing['args']}; "
                             "delete it or choose another out dir")
        return existing
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a synthetic set (no {MANIFEST}); "
                              "choose an empty or new out dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        manifest = {"args": args, "train": [], "val": [], "sha256": {}}
        clip_args = dict(num_frames=num_frames, size=size, fps=fps, gop=gop)
        splits = (("train", 0, num_clips), ("val", num_clips, num_clips + num_val_clips))
        for split, start, stop in splits:
            for k, lo in enumerate(range(start, stop, shard_size)):
                name = f"{split}-{k:05d}.tar"
                mixed = args.get("val_shapes", args.get("shapes")) if split == "val" else args.get("shapes")
                _write_shard(tmp / name, seed, range(lo, min(lo + shard_size, stop)), mixed, **clip_args)
                manifest[split].append(name)
                manifest["sha256"][name] = hashlib.sha256((tmp / name).read_bytes()).hexdigest()
        first = num_clips + num_val_clips
        for k, lo in enumerate(range(first, first + int(num_images), shard_size)):
            name = f"images-{k:05d}.tar"
            _write_images(tmp / name, seed, range(lo, min(lo + shard_size, first + num_images)),
                          args.get("shapes") or [[size, size, 1]])
            manifest.setdefault("images", []).append(name)
            manifest["sha256"][name] = hashlib.sha256((tmp / name).read_bytes()).hexdigest()
        if num_images:
            manifest["images_pattern"] = _pattern("images", len(manifest["images"]))
        manifest["train_pattern"] = _pattern("train", len(manifest["train"]))
        manifest["val_pattern"] = _pattern("val", len(manifest["val"])) if manifest["val"] else None
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        try:
            if out.exists():
                out.rmdir()  # empty directory left by a user: replace it
            os.rename(tmp, out)
        except OSError:  # another process finished first
            existing = _read_manifest(out)
            if existing is None or existing["args"] != args:
                raise
            return existing
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _pattern(split: str, n: int) -> str:
    return f"{split}-00000.tar" if n == 1 else f"{split}-{{00000..{n - 1:05d}}}.tar"


def _read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None

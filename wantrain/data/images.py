"""Image samples (img2dataset layout: KEY.jpg|png|webp, KEY.txt, KEY.json) as single-frame clips (T = 1)."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np

from wantrain.data.buckets import Bucket, TooSmall, choose_bucket
from wantrain.data.clips import as_size, crop_box, resize_crop
from wantrain.data.filters import Filtered, MetadataFilter
from wantrain.data.samples import SampleDecoder, motion_value
from wantrain.data.skips import SkipError
from wantrain.io.tar import IMAGE_EXTENSIONS


@dataclass
class ImageDecoder:
    """One image sample -> {video (3, 1, H, W), image (3, H, W) = that frame, caption, key, fps 0, motion, <emb>}.

    The image is its own first-frame condition, so an image step teaches text- and image-conditioned appearance.
    It goes to the T = 1 bucket nearest its aspect ratio (or the single `resolution`), resized to cover, cropped.
    """

    resolution: int | tuple[int, int] = 64
    embeddings: tuple[str, ...] = ()
    buckets: tuple[Bucket, ...] = ()  # T = 1 buckets; () = resolution
    max_upscale: float | None = None
    filters: MetadataFilter | None = None
    motion_key: str | None = None
    frames_decoded: int = field(default=0, compare=False)  # images decoded (the bench's cost counter)

    def __post_init__(self) -> None:
        self.size = as_size(self.resolution)
        self.embeddings = tuple(self.embeddings)
        shapes = [b.size for b in self.buckets] or [self.size]
        self._cover = max(s[0] for s in shapes), max(s[1] for s in shapes)  # decode at least this large

    def wanted(self, ext: str) -> bool:
        """Tar members this decoder reads."""
        if ext in IMAGE_EXTENSIONS or ext in ("txt", "json"):
            return True
        return ext.endswith(".npy") and ext[: -len(".npy")] in self.embeddings

    def __call__(self, raw: dict, rng: random.Random | None = None) -> dict:
        """Decode `raw`; `rng` picks a random crop (train), None centres it. Raises SkipError / Filtered."""
        members = {k: v for k, v in raw.items() if not k.startswith("__")}
        empty = [k for k, v in members.items() if len(v) == 0]
        if empty:
            raise SkipError("zero_size", f"zero-size member(s) {', '.join(sorted(empty))}")
        ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
        if ext is None:
            raise SkipError("bad_image", f"no jpg/png/webp among {sorted(members)}")
        meta = SampleDecoder._json(members.get("json"))
        if self.filters:
            self.filters.check(meta)
        out = {"key": raw["__key__"], "caption": SampleDecoder._caption(members.get("txt"), meta)}
        for name in self.embeddings:
            out[name] = SampleDecoder._embedding(name, members.get(f"{name}.npy"))
        img = self._decode(members[ext], ext)  # (H, W, 3) uint8
        size = self._size(*img.shape[:2])
        video = resize_crop(img[None], size, crop_box(img.shape[0], img.shape[1], size, rng))  # (3, 1, H, W)
        out["video"], out["image"] = video, video[:, 0].clone()
        out["fps"], out["motion"] = 0.0, motion_value(meta, self.motion_key)
        return out

    def _decode(self, data: bytes, ext: str) -> np.ndarray:
        from PIL import Image

        try:
            img = Image.open(io.BytesIO(data))
            h, w = self._cover
            img.draft("RGB", (w, h))  # JPEG: decode at a reduced scale that still covers every bucket
            arr = np.asarray(img.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
            raise SkipError("bad_image", f"cannot decode {ext}: {exc}") from exc
        self.frames_decoded += 1
        return arr

    def _size(self, height: int, width: int) -> tuple[int, int]:
        if not self.buckets:
            return self.size
        try:
            bucket = choose_bucket(self.buckets, height, width, lambda t: t == 1, self.max_upscale)
        except TooSmall as exc:
            raise Filtered("too_small", str(exc)) from None
        if bucket is None:
            raise SkipError("other", "no T = 1 bucket for images")
        return bucket.size

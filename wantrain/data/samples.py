"""Turn one raw shard sample (member bytes) into tensors, or raise SkipError with the reason."""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from wantrain.data.buckets import Bucket, TooSmall, choose_bucket
from wantrain.data.clips import (
    as_size,
    cover_size,
    crop_box,
    frame_step,
    frames_needed,
    resize_crop,
    sample_window,
    scale_box,
    to_unit,
)
from wantrain.data.filters import Filtered, MetadataFilter
from wantrain.data.skips import SkipError
from wantrain.data.video import FramesOutOfRange, VideoDecodeError, open_video
from wantrain.io.tar import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

# cached VAE latents (`python -m wantrain encode` in latent space): the clip's and its first-frame conditioning clip's
CACHED_LATENTS = ("latent", "first_latent")


@dataclass
class SampleDecoder:
    """Decode + sample + resize/crop one sample: {video (3,T,H,W), image (3,H,W), caption, key, <emb>...}."""

    num_frames: int = 16
    resolution: int | tuple[int, int] = 64
    frame_stride: int = 1
    fps: float | tuple[float, ...] | None = None  # target fps; several: one drawn per clip (train), the first (val)
    loop_short_clips: bool = False
    embeddings: tuple[str, ...] = ()
    backend: str = "pyav"
    image_from: str = "frame"  # "frame": first sampled frame; "jpg": KEY.jpg when present
    # frames above this many pixels are skipped (too_large) before decoding: bounds decode time and memory
    # (one 8K RGB frame is ~100 MB; a corrupt header can claim far more); 4096x4096 admits 4K sources
    max_frame_pixels: int = 4096 * 4096
    frames_decoded: int = field(default=0, compare=False)  # running cost counter (frames the decoder produced)
    buckets: tuple[Bucket, ...] = ()  # (H, W, T) shapes a clip may go to (data.buckets); () = resolution x num_frames
    max_upscale: float | None = None  # with buckets: a source needing more upscaling is Filtered (too_small)
    filters: MetadataFilter | None = None  # data.filters on KEY.json fields
    motion_key: str | None = None  # KEY.json field carried as batch['motion'] (0 when absent)
    last_fps: float = field(default=0.0, compare=False)  # effective fps of the last decoded window

    def __post_init__(self) -> None:
        self.size = as_size(self.resolution)
        self.embeddings = tuple(self.embeddings)
        if self.image_from not in ("frame", "jpg"):
            raise ValueError(f"image_from must be 'frame' or 'jpg', got {self.image_from!r}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")

    def wanted(self, ext: str) -> bool:
        """Tar member extensions this decoder reads (everything else is never loaded)."""
        if ext in VIDEO_EXTENSIONS or ext in ("txt", "json"):
            return True
        if self.image_from == "jpg" and ext in IMAGE_EXTENSIONS:
            return True
        return ext.endswith(".npy") and ext[: -len(".npy")] in self.embeddings

    def __call__(self, raw: dict, rng: random.Random | None = None) -> dict:
        """Decode `raw`; `rng` picks a random window/crop (train), None centres them (val)."""
        members = self._members(raw)
        meta = self._json(members.get("json"))
        if self.filters:
            self.filters.check(meta)  # raises Filtered
        caption = self._caption(members.get("txt"), meta)
        out = {"key": raw["__key__"], "caption": caption}
        for name in self.embeddings:
            out[name] = self._embedding(name, members.get(f"{name}.npy"))
        out["video"], out["image"] = self._clip(members, rng)  # (3, T, H, W), (3, H, W)
        out["fps"], out["motion"] = self.last_fps, motion_value(meta, self.motion_key)
        return out

    def conditioning_image(self, raw: dict) -> torch.Tensor:
        """(3, H, W) in [-1, 1]: the conditioning image of `raw` exactly as a validation batch holds it (centred
        window and crop; KEY.jpg with image_from="jpg"). Needs no caption. Raises SkipError."""
        return self.validation_clip(raw)[1]

    def validation_clip(self, raw: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The clip (3, T, H, W) and conditioning image (3, H, W) of `raw` exactly as a validation batch holds them
        (centred window and crop). Needs no caption. Raises SkipError."""
        return self._clip(self._members(raw), None)

    @staticmethod
    def _members(raw: dict) -> dict:
        """The member bytes of `raw` (no `__` entries), checked for empty members and a video."""
        members = {k: v for k, v in raw.items() if not k.startswith("__")}
        empty = [k for k, v in members.items() if len(v) == 0]
        if empty:
            raise SkipError("zero_size", f"zero-size member(s) {', '.join(sorted(empty))}")
        if not any(e in members for e in VIDEO_EXTENSIONS):
            raise SkipError("missing_video", f"no video member among {sorted(members)}")
        return members

    def _clip(self, members: dict, rng: random.Random | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The video window (3, T, H, W) and its conditioning image (3, H, W)."""
        video_ext = next(e for e in VIDEO_EXTENSIONS if e in members)
        video, box, src = self._video(members[video_ext], rng)
        jpg = self.image_from == "jpg"
        image = self._image(members, box, src, tuple(video.shape[-2:])) if jpg else video[:, 0].clone()
        return video, image

    @staticmethod
    def _json(data: bytes | None) -> dict:
        if data is None:
            return {}
        try:
            meta = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SkipError("bad_json", f"bad json: {exc}") from exc
        if not isinstance(meta, dict):
            raise SkipError("bad_json", f"json is a {type(meta).__name__}, not an object")
        return meta

    @staticmethod
    def _caption(data: bytes | None, meta: dict) -> str:
        """The caption (.txt, else json 'caption'). Empty ones are skipped (missing_caption), not trained as
        unconditional: condition dropout (model.fusion.p_drop_*) already gives unconditional steps at a set rate."""
        caption = ""
        if data is not None:
            try:
                caption = data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise SkipError("missing_caption", f"caption is not utf-8: {exc}") from exc
        if not caption and isinstance(meta.get("caption"), str):
            caption = meta["caption"].strip()
        if not caption:
            raise SkipError("missing_caption", "no caption (.txt or json 'caption')")
        return caption

    @staticmethod
    def _embedding(name: str, data: bytes | None) -> torch.Tensor:
        """A cached array: token embeddings (L, D), or clip latents (C, T', h, w) for the names in CACHED_LATENTS."""
        if data is None:
            raise SkipError("missing_embedding", f"no cached {name}.npy")
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise SkipError("bad_embedding", f"{name}.npy: {exc}") from exc
        ndim, want = (4, "(C, T', h, w)") if name in CACHED_LATENTS else (2, "(L, D)")
        if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.floating) or arr.shape[0] == 0:
            raise SkipError("bad_embedding", f"{name}.npy has shape {arr.shape} dtype {arr.dtype}; want {want} float")
        return torch.from_numpy(arr.astype(np.float32))

    def _video(self, data: bytes, rng: random.Random | None) -> tuple[torch.Tensor, tuple, tuple[int, int]]:
        try:
            reader = open_video(data, self.backend)
        except VideoDecodeError as exc:
            raise SkipError("undecodable_video", str(exc)) from exc
        try:
            height, width = reader.meta.height or 0, reader.meta.width or 0
            if height * width > self.max_frame_pixels:
                raise SkipError("too_large", f"{width}x{height} frames exceed max_frame_pixels={self.max_frame_pixels}")
            step = frame_step(reader.meta.fps, self.frame_stride, self.target_fps(rng))
            self.last_fps = float(reader.meta.fps) / step
            frames = None
            n = reader.meta.num_frames or 1_000_000_000  # unknown length: the first try finds the real one
            for _attempt in range(2):
                size, num_frames = self.shape_for(height, width, n, step)
                indices = sample_window(n, num_frames, step, rng, self.loop_short_clips)
                if indices is None:
                    raise SkipError("too_short", f"{n} frames < window of {num_frames} x step {step:g}")
                try:  # decode + scale to just cover the output: (T, H', W', 3) uint8
                    frames = reader.get_frames(indices, cover_size(reader.meta.height, reader.meta.width, size))
                    break
                except FramesOutOfRange as exc:  # metadata overstated the length: retry with the real one
                    self.frames_decoded += reader.frames_decoded
                    reader.close()
                    reader = open_video(data, self.backend)
                    n = exc.num_frames
            if frames is None:
                raise SkipError("too_short", f"clip shorter than its metadata says ({n} frames)")
        except VideoDecodeError as exc:
            raise SkipError("undecodable_video", str(exc)) from exc
        finally:
            self.frames_decoded += reader.frames_decoded
            reader.close()
        src = frames.shape[1], frames.shape[2]
        top, left, h, w = box = crop_box(src[0], src[1], size, rng)
        if (h, w) != size:  # the decoder did not scale (unknown frame size): resize here
            return resize_crop(frames, size, box), box, src
        return to_unit(frames[:, top : top + h, left : left + w]), box, src  # (3, T, H, W)

    def _image(self, members: dict, box: tuple, src: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """The KEY.jpg conditioning frame, cropped like the video -> (3, H, W)."""
        ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
        if ext is None:
            raise SkipError("bad_image", "image_from='jpg' but the sample has no jpg/png/webp")
        from PIL import Image

        try:
            img = np.asarray(Image.open(io.BytesIO(members[ext])).convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
            raise SkipError("bad_image", f"cannot decode {ext}: {exc}") from exc
        jbox = scale_box(box, src, img.shape[:2])
        return resize_crop(img[None], size, jbox)[:, 0]

    def target_fps(self, rng: random.Random | None) -> float | None:
        """The clip's target fps: data.fps, or one of its values drawn with `rng` (the first without)."""
        if not isinstance(self.fps, (tuple, list)):
            return self.fps
        return float(rng.choice(self.fps) if rng is not None else self.fps[0])

    def shape_for(self, height: int, width: int, num_available: int, step: float) -> tuple[tuple[int, int], int]:
        """((H, W), T) of the window for a source of this size and length: its bucket, or the single shape."""
        if not self.buckets:
            return self.size, self.num_frames
        fits = lambda t: self.loop_short_clips or frames_needed(t, step) <= num_available  # noqa: E731
        try:
            bucket = choose_bucket(self.buckets, height or 1, width or 1, fits, self.max_upscale)
        except TooSmall as exc:
            raise Filtered("too_small", str(exc)) from None
        if bucket is None:
            shortest = min(b.frames for b in self.buckets)
            raise SkipError("too_short", f"{num_available} frames < the shortest bucket's {shortest} x step {step:g}")
        return bucket.size, bucket.frames


def motion_value(meta: dict, key: str | None) -> float:
    """meta[key] as a float (0.0 when no key is configured or the field is missing / not numeric)."""
    try:
        return float(meta.get(key, 0.0)) if key else 0.0
    except (TypeError, ValueError):
        return 0.0

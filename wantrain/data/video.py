"""Video decoding behind one small interface: PyAV (default) or torchcodec (when importable)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class VideoDecodeError(Exception):
    """The bytes are not a decodable video."""


class FramesOutOfRange(Exception):
    """Some requested frame indices lie past the real end of the clip (metadata overstated it)."""

    def __init__(self, num_frames: int) -> None:
        super().__init__(f"clip has only {num_frames} frames")
        self.num_frames = num_frames


@dataclass
class VideoMeta:
    """What the container says about the clip (num_frames may be an estimate, None if unknown)."""

    num_frames: int | None
    fps: float
    height: int
    width: int


class VideoReader(Protocol):
    """A decoder opened on one clip's bytes."""

    meta: VideoMeta
    frames_decoded: int  # frames the decoder actually produced (the cost of get_frames)

    def get_frames(self, indices: list[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as (N, H, W, 3) uint8, scaled to `size` (H, W) if given."""
        ...

    def close(self) -> None:
        """Release the decoder."""
        ...


class PyAVReader:
    """PyAV decoder that seeks to the keyframe before the window and stops after its last frame."""

    def __init__(self, data: bytes, threads: int = 1) -> None:
        import av

        self.frames_decoded = 0
        try:
            self._container = av.open(io.BytesIO(data), mode="r")
            if not self._container.streams.video:
                raise VideoDecodeError("no video stream")
            self._stream = self._container.streams.video[0]
            ctx = self._stream.codec_context
            ctx.thread_count = threads
            ctx.thread_type = "SLICE" if threads == 1 else "AUTO"
        except (av.FFmpegError, ValueError, OSError, IndexError) as exc:
            raise VideoDecodeError(f"cannot open video: {exc}") from exc
        self.meta = self._read_meta()
        self._reformatter = av.video.reformatter.VideoReformatter()  # keeps one SwsContext for all frames

    def _read_meta(self) -> VideoMeta:
        s = self._stream
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else 0.0
        if not fps or not math.isfinite(fps):
            fps = 25.0
        n = int(s.frames or 0)
        if n <= 0:
            if s.duration is not None and s.time_base is not None:
                n = int(round(float(s.duration * s.time_base) * fps))
            elif self._container.duration:
                n = int(round(self._container.duration / 1e6 * fps))
        ctx = s.codec_context
        return VideoMeta(num_frames=n if n > 0 else None, fps=fps, height=ctx.height, width=ctx.width)

    def _index_of(self, frame, fallback: int) -> int:
        """Presentation index of a decoded frame from its timestamp."""
        if frame.pts is None or self._stream.time_base is None:
            return fallback
        start = self._stream.start_time or 0
        return int(round(float((frame.pts - start) * self._stream.time_base) * self.meta.fps))

    def _seek(self, index: int) -> bool:
        """Seek to the keyframe at or before frame `index`; False when the container cannot seek."""
        import av

        tb = self._stream.time_base
        if index <= 0 or tb is None:
            return False
        start = self._stream.start_time or 0
        pts = int(start + (index / self.meta.fps) / float(tb))
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError, ValueError):
            return False
        return True

    def _decode_range(self, first: int, last: int, seek: bool, size: tuple[int, int] | None) -> dict[int, np.ndarray]:
        import av

        want: dict[int, np.ndarray] = {}
        sequential = -1
        seeked = seek and self._seek(first)
        try:
            for frame in self._container.decode(self._stream):
                self.frames_decoded += 1
                sequential += 1
                idx = self._index_of(frame, sequential)
                if idx > last:
                    break
                if idx >= first:  # colour conversion and scaling in one swscale pass
                    height, width = size if size is not None else (frame.height, frame.width)
                    rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                                     interpolation="BILINEAR")
                    want[idx] = rgb.to_ndarray()
        except (av.FFmpegError, ValueError, OSError) as exc:
            if not want:
                raise VideoDecodeError(f"cannot decode video: {exc}") from exc
        if seeked and want and min(want) > first:  # landed after the window: decode from the start
            return self._decode_range(first, last, False, size) if self._rewind() else want
        return want

    def _rewind(self) -> bool:
        try:
            self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
        except Exception:  # noqa: BLE001 - any failure means we cannot retry
            return False
        return True

    def get_frames(self, indices: list[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames at `indices` as (N, H, W, 3) uint8 (scaled to `size`), decoding only [min, max] from the keyframe
        before."""
        if not indices:
            raise ValueError("get_frames needs at least one index")
        first, last = min(indices), max(indices)
        got = self._decode_range(first, last, True, size)
        if not got:
            raise VideoDecodeError("no frames decoded")
        missing = [i for i in indices if i not in got]
        if missing:
            end = max(got) + 1
            if max(missing) >= end:
                raise FramesOutOfRange(end)
            # a gap inside the window (variable frame rate): take the nearest earlier decoded frame
            keys = sorted(got)
            for i in missing:
                got[i] = got[max(k for k in keys if k <= i)] if keys[0] <= i else got[keys[0]]
        return np.stack([got[i] for i in indices])

    def close(self) -> None:
        """Release the container."""
        self._container.close()


class TorchCodecReader:
    """torchcodec decoder (optional backend; needs `torchcodec` and a system FFmpeg)."""

    def __init__(self, data: bytes) -> None:
        from torchcodec.decoders import VideoDecoder

        self.frames_decoded = 0
        try:
            self._dec = VideoDecoder(data, seek_mode="exact")
        except Exception as exc:  # noqa: BLE001 - torchcodec raises plain RuntimeError/ValueError
            raise VideoDecodeError(f"cannot open video: {exc}") from exc
        md = self._dec.metadata
        fps = float(md.average_fps or 25.0)
        self.meta = VideoMeta(num_frames=int(md.num_frames or 0) or None, fps=fps, height=md.height, width=md.width)

    def get_frames(self, indices: list[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames at `indices` as (N, H, W, 3) uint8, scaled to `size` = (H, W) if given."""
        import torch.nn.functional as F

        n = self.meta.num_frames
        if n is not None and max(indices) >= n:
            raise FramesOutOfRange(n)
        try:
            batch = self._dec.get_frames_at(indices=list(indices))
        except (IndexError, RuntimeError, ValueError) as exc:
            raise VideoDecodeError(f"cannot decode video: {exc}") from exc
        self.frames_decoded += len(set(indices))
        x = batch.data  # (N, C, H, W) uint8
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True).round_().clamp_(0, 255).byte()
        return x.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C)

    def close(self) -> None:
        """Release the decoder."""
        self._dec = None


def torchcodec_available() -> bool:
    """True when the optional torchcodec backend can be imported."""
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # noqa: BLE001 - missing FFmpeg libraries raise OSError/RuntimeError
        return False
    return True


def open_video(data: bytes, backend: str = "pyav") -> VideoReader:
    """Open encoded video bytes with `backend` ("pyav", "torchcodec" or "auto")."""
    if not data:
        raise VideoDecodeError("empty video")
    if backend == "auto":
        backend = "torchcodec" if torchcodec_available() else "pyav"
    if backend == "pyav":
        return PyAVReader(data)
    if backend == "torchcodec":
        if not torchcodec_available():
            raise ValueError("decode backend 'torchcodec' is not importable; install torchcodec + ffmpeg or use 'pyav'")
        return TorchCodecReader(data)
    raise ValueError(f"unknown decode backend {backend!r}; use 'pyav', 'torchcodec' or 'auto'")

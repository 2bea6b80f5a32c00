"""The one mp4 writer: frames -> H.264 mp4 bytes (PyAV, deterministic), and clips in [-1, 1] -> mp4 files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch


def encode_mp4(frames: np.ndarray, fps: int = 8, gop: int = 8, crf: int = 20) -> bytes:
    """Encode (T, H, W, 3) uint8 frames as H.264 (yuv420p) mp4 bytes, deterministically (one thread)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "crf": str(crf),
            "preset": "veryfast",
            "threads": "1",
            # asm=0: x264's SIMD lookahead reads uninitialised padding, which made outputs differ run to run
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:asm=0",
        }
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """One clip (3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8 frames."""
    return ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def write_mp4(video: torch.Tensor, path: str | Path, fps: int = 8, crf: int = 18) -> Path:
    """Write one clip (3, T, H, W) in [-1, 1] as an H.264 mp4 file (even sizes; yuv420p); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_mp4(to_uint8(video), fps=int(fps), crf=int(crf)))
    return path

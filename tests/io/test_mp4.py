"""The one mp4 writer: a real H.264 round trip through PyAV, deterministic bytes, clips in [-1, 1] to files."""

from __future__ import annotations

import io

import av
import numpy as np
import torch

from wantrain.io.mp4 import encode_mp4, to_uint8, write_mp4


def _frames(t: int = 6, size: int = 32) -> np.ndarray:
    """(T, H, W, 3) uint8: smooth gradients moving over time (compress well, so the round trip is close)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([np.stack([xx * 6 + 10 * i, yy * 6, np.full_like(xx, 128)], -1) for i in range(t)]).clip(0, 255)\
        .astype(np.uint8)


def _decode(data_or_path) -> np.ndarray:
    with av.open(data_or_path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_round_trip_and_same_bytes():
    frames = _frames()
    data = encode_mp4(frames, fps=8, crf=10)
    assert data == encode_mp4(frames, fps=8, crf=10)  # one thread, no SIMD lookahead: deterministic
    decoded = _decode(io.BytesIO(data))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 4


def test_write_mp4_from_a_clip_in_unit_range(tmp_path):
    clip = torch.from_numpy(_frames()).permute(3, 0, 1, 2).float() / 127.5 - 1  # (3, T, H, W) in [-1, 1]
    assert np.array_equal(to_uint8(clip), _frames())
    path = write_mp4(clip, tmp_path / "sub" / "clip.mp4", fps=8)
    decoded = _decode(str(path))
    assert decoded.shape == (6, 32, 32, 3) and np.abs(decoded.astype(int) - _frames().astype(int)).mean() < 6

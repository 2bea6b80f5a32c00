"""Degradation operators on clips (B, C, T, H, W) in [-1, 1]: resize, blur, unsharp mask, noise, JPEG, video codecs,
noise augmentation, crops. Pure functions; randomness only from the given torch.Generator.

The pipelines (`pipeline.degrade`, the Real-ESRGAN second order in `real`) and inference (`noise_augment`) use them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from wantrain.degradations.jpeg import jpeg
from wantrain.degradations.kernels import pad_reflect

JPEG_BACKENDS = ("auto", "pil", "torch")


def _frames(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(B, C, T, H, W) -> ((B*T, C, H, W), T)."""
    if x.dim() != 5:
        raise ValueError(f"degradation expects a video (B, C, T, H, W), got {tuple(x.shape)}")
    return x.transpose(1, 2).flatten(0, 1), x.shape[2]


def _video(f: torch.Tensor, t: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    return f.unflatten(0, (-1, t)).transpose(1, 2)


def downsample(x: torch.Tensor, factor: int = 2, mode: str = "area") -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, T, H/f, W/f) by 'area', 'bicubic' (antialiased) or 'bilinear' (antialiased)."""
    f, t = _frames(x)
    if f.shape[-1] % factor or f.shape[-2] % factor:
        raise ValueError(f"frame size {tuple(f.shape[-2:])} is not divisible by {factor}: crop or resize first")
    if mode == "area":
        y = F.avg_pool2d(f, factor)
    elif mode in ("bicubic", "bilinear"):
        size = (f.shape[-2] // factor, f.shape[-1] // factor)
        y = F.interpolate(f, size=size, mode=mode, align_corners=False, antialias=True)
    else:
        raise ValueError(f"unknown downsample mode {mode!r}: use 'area', 'bicubic' or 'bilinear'")
    return _video(y, t).clamp(-1, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each clip (B, C, T, H, W) with its own isotropic Gaussian sigma (B,) in pixels (0 = unchanged)."""
    b, c, t, h, w = x.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = sigma.float().clamp_min(1e-6)[:, None]
    k = torch.exp(-0.5 * (coords[None] / s) ** 2)
    k = (k / k.sum(1, keepdim=True)).to(x.dtype).to(x.device)  # (B, K)
    # grouped separable conv: one group per (clip, channel)
    v = x.reshape(1, b * c, t, h, w)
    kh = k.repeat_interleave(c, 0)[:, None, None, :, None]  # (B*C, 1, 1, K, 1)
    kw = k.repeat_interleave(c, 0)[:, None, None, None, :]
    v = F.conv3d(pad_reflect(v, (0, 0, radius, radius, 0, 0)), kh, groups=b * c)
    v = F.conv3d(pad_reflect(v, (radius, radius, 0, 0, 0, 0)), kw, groups=b * c)
    return v.reshape(b, c, t, h, w)


def usm_sharpen(x: torch.Tensor, weight: float = 0.5, sigma: float = 8.0, threshold: float = 10.0) -> torch.Tensor:
    """Real-ESRGAN's unsharp mask of clips (B, C, T, H, W) in [-1, 1]: x + weight·(x − blur(x)) where the
    residual exceeds threshold/255, blended by a blurred mask (cv2 radius 51 ≈ Gaussian σ 8), clamped."""
    s = torch.full((x.shape[0],), float(sigma))
    residual = x - gaussian_blur(x, s)
    mask = ((residual.abs() * 127.5) > threshold).to(x)  # threshold in 0..255 units; residual in [-1, 1] units
    soft = gaussian_blur(mask, s)
    sharp = (x + weight * residual).clamp(-1, 1)
    return soft * sharp + (1 - soft) * x


def randn(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal samples shaped like `like`, drawn on the generator's device (the data's without one): a
    device generator keeps the noise of a batch degraded on the GPU off the host."""
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device).to(like)


def map_clips(fn: Callable[[int], torch.Tensor], n: int, threads: int = 1) -> list[torch.Tensor]:
    """[fn(0), ..., fn(n-1)] in order, over `threads` threads (PyAV and Pillow release the GIL while coding)."""
    if threads <= 1 or n <= 1:
        return [fn(i) for i in range(n)]
    with ThreadPoolExecutor(min(threads, n)) as pool:
        return list(pool.map(fn, range(n)))


def add_noise(x: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add Gaussian noise with per-clip std sigma (B,) (in [-1, 1] units), clamp to [-1, 1]."""
    eps = randn(x, generator)
    return (x + sigma.to(x)[:, None, None, None, None] * eps).clamp(-1, 1)


def jpeg_compress(x: torch.Tensor, quality: torch.Tensor, backend: str = "pil") -> torch.Tensor:
    """JPEG-compress every frame of each clip with its quality (B,) in 1..100, 4:2:0: by Pillow (libjpeg) on the
    host, or by `jpeg.jpeg` (PyTorch, the same tables) where x is; `auto`: Pillow for host tensors, else PyTorch."""
    import numpy as np
    from PIL import Image

    if backend not in JPEG_BACKENDS:
        raise ValueError(f"unknown JPEG backend {backend!r}: use one of {list(JPEG_BACKENDS)}")
    b, c, t, h, w = x.shape
    if backend == "torch" or (backend == "auto" and x.device.type != "cpu"):
        f, _ = _frames((x.float().clamp(-1, 1) + 1) / 2)
        return _video(jpeg(f, quality.to(x.device).repeat_interleave(t)) * 2 - 1, t).to(x)
    u8 = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()
    out = torch.empty_like(u8)  # (B, T, H, W, C)
    for i in range(b):
        for j in range(t):
            buf = io.BytesIO()
            Image.fromarray(u8[i, j].numpy()).save(buf, format="JPEG", quality=int(quality[i]))
            out[i, j] = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy())
    return (out.permute(0, 4, 1, 2, 3).float() / 127.5 - 1).to(x)


def codec_compress(x: torch.Tensor, crf: torch.Tensor | None, codec: str = "libx264",
                   bitrate: torch.Tensor | None = None, threads: int = 1) -> torch.Tensor:
    """Encode/decode each clip in memory with PyAV (`codec`: libx264 | mpeg4 | ...), per-clip CRF (B,) or
    bitrate (B,) in bits per frame (RealBasicVSR; mpeg4 has no CRF), clips over `threads` threads; needs even H
    and W. Always on the host: a clip on the GPU makes the round trip.

    As RealBasicVSR's `RandomVideoCompression` (mmedit/datasets/pipelines/random_degradations.py): a 1 fps stream,
    so the bit rate is the budget of each frame. One departure: the rate tolerance is the bit rate itself, not
    FFmpeg's default 4 Mbit, so that mpeg4's rate control keeps to the drawn rate (with the default it ignores
    1e4..1e5 bit/s on small frames); libx264 ignores it (same output)."""
    import av
    import numpy as np

    b, c, t, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"codec compression needs even frame sizes, got {(h, w)}: crop first")
    u8 = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()

    def one(i: int) -> torch.Tensor:
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as box:
            stream = box.add_stream(codec, rate=1)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.thread_count = 1  # one thread: small frames, and no thread-count-dependent output
            if bitrate is not None:
                stream.bit_rate = int(bitrate[i])
                stream.codec_context.bit_rate_tolerance = int(bitrate[i])
            else:
                stream.options = {"crf": str(int(crf[i]))}
            for j in range(t):
                box.mux(stream.encode(av.VideoFrame.from_ndarray(u8[i, j].numpy(), format="rgb24")))
            box.mux(stream.encode(None))
        buf.seek(0)
        with av.open(buf, "r") as box:
            box.streams.video[0].thread_count = 1
            dec = [torch.from_numpy(np.ascontiguousarray(fr.to_ndarray(format="rgb24"))) for fr in box.decode(video=0)]
        return torch.stack((dec + dec[-1:] * t)[:t])  # padded with the last frame should a decoder return fewer

    out = torch.stack(map_clips(one, b, threads))  # (B, T, H, W, C)
    return (out.permute(0, 4, 1, 2, 3).float() / 127.5 - 1).to(x)


def noise_augment(x: torch.Tensor, level: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Imagen-style conditioning augmentation: cos(πs/2)·x + sin(πs/2)·ε for level s (B,) in [0, 1]."""
    a = torch.cos(level.float() * math.pi / 2).to(x)[:, None, None, None, None]
    s = torch.sin(level.float() * math.pi / 2).to(x)[:, None, None, None, None]
    return a * x + s * randn(x, generator)


def random_crop(x: torch.Tensor, size: int, generator: torch.Generator | None = None,
                multiple: int = 8) -> torch.Tensor:
    """Random spatial crop (B, C, T, size, size), one offset per clip (same over T), offsets multiples of `multiple`."""
    b, c, t, h, w = x.shape
    if size > h or size > w:
        raise ValueError(f"crop {size} is larger than the frames {(h, w)}: lower the crop size")
    if size == h and size == w:
        return x
    ys = torch.randint(0, (h - size) // multiple + 1, (b,), generator=generator) * multiple
    xs = torch.randint(0, (w - size) // multiple + 1, (b,), generator=generator) * multiple
    return torch.stack([x[i, :, :, ys[i]:ys[i] + size, xs[i]:xs[i] + size] for i in range(b)])

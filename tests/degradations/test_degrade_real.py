"""Real-ESRGAN second-order degradations: kernels, each operator, shapes, ranges, seeds, identical across frames."""

from __future__ import annotations

import io
import math

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wantrain.degradations.kernels import KERNELS, blur_kernel, filter_frames, random_kernel, shape_beta, sinc_kernel
from wantrain.degradations.ops import codec_compress, downsample, gaussian_blur
from wantrain.degradations.pipeline import DegradeConfig, degrade
from wantrain.degradations.real import RealDegradeConfig, real_degrade

# every stochastic stage off: each test switches on what it measures
OFF = dict(kernel_size=(3, 3), blur_sigma=(0.01, 0.01), blur_sigma2=(0.01, 0.01), sinc_prob=0.0, sinc_prob2=0.0,
           resize_prob=(0, 0, 1), resize_prob2=(0, 0, 1), resize_modes=("area",), noise_range=(0, 0),
           noise_range2=(0, 0), gaussian_noise_prob=1.0, gaussian_noise_prob2=1.0, jpeg_prob=0.0, jpeg_prob2=0.0,
           final_sinc_prob=0.0, codec_prob=0.0)


def _photo(b: int = 2, t: int = 3, size: int = 32, static: bool = False) -> torch.Tensor:
    """Textured clips (b, 3, t, size, size) in [-1, 1]: smooth colour + fine stripes, moving unless static."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = torch.empty(b, 3, t, size, size)
    for i in range(b):
        for k in range(t):
            shift = 0 if static else 0.07 * k
            out[i, 0, k] = 0.6 * torch.sin(20 * (xx + shift) + i)
            out[i, 1, k] = 0.8 * yy - 0.4
            out[i, 2, k] = 0.5 * torch.cos(13 * (yy + xx + shift))
    return out


@pytest.mark.parametrize("kind", KERNELS)
def test_kernels_are_normalized_and_shaped(kind: str) -> None:
    k = blur_kernel(kind, 21, 2.0, 0.7, theta=0.5, beta=1.5)
    assert k.shape == (21, 21) and abs(float(k.sum()) - 1) < 1e-5 and float(k.min()) >= 0
    centre = torch.flip(k, (0, 1))
    assert torch.allclose(k, centre, atol=1e-7)  # point-symmetric
    if kind.endswith("iso") and not kind.endswith("aniso"):
        assert torch.allclose(k, k.T, atol=1e-7)  # isotropic ignores sigma_y and theta
    else:
        assert not torch.allclose(k, k.T, atol=1e-4)


def test_plateau_has_heavier_tails_and_sinc_rings() -> None:
    gauss, plateau = blur_kernel("iso", 21, 1.5, 1.5), blur_kernel("plateau_iso", 21, 1.5, 1.5, beta=1.0)
    assert float(plateau[10, 0]) > 10 * float(gauss[10, 0])
    s = sinc_kernel(21, math.pi / 3)
    assert abs(float(s.sum()) - 1) < 1e-5 and float(s.min()) < 0  # negative lobes: ringing
    gen = torch.Generator().manual_seed(3)
    sizes = {random_kernel(list(KERNELS), [1] * 6, (7, 21), (0.2, 3), (0.5, 4), (1, 2), 0.3, gen).shape[0]
             for _ in range(40)}
    assert sizes <= set(range(7, 22, 2)) and len(sizes) > 3
    flat = torch.full((2, 3, 8, 8), 0.4)  # replicate padding: constant stays constant, even below kernel size
    assert torch.allclose(filter_frames(flat, blur_kernel("aniso", 21, 3, 1, 1.0)), flat, atol=1e-6)


def test_pipeline_shapes_ranges_8bit_and_determinism() -> None:
    hr = _photo(3, 4, 32)
    cfg = RealDegradeConfig()
    lr = real_degrade(hr, 2, cfg, generator=torch.Generator().manual_seed(7))
    assert lr.shape == (3, 3, 4, 16, 16) and lr.min() >= -1 and lr.max() <= 1
    u8 = (lr + 1) * 127.5
    assert torch.allclose(u8, u8.round(), atol=1e-3)  # 8-bit values, as decoded frames are
    again = real_degrade(hr, 2, cfg, generator=torch.Generator().manual_seed(7))
    other = real_degrade(hr, 2, cfg, generator=torch.Generator().manual_seed(8))
    assert torch.equal(lr, again) and not torch.equal(lr, other)
    clean = downsample(hr)
    assert (lr - clean).abs().mean() > 0.02  # the default pipeline really degrades
    plain = real_degrade(hr, 2, RealDegradeConfig(prob=0.0), generator=torch.Generator().manual_seed(7))
    assert torch.equal(plain, clean)  # prob 0: every clip is plainly downsampled
    via_config, _ = degrade(hr, DegradeConfig(real={}), torch.Generator().manual_seed(7))
    assert torch.equal(via_config, lr)  # degrade(real=...) is this pipeline
    with pytest.raises(ValueError, match="unknown config key model.degrade.real.blur_prob"):
        DegradeConfig(real={"blur_prob": 1})
    with pytest.raises(ValueError, match="even LR size"):
        real_degrade(_photo(1, 2, 18), 2, cfg)


def test_same_degradation_on_every_frame_of_a_clip() -> None:
    """A static clip stays static through blur, resize, JPEG and the final sinc: one parameter set per clip."""
    hr = _photo(4, 3, 32, static=True)
    cfg = RealDegradeConfig(codec_prob=0.0, noise_range=(0, 0), noise_range2=(0, 0), gaussian_noise_prob=1.0,
                            gaussian_noise_prob2=1.0)
    lr = real_degrade(hr, 2, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lr[:, :, 1:], lr[:, :, :1].expand_as(lr[:, :, 1:]))
    assert not torch.equal(lr[0], lr[1])  # ... but clips differ from each other
    # noise: fresh per frame, at one level per clip (levels differ between clips)
    noisy = RealDegradeConfig(**{**OFF, "noise_range": (5, 30)})
    n = real_degrade(hr, 2, noisy, generator=torch.Generator().manual_seed(1)) - downsample(hr)
    per_frame = n.std(dim=(1, 3, 4))  # (B, T)
    assert not torch.equal(n[:, :, 0], n[:, :, 1])
    assert float((per_frame.max(1).values / per_frame.min(1).values).max()) < 1.3
    assert float(per_frame.mean(1).max() / per_frame.mean(1).min()) > 1.3


@pytest.mark.parametrize("stage", ["blur", "resize", "gaussian", "poisson", "gray", "jpeg", "sinc", "codec"])
def test_each_operator_changes_the_clip_as_it_should(stage: str) -> None:
    hr = _photo(2, 4, 32)
    clean = downsample(hr)
    over = {
        "blur": {"kernel_size": (21, 21), "blur_sigma": (2.5, 3.0)},
        "resize": {"resize_prob": (0, 1, 0), "resize_range": (0.3, 0.4), "resize_modes": ("bilinear",)},
        "gaussian": {"noise_range": (20, 20)},
        "poisson": {"gaussian_noise_prob": 0.0, "poisson_scale_range": (3, 3)},
        "gray": {"noise_range": (20, 20), "gray_noise_prob": 1.0},
        "jpeg": {"jpeg_prob": 1.0, "jpeg_range": (10, 10)},
        "sinc": {"final_sinc_prob": 1.0, "kernel_size": (21, 21)},
        "codec": {"codec_prob": 1.0, "codec_bitrate": (2e4, 2e4)},
    }[stage]
    lr = real_degrade(hr, 2, RealDegradeConfig(**{**OFF, **over}), generator=torch.Generator().manual_seed(2))
    assert lr.shape == clean.shape and lr.min() >= -1 and lr.max() <= 1
    diff = lr - clean
    assert float(diff.abs().mean()) > 0.01, stage
    detail = lambda v: float(v.diff(dim=-1).abs().mean())  # noqa: E731
    if stage == "blur":
        assert detail(lr) < 0.8 * detail(clean)
    if stage in ("gaussian", "poisson"):
        assert not torch.allclose(diff[:, 0], diff[:, 1], atol=1e-3)  # colour noise
    if stage == "gray":
        same = (diff[:, 0] - diff[:, 1]).abs() <= 2.5 / 127.5  # one noise for all channels (but where clipped)
        assert float(same.float().mean()) > 0.98


def test_codecs_h264_and_mpeg4_through_pyav() -> None:
    hr = _photo(1, 4, 32)
    for codec in ("libx264", "mpeg4"):
        cfg = RealDegradeConfig(**{**OFF, "codec_prob": 1.0, "codecs": (codec,), "codec_bitrate": (1e4, 1e4)})
        lr = real_degrade(hr, 2, cfg, generator=torch.Generator().manual_seed(0))
        assert lr.shape == (1, 3, 4, 16, 16) and float((lr - downsample(hr)).abs().mean()) > 0.01, codec


def test_usm_sharpens_edges_and_leaves_flat_regions() -> None:
    from wantrain.degradations.ops import usm_sharpen

    x = torch.full((1, 3, 2, 32, 32), -0.4)
    x[..., 16:] = 0.4  # a vertical edge
    y = usm_sharpen(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert float(y[..., 15].mean()) < -0.4 and float(y[..., 16].mean()) > 0.4  # overshoot on both sides
    assert torch.equal(usm_sharpen(torch.zeros(1, 3, 1, 16, 16)), torch.zeros(1, 3, 1, 16, 16))
    assert torch.allclose(usm_sharpen(x, weight=0.0), x)


def _filmed_photo(frames: int = 16, size: int = 64) -> torch.Tensor:
    """A real photo (scikit-learn's china.jpg) filmed by a panning camera: (1, 3, frames, size, size) in [-1, 1]."""
    from sklearn.datasets import load_sample_images

    img = torch.from_numpy(load_sample_images().images[0].copy()).permute(2, 0, 1).float() / 127.5 - 1  # (3, 427, 640)
    return torch.stack([img[:, 100 + 2 * t:100 + 2 * t + size, 200 + 3 * t:200 + 3 * t + size]
                        for t in range(frames)], 1)[None]


def _realbasicvsr_compression(u8: np.ndarray, codec: str, bitrate: int) -> np.ndarray:
    """The reference construction: RealBasicVSR's `RandomVideoCompression._apply_random_compression`
    (mmedit/datasets/pipelines/random_degradations.py): a 1 fps mp4 stream at `bitrate`, every frame's type left to
    the encoder. u8 (T, H, W, 3) -> (T, H, W, 3)."""
    buf = io.BytesIO()
    with av.open(buf, "w", "mp4") as container:
        stream = container.add_stream(codec, rate=1)
        stream.height, stream.width, stream.pix_fmt, stream.bit_rate = u8.shape[1], u8.shape[2], "yuv420p", bitrate
        for img in u8:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pict_type = 0  # 'NONE'
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(buf, "r", "mp4") as container:
        return np.stack([f.to_rgb().to_ndarray() for f in container.decode(video=0)])


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / (a.float() - b.float()).pow(2).mean()))


def test_video_compression_follows_realbasicvsr() -> None:
    """The bit rate is per frame (a 1 fps stream, RealBasicVSR) and the drawn rate reaches mpeg4 too: at 1e4 bit/s on
    a filmed 16x64x64 photo the old 8 fps stream gave 22.7 dB against the reference's 33.0 dB (libx264)."""
    clip = _filmed_photo()
    u8 = ((clip[0].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    for codec, bitrate in (("libx264", 10_000), ("libx264", 100_000), ("mpeg4", 100_000)):
        ours = codec_compress(clip, None, codec, torch.tensor([bitrate]))
        ref = torch.from_numpy(_realbasicvsr_compression(u8, codec, bitrate)).permute(3, 0, 1, 2)[None] / 127.5 - 1
        assert abs(_psnr(ours, clip) - _psnr(ref, clip)) < 0.5, (codec, bitrate)
    low, high = (codec_compress(clip, None, "mpeg4", torch.tensor([r])) for r in (10_000, 100_000))
    assert not torch.equal(low, high) and _psnr(low, clip) < _psnr(high, clip) - 0.3


def test_kernel_shape_draws_follow_basicsr() -> None:
    """BasicSR draws β of generalized / plateau kernels from U(lo, 1) or U(1, hi) with probability 0.5 each
    (basicsr/data/degradations.py); a plain U(0.5, 4) gave P(β < 1) = 0.14."""
    g = torch.Generator().manual_seed(0)
    betas = torch.tensor([shape_beta(0.5, 4.0, g) for _ in range(3000)])
    assert 0.47 <= float((betas < 1).float().mean()) <= 0.53
    assert betas.min() >= 0.5 and betas.max() <= 4.0 and betas[betas > 1].mean() > 2.0
    plateau = torch.tensor([shape_beta(1.0, 2.0, g) for _ in range(400)])
    assert 0.4 < float((plateau == 1.0).float().mean()) < 0.6  # U(1, 1) half the time, as BasicSR


def test_noise_is_clipped_before_the_next_operator() -> None:
    """Real-ESRGAN adds noise with clip=True: on a white clip the noise cannot push values above 1, so the blur that
    follows (second order) averages a clip darker than white; unclipped noise averaged back to white."""
    white = torch.ones(1, 3, 2, 32, 32)
    cfg = RealDegradeConfig(**{**OFF, "noise_range": (30, 30), "gray_noise_prob": 0.0, "second_blur_prob": 1.0,
                               "kernel_size": (21, 21), "blur_sigma2": (3.0, 3.0)})
    lr = real_degrade(white, 2, cfg, generator=torch.Generator().manual_seed(0))
    mean = float((lr.mean() + 1) / 2)  # in [0, 1]
    assert 0.93 < mean < 0.97  # 1 - E[max(0, -n)] = 1 - 0.4 σ for σ = 30/255


def test_kernels_pad_by_reflection() -> None:
    """BasicSR's filter2D pads by reflection; frames shorter than the kernel's half fall back to replication."""
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 24, 24, generator=g)
    kernel = blur_kernel("aniso", 9, 2.0, 0.7, 0.5)
    ref = F.conv2d(F.pad(frames, (4, 4, 4, 4), mode="reflect"), kernel[None, None].expand(3, 1, 9, 9), groups=3)
    torch.testing.assert_close(filter_frames(frames, kernel), ref)
    small = torch.rand(1, 3, 4, 4, generator=g)
    assert filter_frames(small, kernel).shape == small.shape  # replicated: a 4-pixel frame cannot reflect 4
    clip = torch.rand(1, 3, 2, 24, 24, generator=g)
    sigma = torch.tensor([1.0])
    k1 = torch.exp(-0.5 * torch.arange(-3, 4).float() ** 2)
    k1 = k1 / k1.sum()
    ref = F.conv2d(F.pad(clip[0].transpose(0, 1), (3, 3, 3, 3), mode="reflect"),
                   (k1[:, None] * k1[None, :])[None, None].expand(3, 1, 7, 7), groups=3)
    torch.testing.assert_close(gaussian_blur(clip, sigma)[0].transpose(0, 1), ref, atol=1e-5, rtol=1e-5)

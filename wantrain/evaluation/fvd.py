"""Fréchet Video Distance: I3D (Kinetics-400 Inception-I3D, cd-fvd's `InceptionI3d`) logits of real and generated
clips, then the Fréchet distance of the two Gaussians fitted to them (Unterthiner et al. 2018).

Weights are never downloaded: pass the path of `i3d_pretrained_400.pt` (the PyTorch port of the TF-Hub I3D that
cd-fvd, TATS and StyleGAN-V's FVD use). Clips are resized to 224x224 (bilinear) in [-1, 1]; clips shorter than
16 frames are stretched to 16 by repeating frames (I3D pools time by 8 and needs >= 9 frames).
FVD needs a few hundred clips per side to be stable; with a handful it is only a smoke signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wantrain.errors import WantrainError
from wantrain.io.weights import load_state_dict

I3D_SIZE = 224
I3D_MIN_FRAMES = 16
I3D_CLASSES = 400


def build_i3d() -> nn.Module:
    """The Inception-I3D network (400 Kinetics classes), randomly initialised."""
    try:
        from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d
    except ImportError:
        raise WantrainError("FVD needs the cd-fvd package (its I3D definition): pip install cd-fvd") from None
    return InceptionI3d(I3D_CLASSES, in_channels=3)


def load_i3d(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """I3D with weights from `path` (a torch state dict .pt/.pth or .safetensors), eval mode, on `device`."""
    path = Path(path)
    state = load_state_dict(path, "I3D weights file (i3d_weights)",
                            fix="download i3d_pretrained_400.pt where there is internet and pass its path")
    net = build_i3d()
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise WantrainError(f"i3d_weights={path} do not fit the Inception-I3D network "
                            f"({str(err).splitlines()[0][:160]})") from None
    return net.eval().requires_grad_(False).to(device)


def preprocess(videos: torch.Tensor) -> torch.Tensor:
    """Clips (B, 3, T, H, W) in [-1, 1] -> (B, 3, max(T, 16), 224, 224) in [-1, 1], the I3D input."""
    b, c, t, h, w = videos.shape
    x = videos.float().clamp(-1, 1)
    if t < I3D_MIN_FRAMES:
        index = torch.div(torch.arange(I3D_MIN_FRAMES) * t, I3D_MIN_FRAMES, rounding_mode="floor").to(x.device)
        x, t = x.index_select(2, index), I3D_MIN_FRAMES
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)
    return frames.view(b, t, c, I3D_SIZE, I3D_SIZE).transpose(1, 2)


@torch.no_grad()
def i3d_features(i3d: nn.Module, videos: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """I3D logits (B, 400) float64 on the CPU of clips (B, 3, T, H, W) in [-1, 1]."""
    device = next(i3d.parameters()).device
    out = [i3d(preprocess(videos[i:i + batch_size].to(device))).double().cpu()
           for i in range(0, len(videos), batch_size)]
    return torch.cat(out)


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^½) of feature sets (N, D), (M, D); N, M >= 2."""
    from scipy import linalg

    a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise WantrainError(f"FVD needs at least 2 clips per side (got {a.shape[0]} and {b.shape[0]})")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # singular product: regularise (as pytorch-fid does)
        eps = np.eye(a.shape[1]) * 1e-6
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * np.real(covmean)))
    return max(value, 0.0)


def fvd(i3d: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 8) -> float:
    """FVD between clips `real` and `fake` (N, 3, T, H, W) in [-1, 1]."""
    return frechet_distance(i3d_features(i3d, real, batch_size), i3d_features(i3d, fake, batch_size))

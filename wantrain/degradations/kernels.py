"""Blur kernels of the Real-ESRGAN degradation model and per-clip 2-D filtering of videos.

Kernels (Wang et al. 2021, Real-ESRGAN §3.1): isotropic / anisotropic Gaussian exp(-q/2), generalized
Gaussian exp(-q^β/2), plateau 1 / (1 + q^β) (q = xᵀΣ⁻¹x), and the 2-D sinc (circular low-pass: ringing and
overshoot). Randomness only from the given torch.Generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def _u(lo: float, hi: float, generator: torch.Generator | None) -> float:
    """One uniform sample in [lo, hi]."""
    return float(lo + (hi - lo) * torch.rand((), generator=generator))


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.meshgrid(r, r, indexing="ij")  # (yy, xx)


def _quad(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """xᵀΣ⁻¹x on a size×size grid for Σ = R diag(σx², σy²) Rᵀ, R the rotation by theta."""
    yy, xx = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy  # coordinates in the kernel's principal axes
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def blur_kernel(kind: str, size: int, sigma_x: float, sigma_y: float, theta: float = 0.0,
                beta: float = 1.0) -> torch.Tensor:
    """Normalized (size, size) float32 kernel of `kind` (one of KERNELS); *_iso kinds use sigma_x for both axes."""
    if kind not in KERNELS:
        raise ValueError(f"unknown blur kernel {kind!r}: use one of {list(KERNELS)}")
    if kind.endswith("_iso") or kind == "iso":
        sigma_y, theta = sigma_x, 0.0
    q = _quad(size, max(sigma_x, 1e-3), max(sigma_y, 1e-3), theta)
    if kind in ("iso", "aniso"):
        k = torch.exp(-0.5 * q)
    elif kind.startswith("generalized"):
        k = torch.exp(-0.5 * q.pow(beta))
    else:  # plateau
        k = 1.0 / (1.0 + q.pow(beta))
    return (k / k.sum()).float()


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """Circular low-pass (2-D sinc / jinc) kernel (size, size) with angular cutoff ω_c in (0, π], normalized."""
    yy, xx = _grid(size)
    r = torch.sqrt(xx ** 2 + yy ** 2)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, torch.full_like(r, cutoff ** 2 / (4 * math.pi)), k)
    return (k / k.sum()).float()


def shape_beta(lo: float, hi: float, generator: torch.Generator | None) -> float:
    """The shape β of a generalized / plateau kernel as BasicSR draws it (`random_bivariate_generalized_Gaussian`,
    `random_bivariate_plateau` in basicsr/data/degradations.py): U(lo, 1) or U(1, hi) with probability 0.5 each, so
    sharper-than-Gaussian (β < 1) and flatter (β > 1) shapes are equally likely whatever the range's ends."""
    if float(torch.rand((), generator=generator)) < 0.5:
        return _u(lo, 1.0, generator)
    return _u(1.0, hi, generator)


def random_kernel(kernel_list: list[str], kernel_prob: list[float], sizes: tuple[int, int],
                  sigma: tuple[float, float], betag: tuple[float, float], betap: tuple[float, float],
                  sinc_prob: float, generator: torch.Generator | None) -> torch.Tensor:
    """One random blur kernel as Real-ESRGAN samples it: odd size in `sizes`, sinc with `sinc_prob`, else a kind
    drawn from `kernel_list` by `kernel_prob` with σ in `sigma`, rotation in [−π, π], β in betag / betap."""
    size = 2 * int(torch.randint(sizes[0] // 2, sizes[1] // 2 + 1, (), generator=generator)) + 1
    if float(torch.rand((), generator=generator)) < sinc_prob:
        # Real-ESRGAN: small kernels ring less, so they may cut higher
        cutoff = _u(math.pi / 3, math.pi, generator) if size < 13 else _u(math.pi / 5, math.pi, generator)
        return sinc_kernel(size, cutoff)
    probs = torch.tensor(kernel_prob, dtype=torch.float64)
    kind = kernel_list[int(torch.multinomial(probs / probs.sum(), 1, generator=generator))]
    sx, sy, theta = _u(*sigma, generator), _u(*sigma, generator), _u(-math.pi, math.pi, generator)
    beta = shape_beta(*betap, generator) if kind.startswith("plateau") else shape_beta(*betag, generator)
    return blur_kernel(kind, size, sx, sy, theta, beta)


def pad_reflect(x: torch.Tensor, pad: tuple[int, ...]) -> torch.Tensor:
    """`F.pad` by reflection, as BasicSR's `filter2D` pads its kernels; dimensions not longer than their pad (which
    reflection cannot fill, e.g. a 21-tap kernel on a 10-pixel frame) are padded by replication instead."""
    sizes = x.shape[::-1][: len(pad) // 2]  # the padded dimensions, last first, as `pad` lists them
    if all(size > max(pad[2 * i], pad[2 * i + 1]) for i, size in enumerate(sizes)):
        return F.pad(x, pad, mode="reflect")
    return F.pad(x, pad, mode="replicate")


def filter_frames(frames: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve frames (N, C, H, W) with one kernel (k, k), reflection padding (`pad_reflect`)."""
    k = kernel.shape[-1]
    c = frames.shape[1]
    weight = kernel.to(frames)[None, None].expand(c, 1, k, k)
    pad = k // 2
    return F.conv2d(pad_reflect(frames, (pad, pad, pad, pad)), weight, groups=c)

"""Dense optical flow between frames for the motion metrics: RAFT (torchvision, weights by path) or, without
weights, pyramidal Lucas-Kanade (written here: torchvision and kornia ship no weight-free dense flow).

A flow function maps frames a, b (N, 3, H, W) in [-1, 1] to the flow (N, 2, H, W) in pixels (x, y) with
b(p + flow(p)) ≈ a(p).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

FlowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gray(frames: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> BT.601 luma (N, 1, H, W) in [0, 1]."""
    w = torch.tensor([0.299, 0.587, 0.114], device=frames.device).view(1, 3, 1, 1)
    return ((frames.float() + 1) / 2 * w).sum(1, keepdim=True)


def warp(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample frames (N, C, H, W) at p + flow(p) (bilinear, border values): the backward warp."""
    n, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=frames.device, dtype=torch.float32),
                            torch.arange(w, device=frames.device, dtype=torch.float32), indexing="ij")
    x = (xs + flow[:, 0]) * 2 / max(w - 1, 1) - 1
    y = (ys + flow[:, 1]) * 2 / max(h - 1, 1) - 1
    return F.grid_sample(frames.float(), torch.stack([x, y], -1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def lucas_kanade(a: torch.Tensor, b: torch.Tensor, levels: int = 5, iterations: int = 5, window: int = 9,
                 min_eigenvalue: float = 1e-5) -> torch.Tensor:
    """Pyramidal iterative Lucas-Kanade flow (N, 2, H, W) from a to b (N, 3, H, W) in [-1, 1]: per pixel, the
    least-squares shift of a `window`-square neighbourhood, coarse to fine (Bouguet 2001), on luma; where the
    structure tensor's smaller eigenvalue is under `min_eigenvalue` (flat or edge-only windows: the aperture problem)
    the pixel keeps the coarser level's flow."""
    pyramid = [(gray(a), gray(b))]
    while len(pyramid) < levels and min(pyramid[-1][0].shape[-2:]) >= 2 * window + 12:
        pyramid.append(tuple(pyramid_down(v) for v in pyramid[-1]))
    flow = None
    pad = window // 2
    for ga, gb in reversed(pyramid):
        if flow is None:
            flow = torch.zeros(ga.shape[0], 2, *ga.shape[-2:], device=ga.device)
        else:
            flow = 2 * F.interpolate(flow, size=ga.shape[-2:], mode="bilinear", align_corners=False)
        h, w = ga.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, device=ga.device), torch.arange(w, device=ga.device), indexing="ij")
        for _ in range(iterations):
            wb = warp(gb, flow)
            # pixels whose match left the frame (content entering at the borders) say nothing about the shift
            x, y = xs + flow[:, 0:1], ys + flow[:, 1:2]
            inside = ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).float()
            mid = (ga + wb) / 2
            ix = (F.pad(mid, (1, 1, 0, 0), mode="replicate")[..., 2:] -
                  F.pad(mid, (1, 1, 0, 0), mode="replicate")[..., :-2]) / 2 * inside
            iy = (F.pad(mid, (0, 0, 1, 1), mode="replicate")[..., 2:, :] -
                  F.pad(mid, (0, 0, 1, 1), mode="replicate")[..., :-2, :]) / 2 * inside
            it = (wb - ga) * inside
            s = lambda v: F.avg_pool2d(F.pad(v, (pad,) * 4, mode="replicate"), window, stride=1)  # noqa: E731
            sxx, sxy, syy, sxt, syt = s(ix * ix), s(ix * iy), s(iy * iy), s(ix * it), s(iy * it)
            det = sxx * syy - sxy * sxy
            ok = (sxx + syy) / 2 - ((sxx - syy) ** 2 / 4 + sxy ** 2).sqrt() > min_eigenvalue
            safe = torch.where(ok, det, torch.ones_like(det))
            du = torch.where(ok, (-syy * sxt + sxy * syt) / safe, torch.zeros_like(det))
            dv = torch.where(ok, (sxy * sxt - sxx * syt) / safe, torch.zeros_like(det))
            flow = median_filter(flow + torch.cat([du, dv], 1).clamp(-1, 1))  # at most 1 px per iteration
    return flow


def pyramid_down(x: torch.Tensor) -> torch.Tensor:
    """Half size (N, 1, H/2, W/2) after the 5-tap binomial low-pass (Burt & Adelson 1983): a 2x2 average aliases
    fine texture, and the levels of a shifted clip would then disagree."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device) / 16
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
    return x[..., ::2, ::2]


def median_filter(flow: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Per-channel median over size x size neighbourhoods of a flow (N, 2, H, W): removes the outliers of
    ill-conditioned windows (Sun, Roth & Black 2010, "Secrets of optical flow estimation")."""
    pad = size // 2
    patches = F.unfold(F.pad(flow, (pad,) * 4, mode="replicate"), size)  # (N, 2*size*size, H*W)
    n, _, h, w = flow.shape
    return patches.view(n, 2, size * size, h * w).median(2).values.view(n, 2, h, w)


def load_raft(path: str | Path, device: torch.device | str = "cpu", updates: int = 20) -> FlowFn:
    """torchvision's RAFT (large or small, told apart by the weights) from a state-dict file, as a flow function;
    `updates` refinement iterations (VBench runs RAFT with 20)."""
    from torchvision.models.optical_flow import raft_large, raft_small

    state = torch.load(path, map_location="cpu", weights_only=True)
    net = None
    for build in (raft_large, raft_small):
        candidate = build(weights=None, progress=False)
        if candidate.state_dict().keys() == state.keys() and all(
                candidate.state_dict()[k].shape == v.shape for k, v in state.items()):
            candidate.load_state_dict(state)
            net = candidate
            break
    if net is None:
        raise ValueError(f"{path} holds neither torchvision raft_large nor raft_small weights")
    net = net.eval().to(device)

    @torch.no_grad()
    def flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h, w = a.shape[-2:]
        x, y = (v.float().to(device) for v in (a, b))
        scale = max(1.0, 128 / min(h, w))  # RAFT's correlation pyramid needs 128 px: smaller frames are enlarged
        if scale > 1:
            size = (round(h * scale), round(w * scale))
            x, y = (F.interpolate(v, size=size, mode="bilinear", align_corners=False) for v in (x, y))
        sh, sw = x.shape[-2:]
        ph, pw = -sh % 8, -sw % 8  # RAFT works on 1/8 features
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        x, y = (F.pad(v, pad, mode="replicate") for v in (x, y))
        out = net(x, y, num_flow_updates=updates)[-1][..., pad[2]:pad[2] + sh, pad[0]:pad[0] + sw]
        if scale > 1:
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False) / scale
        return out

    return flow

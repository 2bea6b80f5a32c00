"""The upsampler stages of a cascade, loaded from checkpoints/exports, checked to chain, run (tiled where large)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import UPSAMPLER, StageFile, load_net
from wantrain.nets.upsampler import UpsampleStage

AUTO_TILE_ABOVE = 256  # LR side (px) above which `tile="auto"` tiles
AUTO_TILE = 128  # LR tile side used by `tile="auto"`


class SRStage(nn.Module):
    """One trained ×2 stage: (B, 3, T, h, w) -> (B, 3, T, 2h, 2w) with the size it was trained for."""

    def __init__(self, net: UpsampleStage, config: dict) -> None:
        super().__init__()
        self.net = net
        self.config = config
        self.index: int = int(config.get("stage", 0))
        self.lr_size: tuple[int, int] = tuple(config["lr_size"])  # (h, w)

    @classmethod
    def from_stage(cls, stage: StageFile) -> "SRStage":
        """Build from a read checkpoint/export (EMA generator unless it was read raw)."""
        if stage.kind != UPSAMPLER:
            raise WantrainError(f"{stage.source} is a base (diffusion) model, not an upsampler stage: "
                                "pass it as base_ckpt, and upsampler checkpoints in sr_ckpts=[...]")
        return cls(load_net(stage.config["generator"], stage.weights["generator"], f"{stage.source} generator"),
                   stage.config)

    def forward(self, x: torch.Tensor, tile: int | str | None = "auto", overlap: int = 16,
                noise_level: float = 0.0) -> torch.Tensor:
        """x (B, 3, T, h, w) in [-1, 1] -> (B, 3, T, 2h, 2w) in [-1, 1]; tiled per `tile` (int, 'auto', None)."""
        level = torch.full((x.shape[0],), float(noise_level), device=x.device)
        side = max(x.shape[-2:])
        if tile == "auto":
            tile = AUTO_TILE if side > AUTO_TILE_ABOVE else None
        if tile:
            out = self.net.tiled(x, level, tile=int(tile), overlap=int(overlap))
        else:
            out = self.net(x, level)
        return out.clamp(-1, 1)


def check_chain(start: tuple[int, int], stages: Sequence[SRStage], sources: Sequence[str]) -> list[tuple[int, int]]:
    """Frame sizes along base -> stages; one-line error where a stage was trained for another input size."""
    sizes = [tuple(start)]
    for stage, source in zip(stages, sources):
        if tuple(stage.lr_size) != sizes[-1]:
            h, w = stage.lr_size
            raise WantrainError(
                f"upsampler {source} (stage {stage.index}) was trained on {h}x{w} -> {2 * h}x{2 * w} but the clip "
                f"entering it is {sizes[-1][0]}x{sizes[-1][1]}: give sr_ckpts in cascade order from the base "
                "resolution (or check_sizes=false to run it anyway)")
        sizes.append((2 * sizes[-1][0], 2 * sizes[-1][1]))
    return sizes


def stages_for_size(sizes: Sequence[tuple[int, int]], size: int | None) -> int:
    """How many stages to run to reach frame height `size` (all when None); error when no stage makes it."""
    if size is None:
        return len(sizes) - 1
    for n, (h, _w) in enumerate(sizes):
        if h == int(size):
            return n
    reachable = ", ".join(str(h) for h, _ in sizes)
    raise WantrainError(f"size={size} cannot be produced: the base model and the given upsamplers make frame heights "
                        f"{reachable}; pick one of them or add the missing stage to sr_ckpts")

"""The one way a ×2 upsampler stage runs at inference: `fit`'s validation, `sample`, `test` and exports all call
`upsample` (noise augmentation as in training, tiling where large, clamp); `SRStage` is a loaded stage."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wantrain.degradations.ops import noise_augment
from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import UPSAMPLER, SavedModel, load_net
from wantrain.nets.upsampler import UpsampleStage

AUTO_TILE_ABOVE = 256  # LR side (px) above which `tile="auto"` tiles
AUTO_TILE = 128  # LR tile side used by `tile="auto"`


def augment_seed(seed: int, stage: int) -> int:
    """Seed of the noise augmentation of clip `seed` entering cascade stage `stage` (distinct per stage)."""
    return (int(seed) * 1_000_003 + int(stage)) % (2 ** 63)


def augmented_input(x: torch.Tensor, level: float, seeds: Sequence[int], stage: int = 1) -> torch.Tensor:
    """x (B, 3, T, h, w) noise-augmented at `level` exactly as in training (`degradations.ops.noise_augment`), each clip
    from its own seed, so a clip does not depend on its batch neighbours."""
    if len(seeds) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} clips and {len(seeds)} seeds: give one seed per clip")
    levels = torch.full((1,), float(level))
    return torch.cat([noise_augment(x[i:i + 1], levels, torch.Generator().manual_seed(augment_seed(s, stage)))
                      for i, s in enumerate(seeds)])


@torch.no_grad()
def upsample(net: UpsampleStage, x: torch.Tensor, *, noise_level: float = 0.0, seeds: Sequence[int] | None = None,
             stage: int = 1, tile: int | str | None = None, overlap: int = 16) -> torch.Tensor:
    """One ×2 stage at inference: x (B, 3, T, h, w) in [-1, 1] -> (B, 3, T, 2h, 2w) in [-1, 1].

    A noise-conditioned stage is told `noise_level` and given its input noise-augmented at that level (seeded per
    clip by `seeds`, default 0, 1, ...), as it saw it in training; other stages ignore the level. `tile`: LR tile
    side (int), "auto" (tile above AUTO_TILE_ABOVE px) or None (whole frames).
    """
    level = float(noise_level)
    if not 0.0 <= level <= 1.0:
        raise WantrainError(f"sr_noise_level={level}: use a level in [0, 1] (0: clean input)")
    if not net.noise_conditioned:
        level = 0.0
    if level > 0:
        x = augmented_input(x, level, list(seeds) if seeds is not None else list(range(x.shape[0])), stage)
    levels = torch.full((x.shape[0],), level, device=x.device)
    if tile == "auto":
        tile = AUTO_TILE if max(x.shape[-2:]) > AUTO_TILE_ABOVE else None
    out = net.tiled(x, levels, tile=int(tile), overlap=int(overlap)) if tile else net(x, levels)
    return out.clamp(-1, 1)


class SRStage(nn.Module):
    """Cascade stage N (`+experiment=sr_stageN`): a trained ×2 `UpsampleStage` and the input size it was trained on."""

    def __init__(self, net: UpsampleStage, stage: int, lr_size: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.stage = int(stage)
        self.lr_size: tuple[int, int] = (int(lr_size[0]), int(lr_size[1]))  # (h, w)

    @property
    def name(self) -> str:
        """`sr_stageN`: the experiment that trains it, its export folder."""
        return f"sr_stage{self.stage}"

    @classmethod
    def from_saved(cls, saved: SavedModel) -> SRStage:
        """Build from a read checkpoint/export (EMA generator unless it was read raw)."""
        if saved.kind != UPSAMPLER:
            raise WantrainError(f"{saved.source} is a base (diffusion) model, not an upsampler stage: "
                                "pass it as base_ckpt, and upsampler checkpoints in sr_ckpts=[...]")
        cfg = saved.config
        return cls(load_net(cfg["generator"], saved.state, f"{saved.source} generator"), cfg["stage"], cfg["lr_size"])

    def forward(self, x: torch.Tensor, tile: int | str | None = "auto", overlap: int = 16, noise_level: float = 0.0,
                seeds: Sequence[int] | None = None) -> torch.Tensor:
        """x (B, 3, T, h, w) in [-1, 1] -> (B, 3, T, 2h, 2w) in [-1, 1] through `upsample`."""
        return upsample(self.net, x, noise_level=noise_level, seeds=seeds, stage=self.stage, tile=tile,
                        overlap=overlap)


def run_cascade(stages: Sequence[SRStage], video: torch.Tensor, *, tile: int | str | None = "auto",
                overlap: int = 16, noise_level: float = 0.0, seeds: Sequence[int] | None = None) -> torch.Tensor:
    """video (B, 3, T, h, w) through the stages in order -> (B, 3, T, h·2^n, w·2^n)."""
    for stage in stages:
        video = stage(video, tile=tile, overlap=overlap, noise_level=noise_level, seeds=seeds)
    return video


def check_chain(start: tuple[int, int], stages: Sequence[SRStage], sources: Sequence[str]) -> list[tuple[int, int]]:
    """Frame sizes along base -> stages; one-line error where a stage was trained for another input size."""
    sizes = [tuple(start)]
    for stage, source in zip(stages, sources):
        if tuple(stage.lr_size) != sizes[-1]:
            h, w = stage.lr_size
            raise WantrainError(
                f"upsampler {source} ({stage.name}) was trained on {h}x{w} -> {2 * h}x{2 * w} but the clip "
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

"""`ImageToVideoPipeline`: base diffusion model + upsampler cascade, from checkpoints or exported folders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wantrain.errors import WantrainError
from wantrain.inference.base import BaseModel
from wantrain.inference.cascade import SRStage, check_chain, run_cascade, stages_for_size
from wantrain.inference.checkpoints import EXPORT_INDEX, apply_lora_file, read_saved


class ImageToVideoPipeline(nn.Module):
    """first frame + prompt -> low-res clip (base) -> ×2 stages -> (B, 3, T, H·2^n, W·2^n) in [-1, 1]."""

    def __init__(self, base: BaseModel, stages: Sequence[SRStage] = (), sources: Sequence[str] = (),
                 check_sizes: bool = True) -> None:
        super().__init__()
        self.base = base
        self.upsampler_module = nn.ModuleList(stages)  # upsampler_module[i]: cascade stage i + 1
        sources = list(sources) or [stage.name for stage in stages]
        if check_sizes:
            self.sizes = check_chain(base.resolution, list(stages), sources)
        else:
            h, w = base.resolution
            self.sizes = [(h * 2 ** i, w * 2 ** i) for i in range(len(stages) + 1)]

    @property
    def device(self) -> torch.device:
        return self.base.device

    def num_stages_for(self, size: int | None) -> int:
        """Stages to run for output frame height `size` (None: all), or a one-line error."""
        return stages_for_size(self.sizes, size)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, prompts: Sequence[str], seeds: Sequence[int], size: int | None = None,
                tile: int | str | None = "auto", tile_overlap: int = 16, sr_noise_level: float = 0.0,
                num_frames: int | None = None, **sampling: Any) -> torch.Tensor:
        """Clips (B, 3, T, H, W) in [-1, 1] at frame height `size` (default: the last stage's).

        Noise-conditioned stages get their input noise-augmented at `sr_noise_level`, seeded by each clip's seed.
        """
        n = self.num_stages_for(size)
        video = self.base.generate(images, prompts, seeds, num_frames=num_frames, **sampling)
        return run_cascade(list(self.upsampler_module)[:n], video, tile=tile, overlap=tile_overlap,
                           noise_level=sr_noise_level, seeds=seeds)


def load_pipeline(base: str | Path, sr: Sequence[str | Path] | None = None, use_ema: bool = True,
                  text_encoder: str | None = None, image_encoder: str | None = None, check_sizes: bool = True,
                  device: torch.device | str = "cpu", lora: str | Path | None = None) -> ImageToVideoPipeline:
    """Base + stages from .ckpt files, exported model folders, or an export root (`sr=None`: its stages); `lora`: a
    LoRA file merged onto the base model."""
    base_path = Path(base)
    if (base_path / EXPORT_INDEX).is_file():
        index = json.loads((base_path / EXPORT_INDEX).read_text())
        if sr is None:
            sr = [base_path / name for name in index.get("stages", [])]
        base_path = base_path / index.get("base", "base")
    sr = list(sr or [])
    saved = read_saved(base_path, "base_ckpt", use_ema)
    base_model = BaseModel.from_saved(apply_lora_file(saved, lora) if lora else saved, text_encoder, image_encoder)
    stages = [SRStage.from_saved(read_saved(p, "sr_ckpts", use_ema)) for p in sr]
    return ImageToVideoPipeline(base_model, stages, [str(p) for p in sr], check_sizes).to(device)


def load_exported(folder: str | Path, text_encoder: str | None = None, image_encoder: str | None = None,
                  device: torch.device | str = "cpu") -> ImageToVideoPipeline:
    """The pipeline written by `wantrain sample export=DIR` (plain PyTorch, no Lightning needed)."""
    folder = Path(folder)
    if not (folder / EXPORT_INDEX).is_file():
        raise WantrainError(f"{folder} has no {EXPORT_INDEX}: not a folder written by `wantrain sample export=DIR`")
    return load_pipeline(folder, None, True, text_encoder, image_encoder, device=device)

"""`bench quality`: learning quality on real photos (scikit-learn's sample images) filmed by a virtual camera.

(a) the base diffusion stage overfits one clip and samples it back (PSNR of the sample);
(b) the ×2 stage trains a fixed number of batches and is scored on held-out crops, clean and degraded, against
bicubic (PSNR, SSIM, flicker, LPIPS when weights are given).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from pytorch_lightning import Callback
from torch.utils.data import DataLoader, IterableDataset

from wantrain.errors import WantrainError


def load_scenes(scale: float) -> list[torch.Tensor]:
    """scikit-learn's two sample photos (china, flower; 427x640) shrunk by `scale`: [(3, H, W) in [-1, 1]]."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise WantrainError("bench quality films scikit-learn's sample photos: pip install scikit-learn "
                            "(or pip install -e '.[dev]')") from None
    scenes = []
    for image in load_sample_images().images:
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float()[None] / 127.5 - 1  # (1, 3, H, W)
        size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
        scenes.append(F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp(-1, 1))
    return scenes


def film(scene: torch.Tensor, frames: int, size: int, x_range: tuple[float, float], speed: tuple[float, float],
         zoom: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """A clip (3, T, size, size) of `scene` (3, H, W) through a camera that pans at a random speed/direction and
    zooms linearly, its window always inside columns x_range (fractions of W); bilinear, sub-pixel."""
    _, h, w = scene.shape
    u = lambda lo, hi: float(lo + (hi - lo) * torch.rand((), generator=generator))  # noqa: E731
    angle, v = u(-math.pi, math.pi), u(*speed)
    z = torch.linspace(u(*zoom), u(*zoom), frames)  # window scale per frame (scene px per output px)
    t = torch.arange(frames, dtype=torch.float32)
    dx, dy = v * math.cos(angle) * t, v * math.sin(angle) * t  # offsets of the centre
    half = float(z.max()) * size / 2
    x_lo, x_hi = x_range[0] * w + half - float(dx.min()), x_range[1] * w - half - float(dx.max())
    y_lo, y_hi = half - float(dy.min()), h - half - float(dy.max())
    if x_lo > x_hi or y_lo > y_hi:
        raise WantrainError(f"a {size}px camera path does not fit in the {h}x{w} scene's part {x_range}: lower "
                            "the clip size or the camera speed, or raise bench.photo_scale")
    cx, cy = u(x_lo, x_hi) + dx, u(y_lo, y_hi) + dy  # (T,)
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    xs = cx[:, None] + r[None] * z[:, None]  # (T, size) scene x of each output column
    ys = cy[:, None] + r[None] * z[:, None]
    grid = torch.stack([(2 * xs[:, None, :] + 1) / w - 1 + 0 * ys[:, :, None],
                        (2 * ys[:, :, None] + 1) / h - 1 + 0 * xs[:, None, :]], dim=-1)  # (T, size, size, 2)
    out = F.grid_sample(scene[None].expand(frames, -1, -1, -1), grid, mode="bilinear", align_corners=False)
    return out.transpose(0, 1).clamp(-1, 1)  # (3, T, size, size)


def clips(scenes: list[torch.Tensor], n: int, frames: int, size: int, part: tuple[float, float], cfg: Any,
          generator: torch.Generator) -> torch.Tensor:
    """n clips (n, 3, T, size, size), alternating over the scenes, from the columns `part` of each; each the first
    of `cfg.tries` camera paths whose detail (mean |horizontal gradient|) reaches `cfg.min_detail`, else the most
    detailed one (flat sky and out-of-focus background say little about an upsampler)."""
    speed, zoom = tuple(cfg.camera_speed), tuple(cfg.camera_zoom)
    out = []
    for i in range(n):
        best, best_detail = None, -1.0
        for _ in range(max(1, int(cfg.get("tries", 1)))):
            clip = film(scenes[i % len(scenes)], frames, size, part, speed, zoom, generator)
            detail = float(clip.diff(dim=-1).abs().mean())
            if detail > best_detail:
                best, best_detail = clip, detail
            if detail >= float(cfg.get("min_detail", 0.0)):
                break
        out.append(best)
    return torch.stack(out)


class CameraClips(IterableDataset):
    """Endless batches {"video": (B, 3, T, S, S)} of fresh training clips (seeded)."""

    def __init__(self, scenes: list[torch.Tensor], cfg: Any, batch: int, frames: int, size: int) -> None:
        self.scenes, self.cfg, self.batch, self.frames, self.size = scenes, cfg, batch, frames, size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(int(self.cfg.seed))
        part = (0.0, float(self.cfg.held_out_split))
        while True:
            yield {"video": clips(self.scenes, self.batch, self.frames, self.size, part, self.cfg, g)}


def _fit(module: Any, loader: DataLoader, steps: int, callbacks: list | None = None) -> None:
    """Train `module` for `steps` batches of `loader` on CPU, without validation, logging or checkpoints."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, gradient_clip_val=None, callbacks=callbacks)
    with warnings.catch_warnings():  # no validation here on purpose: the bench scores the stages itself
        warnings.filterwarnings("ignore", r"You defined a `validation_step` but have no `val_dataloader`")
        trainer.fit(module, train_dataloaders=loader)


def run_base(cfg: Any, scenes: list[torch.Tensor]) -> list[dict]:
    """(a): overfit the base stage on one clip; PSNR of its sample (EMA, from the clip's first frame + caption)."""
    from wantrain.evaluation.video_metrics import psnr

    start = time.perf_counter()
    g = torch.Generator().manual_seed(int(cfg.seed) + 1)
    video = clips(scenes, 1, int(cfg.base_frames), int(cfg.base_size), (0.0, 1.0), cfg, g)
    batch = {"video": video, "image": video[:, :, 0], "caption": [str(cfg.caption)], "key": ["photo"]}
    model = instantiate(cfg.base_model)
    model.prepare_data()  # builds the tiny encoders under data_dir on first use, as `fit` does
    model.setup("fit")
    untrained = psnr(model.generate(batch), video).mean().item()
    b = int(cfg.base_batch)
    repeated = {"video": video.expand(b, -1, -1, -1, -1).contiguous(), "image": batch["image"].expand(b, -1, -1, -1),
                "caption": batch["caption"] * b, "key": batch["key"] * b}
    loader = DataLoader(_Repeat(repeated), batch_size=None)
    _fit(model, loader, int(cfg.base_steps))
    sample = psnr(model.generate(batch), video).mean().item()
    return [{"part": "(a) base overfit", "input": f"1 clip {cfg.base_frames}x{cfg.base_size}px",
             "steps": int(cfg.base_steps), "sample_psnr": round(sample, 2), "untrained_psnr": round(untrained, 2),
             "margin_db": round(sample - untrained, 2), "seconds": round(time.perf_counter() - start, 1)}]


class _Repeat(IterableDataset):
    """The same batch forever."""

    def __init__(self, batch: dict[str, Any]) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.batch


def held_out_inputs(cfg: Any, scenes: list[torch.Tensor], module: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Held-out HR clips (N, 3, T, S, S) and their LR inputs by name: clean, the stage's own test degradations
    (model.degrade without noise augmentation, seed 1234: what `test` and validation feed it), noise + JPEG."""
    from wantrain.degradations.ops import downsample
    from wantrain.degradations.pipeline import DegradeConfig, degrade

    g = torch.Generator().manual_seed(int(cfg.seed) + 2)
    hr = clips(scenes, int(cfg.eval_clips), int(cfg.sr_frames), int(cfg.sr_size),
               (float(cfg.held_out_split), 1.0), cfg, g)
    noise, quality = float(cfg.degraded_noise), int(cfg.degraded_jpeg)
    damage = DegradeConfig(noise_prob=1.0, noise_sigma=(noise, noise), jpeg_prob=1.0, jpeg_quality=(quality, quality))
    own = dataclasses.replace(module.degrade_cfg, noise_aug_max=0.0)
    return hr, {"clean": downsample(hr), "own degradations": degrade(hr, own, torch.Generator().manual_seed(1234))[0],
                f"noise {noise:g} + JPEG {quality}": degrade(hr, damage, g)[0]}


def score_sr(module: Any, hr: torch.Tensor, inputs: dict[str, torch.Tensor], batches: int, seconds: float,
             lpips: Any = None) -> list[dict]:
    """One row per input: the stage's (EMA) PSNR / SSIM / flicker (+ LPIPS) against bicubic's on the same LR."""
    from wantrain.evaluation.upsampler import bicubic, sr_metrics

    rows = []
    training = module.training
    module.eval()
    for name, lr in inputs.items():
        with torch.no_grad():
            sr = module.upsample(lr)
            scores = {k: sr_metrics(p, hr, lpips) for k, p in (("sr", sr), ("bicubic", bicubic(lr)))}
        row: dict[str, Any] = {"part": "(b) x2 held-out", "input": name, "steps": batches}
        row["psnr_sr"], row["psnr_bicubic"] = (round(float(scores[k]["psnr"]), 2) for k in ("sr", "bicubic"))
        row["margin_db"] = round(row["psnr_sr"] - row["psnr_bicubic"], 2)
        row["ssim_sr"], row["ssim_bicubic"] = (round(float(scores[k]["ssim"]), 4) for k in ("sr", "bicubic"))
        if lpips is not None:
            row["lpips_sr"], row["lpips_bicubic"] = (round(float(scores[k]["lpips"]), 4) for k in ("sr", "bicubic"))
        row["flicker_sr"], row["flicker_bicubic"] = (round(float(scores[k]["flicker"]), 3) for k in ("sr", "bicubic"))
        row["seconds"] = round(seconds if not rows else 0.0, 1)
        rows.append(row)
    module.train(training)
    return rows


class ScoreAt(Callback):
    """Scores the stage after each of `batches` training batches (the curve over batches), training time only."""

    def __init__(self, batches: list[int], score: Any) -> None:
        self.batches, self.score, self.rows = sorted(set(batches)), score, []
        self.start, self.paused = time.perf_counter(), 0.0

    def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if module.batches in self.batches:
            paused = time.perf_counter()
            self.rows += self.score(module, module.batches, paused - self.start - self.paused)
            self.paused += time.perf_counter() - paused


def run_sr(cfg: Any, scenes: list[torch.Tensor]) -> list[dict]:
    """(b): train the ×2 stage `sr_batches` batches; score held-out clips (clean, its own degradations, noise +
    JPEG) against bicubic, after `sr_curve` batches too."""
    from wantrain.losses.perceptual import LPIPSLoss

    module = instantiate(cfg.sr_model)
    hr, inputs = held_out_inputs(cfg, scenes, module)
    lpips = LPIPSLoss("alex", cfg.lpips_trunk) if cfg.lpips_trunk else None
    total = int(cfg.sr_batches)
    curve = ScoreAt([*[int(b) for b in cfg.get("sr_curve") or [] if int(b) < total], total],
                    lambda m, batches, seconds: score_sr(m, hr, inputs, batches, seconds, lpips))
    loader = DataLoader(CameraClips(scenes, cfg, int(cfg.sr_batch), int(cfg.sr_frames), int(cfg.sr_size)),
                        batch_size=None)
    _fit(module, loader, total, [curve])
    return curve.rows


def resolve_base_model(cfg: Any) -> None:
    """Resolve `cfg.base_model` in place: the model config refers to its siblings in a training config
    (${model.fusion.width}, ${trainer.max_steps}), which a bench config does not have."""
    root = OmegaConf.create({"model": OmegaConf.to_container(cfg.base_model, resolve=False),
                             "trainer": {"max_steps": int(cfg.base_steps)}, "seed": int(cfg.seed),
                             "paths": {"data_dir": str(cfg.data_dir)}})
    with open_dict(cfg):
        cfg.base_model = OmegaConf.to_container(root.model, resolve=True)


def run(cfg: Any) -> list[dict]:
    """Rows of the quality table for the parts in `cfg.parts` (`base`, `sr`)."""
    resolve_base_model(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    unknown = set(cfg.parts) - {"base", "sr"}
    if unknown:
        raise WantrainError(f"bench.parts has {sorted(unknown)}: use a list of base and sr")
    scenes = load_scenes(float(cfg.photo_scale))
    rows = []
    if "base" in cfg.parts:
        rows += run_base(cfg, scenes)
    if "sr" in cfg.parts:
        rows += run_sr(cfg, scenes)
    return rows

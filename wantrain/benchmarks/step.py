"""Benchmark: a Lightning fit loop's steps/s vs a bare PyTorch loop doing the same work, and step-time scaling;
with `spaces`, the training step's cost per clip in pixel vs latent space across resolutions."""

from __future__ import annotations

import contextlib
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from wantrain.data.synthetic import caption_corpus
from wantrain.ranks import pick_device
from wantrain.training.video_diffusion import VideoDiffusionModule

RATIO_GOAL = 0.95  # Lightning steps/s over bare steps/s


def compose_train_config(overrides: list[str]) -> DictConfig:
    """The real training config (conf/config.yaml) with overrides, inside or outside a running Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from wantrain.config_tree import config_dir, register_resolvers

    register_resolvers()
    if GlobalHydra.instance().is_initialized():  # under `python -m wantrain bench` (hydra.main)
        return compose(config_name="config", overrides=overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def build_module(root: Path, overrides: list[str]) -> VideoDiffusionModule:
    """The configured VideoDiffusionModule, tiny encoders built under `root`, ready to train (setup done)."""
    from hydra.utils import instantiate

    cfg = compose_train_config([f"paths.root_dir={root}", *overrides])
    module = instantiate(cfg.model)
    if not isinstance(module, VideoDiffusionModule):
        raise ValueError(f"bench step needs a VideoDiffusionModule model, got {type(module).__name__}; "
                         "drop the model=... override from bench.overrides")
    module.prepare_data()
    module.setup("fit")
    return module


def make_batch(b: int, t: int, h: int, w: int, seed: int) -> dict[str, Any]:
    """A fixed batch: random video (B, 3, T, H, W) in [-1, 1], its first frame, corpus captions."""
    generator = torch.Generator().manual_seed(seed)
    video = torch.rand(b, 3, t, h, w, generator=generator) * 2 - 1
    corpus = caption_corpus()
    return {"video": video, "image": video[:, :, 0].clone(), "caption": [corpus[i % len(corpus)] for i in range(b)],
            "key": [f"{i:06d}" for i in range(b)], "skipped": {}}


class SameBatch(Dataset):
    """`n` items, each the same (already collated) batch."""

    def __init__(self, batch: dict[str, Any], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.batch


def loader(batch: dict[str, Any], n: int) -> DataLoader:
    """A DataLoader yielding `batch` `n` times (no collation, no workers)."""
    return DataLoader(SameBatch(batch, n), batch_size=None, shuffle=False, num_workers=0)


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock(pl.Callback):
    """Times train batches `warmup` .. last (from the start of the first timed batch to the end of the last)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.stop = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int,
                             ) -> None:
        if batch_idx == self.warmup:
            sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx == self.steps - 1:
            sync(pl_module.device)
            self.stop = time.perf_counter()


def lightning_seconds(module: VideoDiffusionModule, batch: dict[str, Any], cfg: DictConfig, device: torch.device,
                      precision: str) -> float:
    """Seconds per step of `Trainer.fit` over `cfg.steps` steps (the first `cfg.warmup` untimed)."""
    clock = StepClock(int(cfg.warmup), int(cfg.steps))
    trainer = pl.Trainer(
        accelerator=device.type, devices=1, precision=precision, max_steps=int(cfg.steps), max_epochs=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, gradient_clip_val=cfg.gradient_clip_val, callbacks=[clock],
    )
    trainer.fit(module, train_dataloaders=loader(batch, int(cfg.steps)))
    return (clock.stop - clock.start) / (int(cfg.steps) - int(cfg.warmup))


@contextlib.contextmanager
def detached(module: VideoDiffusionModule) -> Iterator[None]:
    """The module without a Trainer and with `self.log` a no-op (logging is Lightning's part of the work)."""
    module.trainer = None
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del module.log


def bare_seconds(module: VideoDiffusionModule, batch: dict[str, Any], cfg: DictConfig, device: torch.device,
                 precision: str) -> float:
    """Seconds per step of a plain loop: training_step -> zero_grad -> backward -> (clip) -> step -> LR -> EMA."""
    steps, warmup = int(cfg.steps), int(cfg.warmup)
    clip = cfg.gradient_clip_val
    module.to(device).train()
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    scheduler = configured["lr_scheduler"]["scheduler"] if isinstance(configured, dict) else None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    start = 0.0
    with detached(module), torch.enable_grad():
        for i, cpu_batch in enumerate(loader(batch, steps)):
            if i == warmup:
                sync(device)
                start = time.perf_counter()
            step_batch = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                          for k, v in cpu_batch.items()}
            with autocast:
                loss = module.training_step(step_batch, i)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, float(clip))
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            module.ema.update_parameters(module.model)
        sync(device)
    return (time.perf_counter() - start) / (steps - warmup)


def peak_memory_gb(device: torch.device) -> float:
    """CUDA max_memory_allocated since the last reset, else this process's peak RSS (GB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss * (1 if sys.platform == "darwin" else 1024) / 1e9


def measure_shape(module: VideoDiffusionModule, name: str, shape: tuple[int, int, int, int], cfg: DictConfig,
                  device: torch.device, precision: str) -> dict[str, Any]:
    """Alternate `cfg.repeats` Lightning and bare runs on one fixed batch; best time of each -> a table row."""
    b, t, h, w = shape
    batch = make_batch(b, t, h, w, int(cfg.seed))
    lightning, bare, mem_l, mem_b = [], [], 0.0, 0.0
    for _ in range(int(cfg.repeats)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        lightning.append(lightning_seconds(module, batch, cfg, device, precision))
        mem_l = max(mem_l, peak_memory_gb(device))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        bare.append(bare_seconds(module, batch, cfg, device, precision))
        mem_b = max(mem_b, peak_memory_gb(device))
    sl, sb = min(lightning), min(bare)
    return {"shape": name, "batch": b, "frames": t, "size": f"{h}x{w}", "device": str(device), "precision": precision,
            "lightning_steps_s": round(1 / sl, 3), "bare_steps_s": round(1 / sb, 3),
            "lightning_over_bare": round(sb / sl, 3), "ratio_ok": sb / sl >= RATIO_GOAL,
            "lightning_ms": round(sl * 1e3, 2), "bare_ms": round(sb * 1e3, 2),
            "peak_mem_gb_lightning": round(mem_l, 3), "peak_mem_gb_bare": round(mem_b, 3),
            "mem": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss"}


def cached_batch(module: VideoDiffusionModule, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """`batch` plus its latents and first-frame latents, as `encode` caches them (training then runs no VAE)."""
    with torch.no_grad():
        video = batch["video"].to(device)
        latent = module.space.encode(video).cpu()
        first = module.space.first_frames(batch["image"].to(device), video.shape[2]).cpu()
    return {**batch, "latent": latent, "first_latent": first}


def vae_seconds(module: VideoDiffusionModule, batch: dict[str, Any], device: torch.device, repeats: int) -> float:
    """Best seconds of the VAE work of one live latent step: encode the clips and their first-frame clips."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        sync(device)
        start = time.perf_counter()
        cached_batch(module, batch, device)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def space_rows(cfg: DictConfig, root: Path, overrides: list[str], device: torch.device, precision: str) -> list[dict]:
    """Per resolution: the bare training step per clip in pixel space, and in latent space live (VAE encode + UNet)
    and from cached latents (UNet only), measured side by side on the same clips; the same UNet config in both."""
    b, t, repeats = int(cfg.batch_size), int(cfg.num_frames), int(cfg.repeats)
    latent_overrides = [*overrides, *OmegaConf.to_container(cfg.latent_overrides, resolve=True)]
    pixel, latent = build_module(root, overrides), build_module(root, latent_overrides)
    rows = []
    for size in cfg.resolutions:
        h, w = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        latent.space.check_shape(t, h, w)
        batch = make_batch(b, t, h, w, int(cfg.seed))
        cached = cached_batch(latent, batch, device)
        times: dict[str, list[float]] = {"pixel": [], "latent": [], "cached": []}
        for _ in range(repeats):  # alternate, so a busy machine slows all three alike
            times["pixel"].append(bare_seconds(pixel, batch, cfg, device, precision))
            times["latent"].append(bare_seconds(latent, batch, cfg, device, precision))
            times["cached"].append(bare_seconds(latent, cached, cfg, device, precision))
        ms = {k: min(v) * 1e3 / b for k, v in times.items()}  # per clip
        vae_ms = vae_seconds(latent, batch, device, repeats) * 1e3 / b
        common = {"size": f"{h}x{w}", "frames": t, "batch": b, "device": str(device), "precision": precision}
        rows.append({"space": "pixel", **common, "unet_input": "x".join(map(str, pixel.space.shape(t, h, w))),
                     "step_ms_per_clip": round(ms["pixel"], 2), "vae_encode_ms_per_clip": 0.0,
                     "step_ms_cached_per_clip": round(ms["pixel"], 2), "vs_pixel": 1.0, "cached_vs_pixel": 1.0})
        rows.append({"space": "latent", **common, "unet_input": "x".join(map(str, latent.space.shape(t, h, w))),
                     "step_ms_per_clip": round(ms["latent"], 2), "vae_encode_ms_per_clip": round(vae_ms, 2),
                     "step_ms_cached_per_clip": round(ms["cached"], 2),
                     "vs_pixel": round(ms["latent"] / ms["pixel"], 3),
                     "cached_vs_pixel": round(ms["cached"] / ms["pixel"], 3)})
    return rows


def run(cfg: DictConfig) -> list[dict]:
    """Rows: base shape, then (if `scaling`) 2T and 2HW, each Lightning vs bare, with growth vs the base; with
    `spaces`, pixel vs latent rows per resolution instead (`space_rows`)."""
    steps, warmup = int(cfg.steps), int(cfg.warmup)
    if steps - warmup < 1 or warmup < 0:
        raise ValueError(f"bench.steps ({steps}) must exceed bench.warmup ({warmup}) >= 0; raise bench.steps")
    device = pick_device(cfg.device)
    precision = str(cfg.precision)
    if precision == "auto":
        precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    if precision not in ("32-true", "bf16-mixed"):
        raise ValueError(f"bench.precision must be auto | 32-true | bf16-mixed, got {precision!r}")
    b, t, h, w = int(cfg.batch_size), int(cfg.num_frames), int(cfg.height), int(cfg.width)
    overrides = list(OmegaConf.to_container(cfg.overrides, resolve=True) or [])
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    with tempfile.TemporaryDirectory(prefix="wantrain-bench-step-") as root, warnings.catch_warnings():
        noise = r".*(num_workers|does not have many workers|GPU available|no `val_dataloader`).*"
        warnings.filterwarnings("ignore", message=noise)
        if bool(cfg.get("spaces", False)):
            return space_rows(cfg, Path(root), overrides, device, precision)
        module = build_module(Path(root), overrides)
        # latent space (e.g. overrides=[+experiment=i2v_latent_tiny]): the Wan VAE takes 4k+1 frames, so 2T is 2T-1
        t2 = 2 * t - 1 if module.hparams.space == "latent" else 2 * t
        shapes = [("base", (b, t, h, w))]
        if bool(cfg.scaling):
            shapes += [("2T", (b, t2, h, w)), ("2HW", (b, t, h, 2 * w))]
        rows = [measure_shape(module, name, shape, cfg, device, precision) for name, shape in shapes]
    base_l, base_b = rows[0]["lightning_ms"], rows[0]["bare_ms"]
    for row in rows:
        row["lightning_ms_vs_base"] = round(row["lightning_ms"] / base_l, 3)
        row["bare_ms_vs_base"] = round(row["bare_ms"] / base_b, 3)
    return rows

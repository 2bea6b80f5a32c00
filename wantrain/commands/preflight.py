"""Preflight: everything a training-type command checks (and builds) before its first side effect.

A wrong launch (missing shards or weights, a bad resolution, an unknown key, a checkpoint of another model)
fails here in one line and leaves nothing behind: no run folder, no logger files, no wandb run, no generated
data, no spawned ranks. The checks run cheapest first: shards and encoder paths before the model is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from wantrain.commands.instantiate import build_trainer
from wantrain.commands.run_setup import seed_run
from wantrain.data.shards import expand_shard_spec, is_remote
from wantrain.data.skips import SkipCounter
from wantrain.encoders.conditioning import FrozenEncoders
from wantrain.encoders.tiny_wan import build_missing_backbone
from wantrain.errors import WantrainError
from wantrain.io.tar import read_samples
from wantrain.training.checkpoint_compat import check_checkpoint_fits
from wantrain.training.preflight import run_preflight
from wantrain.training.resume import resolve_ckpt_path


@dataclass
class Prepared:
    """What the preflight built, ready to run: nothing has been written yet."""

    datamodule: Any
    model: pl.LightningModule
    trainer: pl.Trainer
    ckpt_path: str | None


def check_encoders(model: DictConfig) -> None:
    """The frozen encoders' (and VAE's) paths hold config and weight files, checked without loading them
    (tiny encoders that `build_tiny_encoders` creates on first use are fine)."""
    live = model.get("conditioning", "live") == "live"
    nodes = [model.get("text_encoder") if live else None, model.get("image_encoder") if live else None,
             model.get("vae") if model.get("space", "pixel") == "latent" else None]
    if not any(nodes):
        return  # the upsampler stages, or cached conditioning in pixel space
    factories = [instantiate(node) if node is not None else None for node in nodes]
    FrozenEncoders(factories[0], factories[1], bool(model.get("build_tiny_encoders", False)),
                   factories[2]).check_available()


def check_conditioning(cfg: DictConfig) -> None:
    """model.conditioning=cached needs the cached t5 and dit embeddings in the batches."""
    if cfg.model.get("conditioning") != "cached":
        return
    names = ("t5", "dit") if cfg.model.get("image_encoder") is not None else ("t5",)  # text-to-video: no image
    missing = [name for name in names if name not in (cfg.data.get("embeddings") or [])]
    if missing:
        raise WantrainError(f"model.conditioning=cached needs data.embeddings to include {missing}: cache them "
                            "with `python -m wantrain encode out=DIR`, then data.embeddings=[t5,dit]")


def prepare_run(cfg: DictConfig, command: str, extra_callbacks: list[pl.Callback] | None = None,
                trainer_factory: Callable[..., pl.Trainer] = build_trainer) -> Prepared:
    """Seed, then check and build data, model, checkpoint and Trainer (`trainer_factory`) for `fit` / `validate`,
    in that order, before anything is written (cheap checks first); raise one-line errors."""
    seed_run(cfg)
    check_conditioning(cfg)
    datamodule = instantiate(cfg.data)
    run_preflight(datamodule)  # the data alone: its shards
    build_missing_backbone(cfg.model)
    check_encoders(cfg.model)
    max_steps = cfg.trainer.get("max_steps") if command == "fit" else None
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.run_dir, max_steps)
    if ckpt_path is None and command == "validate":
        raise WantrainError(f"no checkpoint to validate in {cfg.run_dir}/checkpoints; pass ckpt_path=PATH/TO.ckpt")
    model = instantiate(cfg.model)
    # no validation shards: no validation loop (else Lightning warns about a zero-length list of loaders)
    no_val = {"limit_val_batches": 0} if getattr(datamodule, "val_shards", "") is None else {}
    if no_val and command == "validate":
        raise WantrainError("nothing to validate: data.val_shards is null; set it to your validation shards")
    trainer = trainer_factory(cfg, extra_callbacks=extra_callbacks, **no_val)
    run_preflight(model, datamodule, trainer)  # the model against the data and the strategy (resolution, buckets)
    if ckpt_path is not None:
        check_checkpoint_fits(ckpt_path, model)  # another stage / architecture: one line, not a key dump
    check_validation_split(datamodule, trainer.world_size)
    return Prepared(datamodule, model, trainer, ckpt_path)


def count_samples(urls: list[str]) -> int:
    """Samples (distinct keys) in local tar shards, reading headers only."""
    counter = SkipCounter(max_pending=None)
    return sum(1 for url in urls for _ in read_samples(url, lambda ext: False, counter.add))


def check_validation_split(datamodule: Any, world_size: int) -> None:
    """Every rank needs at least one validation sample: a rank with none skips the epoch-end metric reduction
    (`sync_dist=True`) the others wait in, and DDP hangs. Batch sizes larger than a rank's share are fine (the last
    batch is partial); training shards are resampled, so any size works there."""
    spec = getattr(datamodule, "val_shards", None)
    if world_size <= 1 or spec is None:
        return
    try:
        urls = expand_shard_spec(spec, check=False)
    except (OSError, ValueError):
        return  # reported with its fix when the loader is built
    if not urls or len(urls) >= world_size or any(is_remote(u) or not os.path.isfile(u) for u in urls):
        return  # whole shards per rank (or not countable here)
    found = count_samples(urls)
    if found < world_size:
        raise WantrainError(
            f"data.val_shards hold {found} sample(s) for {world_size} ranks: every rank needs at least one "
            "validation sample (a rank without one would hang DDP at the end of validation); add validation "
            "clips, use fewer devices, or set data.val_shards=null"
        )

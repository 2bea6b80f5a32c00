"""`python -m wantrain shards {synthetic,from-folder} ...`: write video shards."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from wantrain.data.folder import write_shards_from_folder
from wantrain.data.synthetic import write_synthetic_dataset

log = logging.getLogger(__name__)
ACTIONS = ("synthetic", "from-folder")


def run(cfg: DictConfig, action: str | None) -> None:
    """Write the synthetic set (`synthetic`) or pack a folder of videos (`from-folder`) into shards."""
    if action not in ACTIONS:
        raise ValueError(f"unknown shards action {action!r}; use one of: {', '.join(ACTIONS)}")
    if cfg.get("out") in (None, "", "???"):
        raise ValueError("no output folder; pass out=DIR")
    if action == "synthetic":
        syn = cfg.get("synthetic", {}) or {}
        manifest = write_synthetic_dataset(
            cfg.out,
            num_clips=int(cfg.get("num_clips", 256)),
            num_val_clips=int(cfg.get("num_val_clips", 32)),
            shard_size=int(cfg.get("shard_size", 32)),
            num_frames=int(syn.get("num_frames", 32)),
            size=int(syn.get("size", 128)),
            fps=int(syn.get("fps", 8)),
            gop=int(syn.get("gop", 8)),
            seed=int(cfg.get("seed", 0)),
        )
        log.info("synthetic set in %s: train %s, val %s", cfg.out, manifest["train_pattern"], manifest["val_pattern"])
        print(f"train_shards={cfg.out}/{manifest['train_pattern']}")
        if manifest["val_pattern"]:
            print(f"val_shards={cfg.out}/{manifest['val_pattern']}")
        return
    if cfg.get("in") in (None, "", "???"):
        raise ValueError("no input folder; pass in=DIR (a folder of videos)")
    summary = write_shards_from_folder(
        cfg["in"],
        cfg.out,
        captions_csv=cfg.get("captions"),
        shard_size=int(cfg.get("shard_size", 1000)),
        max_shard_bytes=int(cfg.get("max_shard_bytes", 1 << 30)),
        prefix=str(cfg.get("prefix", "shard")),
        allow_missing_caption=bool(cfg.get("allow_missing_caption", False)),
        min_frames=int(cfg.get("min_frames", 1)),
        progress=bool(cfg.get("progress", True)),
    )
    print(summary.describe())
    if summary.shards:
        prefix = summary.shards[0].rsplit("-", 1)[0]
        print(f"train_shards={cfg.out}/{prefix}-{{00000..{len(summary.shards) - 1:05d}}}.tar")

"""Build Trainer, callbacks and loggers from their config nodes."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from lightning_fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar

from wantrain.ranks import local_rank, process_rank
from wantrain.training.callbacks import ParameterSummary


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` node of a group like `callbacks` or `logger` (null entries are dropped)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]


# DDP strategies and their unused-parameter twins: image steps (T = 1) give the temporal layers no gradient
FIND_UNUSED = {"ddp": "ddp_find_unused_parameters_true", "ddp_spawn": "ddp_spawn_find_unused_parameters_true"}


def build_trainer(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None, **overrides: Any) -> pl.Trainer:
    """A Trainer from `cfg.trainer` with the configured callbacks (plus `extra_callbacks`) and loggers; plain DDP
    becomes DDP that looks for unused parameters when image shards are mixed in (said in one line)."""
    strategy = overrides.get("strategy", cfg.trainer.get("strategy"))
    data = cfg.get("data") or {}
    if data.get("image_shards") and isinstance(strategy, str) and strategy in FIND_UNUSED:
        overrides["strategy"] = FIND_UNUSED[strategy]
        if process_rank()[0] == 0 and local_rank() == 0:  # once per launch (Lightning relaunches ranks)
            print(f"trainer.strategy={FIND_UNUSED[strategy]}: data.image_shards adds image steps (T = 1), which leave "
                  "the UNet's temporal layers without gradient", flush=True)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = [*instantiate_group(cfg.get("callbacks")), *(extra_callbacks or [])]
    if not overrides.get("enable_progress_bar", cfg.trainer.get("enable_progress_bar", True)):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]  # Lightning refuses both
    if not overrides.get("enable_model_summary", cfg.trainer.get("enable_model_summary", True)):
        callbacks = [c for c in callbacks if not isinstance(c, ParameterSummary)]
    if any(isinstance(c, ParameterSummary) for c in callbacks):
        overrides["enable_model_summary"] = False  # ours replaces Lightning's layer table
    if not loggers:  # `logger=none`: LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    plugins = list(instantiate(cfg.trainer.get("plugins")) or [])
    if SLURMEnvironment.detect() and not any(isinstance(p, ClusterEnvironment) for p in plugins):
        # GracefulShutdown owns the requeue: it saves at a batch boundary, Lightning's handler saves mid-step
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers if loggers else False,
        plugins=plugins or None,
        **overrides,
    )

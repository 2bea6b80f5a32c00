"""Build Trainer, callbacks and loggers from their config nodes."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` node of a group like `callbacks` or `logger` (null entries are dropped)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]


def build_trainer(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None, **overrides: Any) -> pl.Trainer:
    """A Trainer from `cfg.trainer` with the configured callbacks (plus `extra_callbacks`) and loggers."""
    loggers = instantiate_group(cfg.get("logger"))
    return instantiate(
        cfg.trainer,
        callbacks=[*instantiate_group(cfg.get("callbacks")), *(extra_callbacks or [])],
        logger=loggers if loggers else False,
        **overrides,
    )

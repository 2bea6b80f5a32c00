"""Small callbacks of wantrain's own (the rest come from Lightning)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class RunConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config in every checkpoint (`checkpoint["wantrain_config"]`), so a checkpoint
    alone is enough to rebuild its model (`sample`, `test`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["wantrain_config"] = self.config


class CheckpointAtEnd(pl.Callback):
    """Saves `last.ckpt` when training ends on a step that the periodic checkpoints did not cover."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        callback = trainer.checkpoint_callback
        if callback is None or trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return
        last = getattr(callback, "last_model_path", "")
        if last and getattr(callback, "_last_global_step_saved", -1) == trainer.global_step:
            return
        trainer.save_checkpoint(f"{callback.dirpath}/last.ckpt")

"""Small callbacks of wantrain's own (the rest come from Lightning)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class RunConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config in every checkpoint (`checkpoint["wantrain_config"]`), so a checkpoint
    alone is enough to rebuild its model (`sample`, `test`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["wantrain_config"] = self.config


class PeriodicCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus `last.ckpt` at the end of training when the run stopped between two
    periodic checkpoints (Lightning only writes it at the end when no `last` was ever written)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and not trainer.fast_dev_run and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)

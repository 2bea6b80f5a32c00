"""Small callbacks of wantrain's own (the rest come from Lightning)."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from pytorch_lightning.utilities import grad_norm

from wantrain.training.lightning_private import last_saved_step, save_last_checkpoint


class RunConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config in every checkpoint (`checkpoint["wantrain_config"]`), so a checkpoint
    alone is enough to rebuild its model (`sample`, `test`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["wantrain_config"] = self.config


class PeriodicCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus `last.ckpt` at the end of training when the run stopped between two
    periodic checkpoints (Lightning only writes it at the end when no `last` was ever written)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and not trainer.fast_dev_run and last_saved_step(self) != trainer.global_step:
            save_last_checkpoint(self, trainer)
        super().on_train_end(trainer, pl_module)


class GradNormMonitor(pl.Callback):
    """Logs the total gradient norm (`train/grad_norm`, before clipping) every `log_every_n_steps` steps."""

    def __init__(self, norm_type: float = 2.0) -> None:
        self.norm_type = norm_type

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:
        if trainer.global_step % max(trainer.log_every_n_steps, 1):
            return
        norms = grad_norm(pl_module, self.norm_type)
        total = norms.get(f"grad_{float(self.norm_type)}_norm_total")
        if total is not None:
            pl_module.log("train/grad_norm", total, on_step=True, on_epoch=False)


class LogLinesProgress(ProgressBar):
    """Plain periodic progress lines for non-interactive output (SLURM logs, CI): step, loss, it/s, ETA."""

    def __init__(self, every_n_steps: int = 50) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._start: float | None = None
        self._start_step = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._start_step = time.monotonic(), trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if not self._enabled or self._start is None or step % self.every_n_steps or not trainer.is_global_zero:
            return
        rate = (step - self._start_step) / max(time.monotonic() - self._start, 1e-9)
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        eta = f" eta {timedelta(seconds=round((total - step) / rate))}" if total and rate > 0 else ""
        metrics = " ".join(f"{k} {v:.4g}" for k, v in self.get_metrics(trainer, pl_module).items()
                           if k != "v_num" and isinstance(v, float))
        print(f"step {step}{'/' + str(total) if total else ''} epoch {trainer.current_epoch} {metrics} "
              f"{rate:.2f} it/s{eta}", flush=True)


def progress_bar(every_n_steps: int = 50, refresh_rate: int = 1) -> ProgressBar:
    """A rich progress bar (loss, it/s, ETA) on an interactive terminal, plain log lines elsewhere."""
    if sys.stdout.isatty():
        return RichProgressBar(refresh_rate=refresh_rate)
    return LogLinesProgress(every_n_steps)

"""What both LightningModules do inside their optimisation step: an EMA of the trained network, and NaN/inf guards.

These sit in the step itself, not in callbacks: the guard must drop the gradients before clipping and the optimizer
(the upsampler's manual optimisation checks G and D in its own `training_step`), and the EMA must move in the step so
the checkpoint a callback saves at the end of that batch holds it (Lightning runs callbacks' `on_train_batch_end`
before the module's). The behaviour around the step (sample videos, export) is in callbacks the modules add.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from wantrain.training.ema import TrainableEMA
from wantrain.training.lightning_private import attached_trainer
from wantrain.training.nonfinite import NonFiniteGuards


class GuardedEMAModule(pl.LightningModule):
    """A LightningModule with `ema` (the EMA of its trained network, saved under `ema.module.`) and `nonfinite` (its
    NaN/inf guards, saved as `checkpoint["nonfinite_steps"]` and logged as `train/nonfinite_*steps`)."""

    def init_ema_and_guards(self, net: nn.Module, ema_decay: float, max_nonfinite_steps: int,
                            guard_metrics: dict[str, str]) -> None:
        """Build the EMA of `net` (its trainable parameters only) and one guard per name in `guard_metrics`."""
        self.ema = TrainableEMA(net, ema_decay)
        self.nonfinite = NonFiniteGuards(max_nonfinite_steps, guard_metrics)  # skips NaN/inf steps, stops after K
        self.last_step_finite = True  # the last guarded step had finite gradients

    def guard_gradients(self, params: list[torch.nn.Parameter], name: str = "", what: str = "") -> bool:
        """Before an optimizer step: True when `params`' gradients are finite on every rank; else they are dropped
        (the step leaves weights and optimizer state untouched) and counted, raising after K in a row."""
        trainer = attached_trainer(self)
        strategy = trainer.strategy if trainer is not None else None
        self.last_step_finite = self.nonfinite[name].check(params, strategy, self.global_step, what)
        return self.last_step_finite

    def log_nonfinite(self) -> None:
        """Log every guard's running total of skipped steps (`train/nonfinite_steps`, ...)."""
        for metric, total in self.nonfinite.totals().items():
            self.log(metric, total, on_step=True, on_epoch=False)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Automatic optimisation: guard the optimizer's parameters (manual optimisation guards in its own step)."""
        if not self.automatic_optimization:
            return
        self.guard_gradients([p for group in optimizer.param_groups for p in group["params"]])
        self.log_nonfinite()

    def configure_model(self) -> None:
        """Parallelism from the strategy (trainer=fsdp2: shards, sequence parallelism, checkpointing, compile),
        applied once; other strategies wrap the module themselves."""
        trainer = attached_trainer(self)
        parallelize = getattr(trainer.strategy, "parallelize", None) if trainer is not None else None
        if parallelize is not None and not getattr(self, "_parallelized", False):
            parallelize(self)
            self._parallelized = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the skipped-step counters across resumes."""
        checkpoint["nonfinite_steps"] = self.nonfinite.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the skipped-step counters (none in checkpoints from before the guard: they start at 0)."""
        self.nonfinite.load_state_dict(checkpoint.get("nonfinite_steps", {}))

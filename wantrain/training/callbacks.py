"""Small callbacks of wantrain's own (the rest come from Lightning)."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from torch import nn
from torch.distributed.tensor import DTensor

from wantrain.inference.checkpoints import ENTRY_HPARAMS, MODEL_ENTRY, model_entry
from wantrain.training.lightning_private import last_saved_step, save_last_checkpoint


class RunConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config (`checkpoint["wantrain_config"]`, for resuming and `test`) and the model entry
    (`checkpoint["wantrain_model"]`: kind, network config, weight prefixes) in every checkpoint, so a checkpoint
    alone is enough to rebuild its model without Lightning (`sample`, `test`, exports)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["wantrain_config"] = self.config
        kind = getattr(pl_module, "saved_kind", None)
        if kind is not None:
            # the hyperparameters `model_config` falls back on, as plain containers (weights_only loading)
            hparams = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig)) else v
                       for k, v in pl_module.hparams.items() if k in ENTRY_HPARAMS}
            checkpoint[MODEL_ENTRY] = model_entry(kind, self.config, hparams, pl_module.weight_prefixes)


class PeriodicCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus `last.ckpt` at the end of training when the run stopped between two
    periodic checkpoints (Lightning only writes it at the end when no `last` was ever written)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and not trainer.fast_dev_run and last_saved_step(self) != trainer.global_step:
            save_last_checkpoint(self, trainer)
        super().on_train_end(trainer, pl_module)


class ExportAtTrainEnd(pl.Callback):
    """At the end of training, on rank 0: `pl_module.export(folder)` (the upsampler's EMA generator as an exported
    stage, loadable by `read_saved` / `sample`). The module adds it in `configure_callbacks()` when `model.export_dir`
    is set."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            pl_module.export(self.folder)


class GradNormMonitor(pl.Callback):
    """Logs the total gradient norm (`train/grad_norm`, before clipping) every `log_every_n_steps` steps."""

    def __init__(self, norm_type: float = 2.0) -> None:
        self.norm_type = norm_type

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:
        if trainer.global_step % max(trainer.log_every_n_steps, 1):
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        total = torch.nn.utils.get_total_norm(grads, self.norm_type)  # FSDP2 shards: a collective over ranks
        if isinstance(total, DTensor):
            total = total.full_tensor()
        pl_module.log("train/grad_norm", total, on_step=True, on_epoch=False)


class ParameterSummary(pl.Callback):
    """A short table of parameter counts at the start of fit, per top-level part of the module (trainable and not
    trained, e.g. the EMA copy or a frozen VGG), plus the frozen encoders kept outside it; replaces Lightning's
    layer table (build_trainer turns that off), whose FLOPs column is always 0 here."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            print(parameter_summary(pl_module), flush=True)


def parameter_summary(module: nn.Module) -> str:
    """Lines `part  trainable  not trained` for each child of `module`, a total, and frozen encoders outside it."""
    from pytorch_lightning.utilities.model_summary import get_human_readable_count as count

    rows = []
    for name, child in module.named_children():
        params = list(child.parameters())
        rows.append((name, sum(p.numel() for p in params if p.requires_grad),
                     sum(p.numel() for p in params if not p.requires_grad)))
    rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows)))
    width = max(len(r[0]) for r in rows)
    lines = [f"{type(module).__name__}: {'part':<{width}}  {'trainable':>9}  {'not trained':>11}"]
    lines += [f"{'':{len(type(module).__name__) + 1}} {n:<{width}}  {count(t).strip():>9}  {count(f).strip():>11}"
              for n, t, f in rows]
    encoders = getattr(module, "encoders", None)
    loaded = [(n, getattr(encoders, n, None)) for n in ("text", "image", "vae")]
    frozen = [f"{n} {count(_frozen_size(net)).strip()}" for n, net in loaded if net is not None]
    if frozen:
        lines.append(f"frozen encoders (outside the module, not in checkpoints): {', '.join(frozen)}")
    return "\n".join(lines)


def _frozen_size(net: nn.Module) -> int:
    """Parameters of a frozen encoder, including the nets a FrozenModule hides from parameters()."""
    nets = [net, *getattr(net, "_frozen", {}).values()]
    return sum(p.numel() for sub in nets for p in sub.parameters())


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

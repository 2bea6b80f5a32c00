"""Every private Lightning API wantrain relies on, in one place (checked against pytorch-lightning 2.6).

pyproject.toml pins `pytorch-lightning<2.7` because of this module; tests/training/test_lightning_private.py fails
first when a Lightning release moves one of these. Nothing else in wantrain reads an underscored Lightning name,
with one exception that is a protocol rather than a call: `data/dataset.py` `ShardLoader._iterator` is what
Lightning's teardown (`pytorch_lightning.utilities.combined_loader._shutdown_workers_and_reset_iterator`) looks
for to stop a loader's worker processes.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import ClusterEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies import Strategy


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The module's Trainer, or None outside a fit (`module.trainer` raises when unattached)."""
    return module._trainer


def cluster_environment(trainer: pl.Trainer) -> ClusterEnvironment | None:
    """The cluster environment the Trainer picked (single-device strategies do not expose it publicly)."""
    return trainer._accelerator_connector.cluster_environment


def ddp_finds_unused_parameters(strategy: Strategy) -> bool:
    """Whether a DDP strategy was built with `find_unused_parameters=True` (DDPStrategy keeps its kwargs private)."""
    return bool(getattr(strategy, "_ddp_kwargs", {"find_unused_parameters": True}).get("find_unused_parameters"))


def last_saved_step(callback: ModelCheckpoint) -> int:
    """The global step of the callback's last write (ModelCheckpoint has no public counter)."""
    return callback._last_global_step_saved


def save_last_checkpoint(callback: ModelCheckpoint, trainer: pl.Trainer) -> None:
    """Write the callback's `last.ckpt` now, keeping its bookkeeping (no public "save last now" API)."""
    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


def wandb_init_kwargs(logger: WandbLogger) -> dict[str, Any]:
    """The (mutable) keyword arguments the logger passes to `wandb.init` (no public accessor)."""
    return logger._wandb_init


def forget_wandb_run(logger: WandbLogger) -> None:
    """Drop the logger's cached wandb run so that the next `.experiment` starts a new one."""
    logger._experiment = None


def precision_choices() -> list[int | str]:
    """Every `trainer.precision` value Lightning accepts (its `_PRECISION_INPUT` type, flattened)."""
    import typing

    from lightning_fabric.connector import _PRECISION_INPUT

    def flat(t: Any) -> list[Any]:
        return [x for a in typing.get_args(t) for x in (flat(a) if typing.get_args(a) else [a])]

    return flat(_PRECISION_INPUT)

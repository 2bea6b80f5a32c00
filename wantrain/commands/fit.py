"""`python -m wantrain fit`: train the configured stage."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from wantrain.commands.failures import user_errors
from wantrain.commands.instantiate import build_trainer
from wantrain.commands.preflight import prepare_run
from wantrain.commands.run_setup import print_run_summary, start_run
from wantrain.training.callbacks import RunConfigInCheckpoint


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Check and build data, model and Trainer (nothing written yet), then start the run and fit, resuming per
    `ckpt_path`."""
    with user_errors():
        run_config = OmegaConf.to_container(cfg, resolve=True)
        ready = prepare_run(cfg, "fit", [RunConfigInCheckpoint(run_config)], build_trainer)  # (tests wrap it)
        run_dir = start_run(cfg)
        for logger in ready.trainer.loggers:
            logger.log_hyperparams(run_config)  # the whole resolved config, not only the module's arguments
        ready.trainer.fit(ready.model, datamodule=ready.datamodule, ckpt_path=ready.ckpt_path)
        print_run_summary(run_dir)

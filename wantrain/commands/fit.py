"""`python -m wantrain fit`: train the configured stage."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from wantrain.commands.failures import user_errors
from wantrain.commands.instantiate import build_trainer
from wantrain.commands.preflight import check_validation_split
from wantrain.commands.run_setup import start_run
from wantrain.training.callbacks import RunConfigInCheckpoint
from wantrain.training.checkpoint_compat import check_checkpoint_fits
from wantrain.training.resume import resolve_ckpt_path


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Build data, model and Trainer from the config and fit, resuming per `ckpt_path`."""
    with user_errors():
        run_dir = start_run(cfg)
        ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), run_dir, cfg.trainer.get("max_steps"))
        datamodule = instantiate(cfg.data)
        model = instantiate(cfg.model)
        if ckpt_path is not None:
            check_checkpoint_fits(ckpt_path, model)  # another stage / architecture: one line, not a key dump
        run_config = OmegaConf.to_container(cfg, resolve=True)
        trainer = build_trainer(cfg, extra_callbacks=[RunConfigInCheckpoint(run_config)])
        check_validation_split(datamodule, trainer.world_size)
        for logger in trainer.loggers:
            logger.log_hyperparams(run_config)  # the whole resolved config, not only the module's arguments
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)

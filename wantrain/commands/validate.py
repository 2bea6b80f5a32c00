"""`python -m wantrain validate ckpt_path=...`: the validation loop of a checkpoint."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from wantrain.commands.failures import user_errors
from wantrain.commands.instantiate import build_trainer
from wantrain.commands.preflight import check_validation_split
from wantrain.commands.run_setup import start_run
from wantrain.errors import WantrainError
from wantrain.training.checkpoint_compat import check_checkpoint_fits
from wantrain.training.resume import resolve_ckpt_path


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Validate the checkpoint named by `ckpt_path` (or the newest in `run_dir` with `auto`)."""
    with user_errors():
        run_dir = start_run(cfg)
        ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), run_dir)
        if ckpt_path is None:
            raise WantrainError(f"no checkpoint to validate in {run_dir}/checkpoints; pass ckpt_path=PATH/TO.ckpt")
        model = instantiate(cfg.model)
        check_checkpoint_fits(ckpt_path, model)
        trainer = build_trainer(cfg)
        datamodule = instantiate(cfg.data)
        check_validation_split(datamodule, trainer.world_size)
        trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path)

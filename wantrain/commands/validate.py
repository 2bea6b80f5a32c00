"""`python -m wantrain validate ckpt_path=...`: the validation loop of a checkpoint."""

from __future__ import annotations

from omegaconf import DictConfig

from wantrain.commands.failures import user_errors
from wantrain.commands.preflight import prepare_run
from wantrain.commands.run_setup import start_run


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Validate the checkpoint named by `ckpt_path` (or the newest in `run_dir` with `auto`), after the preflight."""
    with user_errors():
        ready = prepare_run(cfg, "validate")
        start_run(cfg)
        ready.trainer.validate(ready.model, datamodule=ready.datamodule, ckpt_path=ready.ckpt_path)

"""`python -m wantrain test`: evaluate a checkpoint on a shard set (issue 9)."""

from __future__ import annotations

from omegaconf import DictConfig

from wantrain.errors import WantrainError


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Not available yet: the evaluation metrics land with the `sample`/`test` work."""
    raise WantrainError("'test' is not available yet in this version; use 'validate ckpt_path=...' for the validation loss")

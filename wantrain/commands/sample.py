"""`python -m wantrain sample`: image + prompt to an mp4 (issue 9)."""

from __future__ import annotations

from omegaconf import DictConfig

from wantrain.errors import WantrainError


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Not available yet: validation during `fit` already writes sample videos to run_dir/samples/."""
    raise WantrainError("'sample' is not available yet in this version; `fit` writes sample videos to RUN_DIR/samples/")

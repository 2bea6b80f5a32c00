"""What every launch needs before Hydra composes: config resolvers and a run stamp shared by all ranks."""

from __future__ import annotations

import os
import time

from omegaconf import OmegaConf

RUN_STAMP_ENV = "WANTRAIN_RUN_STAMP"


def auto_precision() -> str:
    """bf16-mixed on a GPU that supports it, else full precision."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def register_resolvers() -> None:
    """Resolvers the config tree uses (idempotent)."""
    if not OmegaConf.has_resolver("wantrain_auto_precision"):
        OmegaConf.register_new_resolver("wantrain_auto_precision", auto_precision)


def prepare_launch() -> None:
    """Fix the run stamp once per launch; DDP ranks relaunched by Lightning inherit it from the environment."""
    register_resolvers()
    os.environ.setdefault(RUN_STAMP_ENV, time.strftime("%Y-%m-%d_%H-%M-%S"))

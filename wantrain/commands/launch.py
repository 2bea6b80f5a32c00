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


def run_stamp() -> str:
    """This launch's stamp; in a local multirun each sweep point gets its own (`STAMP_N`, N = Hydra's job number)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    stamp = os.environ.get(RUN_STAMP_ENV, "local")
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{stamp}_{HydraConfig.get().job.num}"
    return stamp


def register_resolvers() -> None:
    """Resolvers the config tree uses (idempotent)."""
    for name, resolver in (("wantrain_auto_precision", auto_precision), ("wantrain_run_stamp", run_stamp)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def prepare_launch() -> None:
    """Fix the run stamp once per launch; DDP ranks relaunched by Lightning inherit it from the environment."""
    register_resolvers()
    os.environ.setdefault(RUN_STAMP_ENV, time.strftime("%Y-%m-%d_%H-%M-%S"))

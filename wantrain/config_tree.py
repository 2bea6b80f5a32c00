"""The config tree: where it lives (`wantrain.conf` installed, or `conf/` beside the package in a checkout) and the
resolvers its files use."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from omegaconf import OmegaConf

RUN_STAMP_ENV = "WANTRAIN_RUN_STAMP"


def config_dir() -> Path:
    """Absolute path of the config tree, from an installed wheel or a source checkout."""
    try:
        path = Path(str(importlib.resources.files("wantrain.conf")))
    except ModuleNotFoundError:
        path = Path(__file__).resolve().parent.parent / "conf"
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"wantrain's config tree is missing at {path}; reinstall wantrain (pip install -e .)")
    return path


def list_experiments() -> list[str]:
    """Names accepted by `+experiment=NAME` (the files in conf/experiment/)."""
    return sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


def auto_precision() -> str:
    """bf16-mixed on a GPU that supports it, else full precision (`${wantrain_auto_precision:}`)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def run_stamp() -> str:
    """This launch's stamp (`${wantrain_run_stamp:}`); in a local multirun each sweep point gets its own (`STAMP_N`,
    N = Hydra's job number)."""
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

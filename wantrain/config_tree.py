"""Where the config tree lives: `wantrain.conf` installed, or `conf/` beside the package in a checkout."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


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

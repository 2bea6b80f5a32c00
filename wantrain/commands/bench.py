"""`python -m wantrain bench NAME`: run a benchmark, print its table and write it as JSON."""

from __future__ import annotations

import importlib
import importlib.util
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from wantrain.errors import WantrainError


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print benchmark rows as a table (columns are the union of the rows' keys)."""
    import rich
    from rich.table import Table

    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_format(row.get(column, "")) for column in columns))
    rich.print(table)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Run `wantrain.benchmarks.<action>` and save `out_dir/<action>-<time>.json`."""
    torch.manual_seed(cfg.seed)
    if importlib.util.find_spec(f"wantrain.benchmarks.{action}") is None:
        raise WantrainError(f"'bench {action}' is not available yet in this version; try bench data | unet | upsampler")
    module = importlib.import_module(f"wantrain.benchmarks.{action}")
    rows = module.run(cfg.bench)
    print_table(f"wantrain bench {action}", rows)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": action,
        "config": OmegaConf.to_container(cfg.bench, resolve=True),
        "host": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
                 "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                 "threads": torch.get_num_threads()},
        "rows": rows,
    }
    path = out_dir / f"{action}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")

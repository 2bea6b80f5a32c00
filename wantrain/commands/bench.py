"""`python -m wantrain bench NAME`: run a benchmark, print its table and write it as JSON."""

from __future__ import annotations

import importlib
import importlib.util
import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from wantrain.errors import WantrainError


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print benchmark rows as a table (columns are the union of the rows' keys): a rich table on a terminal,
    plain aligned text otherwise (logs, pipes), where rich would squeeze the columns to the default width."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_format(row.get(column, "")) for column in columns] for row in rows]
    if not sys.stdout.isatty():
        print(plain_table(title, columns, cells), flush=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in cells:
        table.add_row(*row)
    Console().print(table)


def plain_table(title: str, columns: list[str], cells: list[list[str]]) -> str:
    """`title`, then the header and the rows, each column as wide as its widest cell."""
    widths = [max(len(line[i]) for line in [columns, *cells]) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in [columns, *cells]]
    return "\n".join([title, *lines])


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run(cfg: DictConfig, action: str | None = None) -> None:
    """Run `wantrain.benchmarks.<action>` and save `out_dir/<action>-<run_name>.json` (runs/bench/ by default)."""
    torch.manual_seed(cfg.seed)
    if importlib.util.find_spec(f"wantrain.benchmarks.{action}") is None:
        raise WantrainError(f"'bench {action}' is not available yet in this version; "
                            "try bench data | unet | dit | upsampler | step | plan")
    module = importlib.import_module(f"wantrain.benchmarks.{action}")
    rows = module.run(cfg.bench)
    # nested values (e.g. bench plan's per-row breakdown) go to the JSON only
    print_table(f"wantrain bench {action}", [{k: v for k, v in row.items() if not isinstance(v, dict)} for row in rows])
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
    path = out_dir / f"{action}-{cfg.run_name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")

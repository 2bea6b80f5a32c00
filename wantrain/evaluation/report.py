"""Evaluation results: a rich table on the terminal and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_metrics(title: str, metrics: dict[str, float], baseline: dict[str, float] | None = None) -> None:
    """Print `metric | value [| baseline]` rows."""
    import rich
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if baseline:
        table.add_column("bicubic", justify="right")
    for name, value in metrics.items():
        row = [name, f"{value:.4g}"]
        if baseline:
            row.append(f"{baseline[name]:.4g}" if name in baseline else "")
        table.add_row(*row)
    rich.print(table)


def write_json(path: str | Path, result: dict[str, Any]) -> Path:
    """Write the result dict as indented JSON (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path

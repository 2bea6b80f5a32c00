"""Evaluation results: a rich table on the terminal and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_metrics(title: str, metrics: dict[str, float], baseline: dict[str, float] | None = None,
                  sources: dict[str, str] | None = None) -> None:
    """Print `metric | value [| baseline] [| weights]` rows; `sources`: the weights behind a metric (or why it was
    skipped: such metrics get a row without a value)."""
    import rich
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if baseline:
        table.add_column("bicubic", justify="right")
    if sources:
        table.add_column("weights")
    skipped = {k: None for k in (sources or {}) if k not in metrics}
    for name, value in {**metrics, **skipped}.items():
        row = [name, "" if value is None else f"{value:.4g}"]
        if baseline:
            row.append(f"{baseline[name]:.4g}" if name in baseline else "")
        if sources:
            row.append(sources.get(name, ""))
        table.add_row(*row)
    rich.print(table)


def write_json(path: str | Path, result: dict[str, Any]) -> Path:
    """Write the result dict as indented JSON (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path

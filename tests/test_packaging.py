"""pyproject.toml declares what wantrain imports and lists every package folder."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement_names() -> set[str]:
    """Distribution names in dependencies and every extra, normalised."""
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {re.split(r"[ <>=!~;\[]", r)[0].lower().replace("_", "-") for r in reqs}


def test_every_imported_package_is_declared() -> None:
    imported: dict[str, str] = {}
    for path in (ROOT / "wantrain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                imported.setdefault(name, str(path.relative_to(ROOT)))
    dists = metadata.packages_distributions()
    declared = _requirement_names()
    missing = []
    for module, where in sorted(imported.items()):
        if module in sys.stdlib_module_names or module in ("wantrain", "conf"):
            continue
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} ({where})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_package_folder_is_listed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "wantrain").rglob("__init__.py")}
    assert found - listed == set()


def test_lightning_is_bounded() -> None:
    """lightning_private.py relies on private APIs of one Lightning minor."""
    (lightning,) = [r for r in PYPROJECT["project"]["dependencies"] if r.startswith("pytorch-lightning")]
    assert "<" in lightning


def test_only_the_bench_command_imports_benchmarks() -> None:
    """benchmarks/ sits above training/ (DESIGN.md layers): nothing below imports it."""
    importers = []
    for path in (ROOT / "wantrain").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("wantrain/benchmarks/") or rel == "wantrain/commands/bench.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m.startswith("wantrain.benchmarks") for m in modules):
                importers.append(rel)
    assert not importers, importers

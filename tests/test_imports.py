"""The import graph of `wantrain/` (read from the source, function-level imports included): no circles, and every
module imports only its own layer and the layers below it (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# DESIGN.md's layers, lowest first; a module may import its own layer and those below it
LAYERS = [
    {"errors", "ranks", "io", "schema"},
    {"nets", "diffusion", "encoders", "losses", "data", "degradations", "parallel"},
    {"inference", "evaluation"},
    {"training"},
    {"config_tree", "config_schema"},  # the conf/ tree, its resolvers and its schema (Hydra)
    {"benchmarks"},
    {"commands", "__main__"},
]
FRAMEWORKS = ("pytorch_lightning", "lightning", "hydra", "omegaconf")  # not below training/


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in (ROOT / "wantrain").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The wantrain modules and the top-level outside packages that `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            found.add(target)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(name, path, modules) if m in modules and m != "wantrain"}
            for name, path in modules.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next((i for i, layer in enumerate(LAYERS) if top in layer), len(LAYERS))


def test_no_import_circles() -> None:
    """No two modules import each other, directly or through others (Tarjan's strongly connected components)."""
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_modules_import_only_their_layer_and_below() -> None:
    graph = _graph()
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                    if m != "wantrain" and _layer(d) > _layer(m))
    assert not upward, f"imports from a higher layer (DESIGN.md): {upward}"
    modules = _modules()
    frameworks = sorted(f"{name} -> {dep}" for name, path in modules.items() if _layer(name) < _layer("x.training")
                        for dep in _imports(name, path, modules) if dep.split(".")[0] in FRAMEWORKS)
    assert not frameworks, f"parts and inference must not import Lightning or Hydra: {frameworks}"


def test_the_graph_sees_function_level_imports(tmp_path) -> None:
    """The walk reads imports inside functions too (a circle hidden there is still a circle)."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from wantrain.data.video import decode_clip\n")
    modules = _modules()
    assert "wantrain.data.video" in _imports("wantrain.x", source, modules)

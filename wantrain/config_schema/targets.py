"""Every `_target_` node of a composed config against the signature of what it instantiates: an unknown key or a
missing argument fails at compose time in one line, before anything is built or written."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from hydra.utils import get_object

from wantrain.schema import OptionError, unknown_key


def target_nodes(value: Any, key: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted key, node) of every mapping with a `_target_` in a plain config tree, outermost first."""
    if isinstance(value, Mapping):
        if isinstance(value.get("_target_"), str):
            yield key, value
        for name, child in value.items():
            yield from target_nodes(child, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for i, child in enumerate(value):
            yield from target_nodes(child, f"{key}[{i}]")


def _parameters(target: Any) -> list[inspect.Parameter] | None:
    """The keyword parameters of a callable (a class: its constructor); None when they cannot be read or it takes
    **kwargs (then any key may be right)."""
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_target(key: str, node: Mapping[str, Any]) -> None:
    """One `_target_` node: importable, no unknown key, every required argument set (unless `_partial_`)."""
    path = node["_target_"]
    try:
        target = get_object(path)
    except Exception as err:  # noqa: BLE001 (an import of the user's target can fail in any way)
        raise OptionError(f"{key}._target_={path} cannot be imported ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); fix the module path") from None
    params = _parameters(target)
    if params is None:
        return
    names = [p.name for p in params]
    where = f"{key}." if key else ""
    for name in node:
        if name.startswith("_") or name in names:
            continue
        raise unknown_key(f"{where}{name}", names, path.rsplit(".", 1)[-1])
    if node.get("_partial_") or node.get("_args_"):
        return
    missing = [p.name for p in params if p.default is p.empty and p.name not in node]
    if missing:
        raise OptionError(f"{key or 'the config'} needs {', '.join(missing)}: set {where}{missing[0]}=VALUE")

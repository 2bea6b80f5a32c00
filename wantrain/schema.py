"""Typed option schemas: dataclass fields that carry a doc and an allowed range, and the check of plain config values
against them that fails in one line naming the key, the value and what is allowed.

Hand-written rather than OmegaConf structured configs: OmegaConf 2.3 refuses Union and Literal fields, which options
such as `data.fps` (a number, a list or null), `data.resolution` (an int or [H, W]) and every choice need.
"""

from __future__ import annotations

import dataclasses
import difflib
import keyword
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wantrain.errors import WantrainError

HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


class OptionError(WantrainError, ValueError):
    """A config value of the wrong type, out of its range, or an unknown key."""


def option(default: Any = dataclasses.MISSING, doc: str = "", *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, choices: Sequence[Any] | Callable[[], Sequence[Any]] |
           None = None, pattern: tuple[str, str] | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its doc (help pages) and its bounds / choices (checked for every number or string in
    the value, so a [lo, hi] range is bounded element-wise); `pattern` is (regex, its wording) for strings that
    choices cannot list, e.g. config_schema/commands.py's DEVICE (auto, cpu, cuda:N, ...)."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "pattern": pattern}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class _Borrowed(Mapping[str, Any]):
    """Field metadata read from another schema's field on first use (see `borrowed`)."""

    def __init__(self, source: type | Callable[[], type], name: str, doc: str) -> None:
        self._source, self._name, self._doc = source, name, doc
        self._meta: dict[str, Any] | None = None

    def _resolved(self) -> dict[str, Any]:
        if self._meta is None:
            schema = self._source if isinstance(self._source, type) else self._source()
            field = next(f for f in dataclasses.fields(schema) if f.name == self._name)
            self._meta = {**field.metadata, "doc": "; ".join(d for d in (self._doc, field.metadata.get("doc")) if d)}
        return self._meta

    def __getitem__(self, key: str) -> Any:
        if key == "lazy":  # answered without importing the source
            return not isinstance(self._source, type)
        if key == "own_doc":
            return self._doc
        return self._resolved()[key]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self._resolved())

    def __len__(self) -> int:
        return len(self._resolved())


def borrowed(source: type | Callable[[], type], name: str, doc: str = "", default: Any = None) -> Any:
    """A field that is the same option as field `name` of another schema (one place per idea): its doc (after this
    field's own `doc`) and its bounds are that field's. A callable `source` is imported on first use only, so a
    schema can borrow from a module that imports torch and still be read cheaply (`doc_of(..., resolve=False)`)."""
    return dataclasses.field(default=default, metadata=_Borrowed(source, name, doc))


def doc_of(field: dataclasses.Field, resolve: bool = True) -> str:
    """A field's help text: its doc, then its range or choices; `resolve=False` gives a field borrowed from a lazily
    imported schema its own doc only (nothing is imported)."""
    meta = field.metadata
    if not resolve and meta.get("lazy"):
        return str(meta.get("own_doc", ""))
    parts = [meta.get("doc", "")]
    bounds = _bounds_text(meta)
    if bounds:
        parts.append(f"({bounds})")
    return " ".join(p for p in parts if p)


def _choices(meta: Mapping[str, Any]) -> list[Any] | None:
    choices = meta.get("choices")
    return list(choices() if callable(choices) else choices) if choices is not None else None


def _choices_text(choices: list[Any]) -> str:
    words = (str(c).lower() if isinstance(c, bool) else str(c) for c in choices)  # YAML's true, false
    return ", ".join(dict.fromkeys(words))  # 16 and "16" read alike


def _bounds_text(meta: Mapping[str, Any]) -> str:
    choices = _choices(meta)
    if choices is not None:
        return "one of " + _choices_text(choices)
    numbers = _numbers_text(meta)
    pattern = meta.get("pattern")
    if pattern:
        return pattern[1] + (f" or a number {numbers}" if numbers else "")
    return numbers


def _numbers_text(meta: Mapping[str, Any]) -> str:
    ops = [(">=", meta.get("ge")), (">", meta.get("gt")), ("<=", meta.get("le")), ("<", meta.get("lt"))]
    return " and ".join(f"{op} {_num(bound)}" for op, bound in ops if bound is not None)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _type_name(annotation: Any) -> str:
    """`int`, `a number`, `[int, int]`, ... for messages."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is float:
        return "a number"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, Sequence):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(_type_name(a).removeprefix("a ") for a in args) + "]"
        return f"a list of {_type_name(args[0]) if args else 'values'}"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a plain value (from YAML or the command line) has the annotated type (shallow for containers' items
    only as far as their annotation says)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return isinstance(value, Mapping)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping):
        return isinstance(value, Mapping) and (not args or all(_matches(v, args[1]) for v in value.values()))
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _scalars(v)]
    return [] if isinstance(value, Mapping) or value is None else [value]


def _check_bounds(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    choices = _choices(meta)
    for scalar in _scalars(value):
        if choices is not None:
            if scalar not in choices:
                close = difflib.get_close_matches(str(scalar), [str(c) for c in choices], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise OptionError(f"{key}={_shown(value)}: not allowed{hint}; use {_bounds_text(meta)}")
            continue
        pattern = meta.get("pattern")
        if pattern and isinstance(scalar, str) and not re.fullmatch(pattern[0], scalar):
            raise OptionError(f"{key}={_shown(value)}: not allowed; use {_bounds_text(meta)}")
        if isinstance(scalar, bool) or not isinstance(scalar, (int, float)):
            continue
        for bound, ok in ((meta.get("ge"), lambda v, b: v >= b), (meta.get("gt"), lambda v, b: v > b),
                          (meta.get("le"), lambda v, b: v <= b), (meta.get("lt"), lambda v, b: v < b)):
            if bound is not None and not ok(scalar, bound):
                raise OptionError(f"{key}={_shown(value)}: out of range, use a value {_numbers_text(meta)}"
                                  f"{' - ' + meta['doc'] if meta.get('doc') else ''}")


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).replace("'", "")


def check_value(key: str, value: Any, annotation: Any, meta: Mapping[str, Any] | None = None) -> None:
    """Check one value against its annotation and its field's bounds; a dataclass annotation recurses."""
    meta = meta or {}
    if isinstance(value, str) and (value == "???" or value.startswith("${")):
        return  # a mandatory value not set yet, or an interpolation resolved later: checked where it is read
    if not _matches(value, annotation):
        doc = f" - {meta['doc']}" if meta.get("doc") else ""
        raise OptionError(f"{key}={_shown(value)}: expected {_type_name(annotation)}{doc}")
    nested = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type)
              and dataclasses.is_dataclass(a)]
    if nested and isinstance(value, Mapping):
        check_options(key, value, nested[0])
    _check_bounds(key, value, meta)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def key_of(field: dataclasses.Field) -> str:
    """The config key of a field: its name, less the trailing `_` of a Python keyword (field `in_` is key `in`)."""
    name = field.name[:-1] if field.name.endswith("_") else field.name
    return name if keyword.iskeyword(name) else field.name


def check_options(key: str, values: Mapping[str, Any], schema: type, open_keys: bool = False) -> None:
    """Check a mapping against a dataclass schema: unknown keys (unless `open_keys`), types, bounds."""
    hints = typing.get_type_hints(schema)
    fields = {key_of(f): f for f in dataclasses.fields(schema)}
    for name, value in values.items():
        if name in HYDRA_KEYS:
            continue
        field = fields.get(name)
        if field is None:
            if open_keys:
                continue
            raise unknown_key(_join(key, name), list(fields), key or "the config")
        check_value(_join(key, name), value, hints[field.name], field.metadata)


def unknown_key(key: str, known: Sequence[str], owner: str) -> OptionError:
    """The one-line error for a key nobody takes: the closest known name, and all of them."""
    parent, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    return OptionError(f"unknown config key {key}: remove it or fix its spelling{hint}; {owner} takes: "
                       f"{', '.join(known)}")


def check_instance(instance: Any, key: str) -> None:
    """Check a dataclass instance's own fields (for `__post_init__`: the same rules in Python as on the CLI)."""
    check_options(key, {key_of(f): getattr(instance, f.name) for f in dataclasses.fields(instance)}, type(instance))

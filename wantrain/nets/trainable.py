"""Trainable groups: choose the parameters a run trains by module-name patterns; everything else is frozen.

A pattern is a word (`temporal`, `fusion`, `lora`, `cross_attention`) that matches a parameter when one of the dotted
components of its name is the word or starts with `word_` (`lora` matches `...to_q.lora_A.default.weight`), or a
glob with `*`/`?` matched against the whole name (`unet.up.*`). A pattern `-word` excludes what it matches
(`[-temporal]`: everything but the temporal layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn


def name_matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether the parameter (or module) name `name` matches any of `patterns` (words or globs)."""
    parts = name.split(".")
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            if fnmatchcase(name, pattern):
                return True
        elif any(part == pattern or part.startswith(pattern + "_") for part in parts):
            return True
    return False


def set_trainable(net: nn.Module, patterns: Sequence[str] | None) -> tuple[int, int]:
    """Train the parameters of `net` whose names match `patterns` (None: all of them), freeze the rest;
    returns (trainable, total) parameter counts. Raises ValueError naming a pattern that matches nothing."""
    params = list(net.named_parameters())
    if patterns is None:
        selected = {name for name, _ in params}
    else:
        patterns = [str(p) for p in patterns]
        unused = [p for p in patterns if not any(name_matches(name, [p.removeprefix("-")]) for name, _ in params)]
        if unused:
            groups = sorted({name.split(".")[0] for name, _ in params})
            raise ValueError(f"model.trainable patterns {unused} match no parameter; use module-name words such as "
                             f"temporal, fusion, lora, cross_attention or globs over names under {groups}")
        keep = [p for p in patterns if not p.startswith("-")]
        drop = [p[1:] for p in patterns if p.startswith("-")]
        selected = {name for name, _ in params
                    if (not keep or name_matches(name, keep)) and not name_matches(name, drop)}
    for name, p in params:
        p.requires_grad_(name in selected)
    return sum(p.numel() for n, p in params if n in selected), sum(p.numel() for _, p in params)

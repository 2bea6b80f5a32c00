"""Pairing a source state dict with a network's tensors by name, and the report of what fitted (`init_from`, released
model folders)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from wantrain.nets.trainable import name_matches

ADAPTER_PARTS = (".lora_A.", ".lora_B.", ".lora_embedding_", ".lora_magnitude_vector.")


@dataclass
class InitReport:
    """What was loaded into which network, and what did not fit."""

    source: str
    weights: str  # "ema" | "raw" | "file" | "diffusers"
    net: str
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)  # kept at their fresh init: LoRA adapters and init_fresh
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # name, source shape, model shape

    def problems(self) -> str:
        """'' when the source fits exactly, else a short description of what does not."""
        parts = [f"{len(self.missing)} missing (e.g. {self.missing[0]})" if self.missing else "",
                 f"{len(self.unexpected)} unexpected (e.g. {self.unexpected[0]})" if self.unexpected else "",
                 "{} shape-mismatched (e.g. {} is {} in the source, {} here)".format(len(self.mismatched),
                                                                                    *self.mismatched[0])
                 if self.mismatched else ""]
        return "; ".join(p for p in parts if p)

    def text(self, show: int = 5) -> str:
        """The report printed at the start of `fit`: counts, then up to `show` names per kind of problem."""
        lines = [f"init_from {self.source} ({self.weights} weights) -> {self.net}: loaded {len(self.loaded)}, "
                 f"kept fresh {len(self.fresh)}, missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
                 f"shape-mismatched {len(self.mismatched)}"]
        for title, names in (("missing (fresh init)", self.missing), ("unexpected (ignored)", self.unexpected),
                             ("shape-mismatched (fresh init)", [f"{n} {tuple(a)} vs {tuple(b)}"
                                                                for n, a, b in self.mismatched])):
            if names:
                more = f" ... (+{len(names) - show})" if len(names) > show else ""
                lines.append(f"  {title}: {', '.join(names[:show])}{more}")
        return "\n".join(lines)

    def merge(self, other: InitReport) -> None:
        """Add a partial report (one shard of a sharded folder) to this one."""
        self.loaded += other.loaded
        self.fresh += other.fresh
        self.mismatched += other.mismatched
        self.unexpected += other.unexpected


def match_state(net: nn.Module, source: dict[str, torch.Tensor], fresh: Sequence[str] = (),
                partial: bool = False) -> tuple[dict[str, torch.Tensor], InitReport]:
    """Pair the source's tensors with `net`'s by name (across LoRA's `base_layer`); -> (what to load, report).
    `partial`: the source is one shard of several, so the net's tensors it lacks are not reported missing."""
    report = InitReport("", "", type(net).__name__)
    remaining = {k.replace(".base_layer.", "."): v for k, v in source.items()}
    load: dict[str, torch.Tensor] = {}
    for key, value in net.state_dict().items():
        plain = key.replace(".base_layer.", ".")
        if any(part in key for part in ADAPTER_PARTS) or (fresh and name_matches(plain, fresh)):
            report.fresh.append(key)
            remaining.pop(plain, None)
        elif plain not in remaining:
            if not partial:
                report.missing.append(key)
        elif tuple(remaining[plain].shape) != tuple(value.shape):
            report.mismatched.append((key, tuple(remaining.pop(plain).shape), tuple(value.shape)))
        else:
            load[key] = remaining.pop(plain)
            report.loaded.append(key)
    report.unexpected = sorted(remaining)
    return load, report

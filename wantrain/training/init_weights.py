"""`init_from`: start a run from weights only (fresh optimizer, step 0): key mapping, shape checks, a report.

The source is a `.ckpt` written by `fit`, a run folder (its checkpoints/last.ckpt), an exported model folder, or a
`.safetensors` state dict. Its EMA or raw weights (`init_weights`) go into the trained network of the run's module
(`model` of the diffusion stage, `generator` of an upsampler stage) and its EMA copy. Names map across LoRA
(`to_q.weight` -> `to_q.base_layer.weight`; adapters start fresh), and `init_fresh` patterns keep parts at their
fresh init (image->video inflation: `[temporal]` keeps the temporal layers at identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import read_saved
from wantrain.io.weights import load_safetensors
from wantrain.nets.trainable import name_matches

ADAPTER_PARTS = (".lora_A.", ".lora_B.", ".lora_embedding_", ".lora_magnitude_vector.")


@dataclass
class InitReport:
    """What `init_from` loaded into which network, and what did not fit."""

    source: str
    weights: str  # "ema" | "raw" | "file"
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


def _strip(state: dict[str, torch.Tensor], prefixes: Sequence[str]) -> dict[str, torch.Tensor]:
    """The entries under the first prefix any key has (e.g. `ema.module.`), prefix removed; else `state` as is."""
    for prefix in prefixes:
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            return sub
    return state


def read_init_state(path: str | Path, kind: str, use_ema: bool, prefixes: dict[str, str],
                    ) -> tuple[dict[str, torch.Tensor], str]:
    """The source's state dict of the trained network (`kind`'s keys), and which weights it holds; a bare
    .safetensors state dict may carry the module's `prefixes` ({"ema": ..., "raw": ...})."""
    p = Path(str(path)).expanduser()
    if p.suffix == ".safetensors":
        state = load_safetensors(p, "init_from file", "pass a .ckpt, a run folder, an export or a .safetensors file")
        order = ("ema", "raw") if use_ema else ("raw", "ema")
        return _strip(state, [prefixes[w] for w in order]), "file"
    saved = read_saved(p, "init_from", use_ema)
    if saved.kind != kind:
        raise WantrainError(f"init_from={path} holds a {saved.kind} model but this run trains a {kind} model: "
                            "pick a checkpoint of the same stage")
    return saved.state, saved.weights_kind


def match_state(net: nn.Module, source: dict[str, torch.Tensor], fresh: Sequence[str] = ()) -> tuple[
        dict[str, torch.Tensor], InitReport]:
    """Pair the source's tensors with `net`'s by name (across LoRA's `base_layer`); -> (what to load, report)."""
    report = InitReport("", "", type(net).__name__)
    remaining = {k.replace(".base_layer.", "."): v for k, v in source.items()}
    load: dict[str, torch.Tensor] = {}
    for key, value in net.state_dict().items():
        plain = key.replace(".base_layer.", ".")
        if any(part in key for part in ADAPTER_PARTS) or (fresh and name_matches(plain, fresh)):
            report.fresh.append(key)
            remaining.pop(plain, None)
        elif plain not in remaining:
            report.missing.append(key)
        elif tuple(remaining[plain].shape) != tuple(value.shape):
            report.mismatched.append((key, tuple(remaining.pop(plain).shape), tuple(value.shape)))
        else:
            load[key] = remaining.pop(plain)
            report.loaded.append(key)
    report.unexpected = sorted(remaining)
    return load, report


def init_weights(module: nn.Module, path: str | Path, use_ema: bool = True, strict: bool = False,
                 fresh: Sequence[str] | None = None) -> InitReport:
    """Load `path`'s weights into the module's trained network and its EMA copy; raise a one-line WantrainError
    on any missing / unexpected / shape-mismatched tensor when `strict` (else report them)."""
    attr, kind = getattr(module, "trained_net", None), getattr(module, "saved_kind", None)
    if attr is None or kind is None:
        raise WantrainError(f"init_from works for wantrain's training modules, not {type(module).__name__}")
    net = getattr(module, attr)
    source, weights = read_init_state(path, kind, use_ema, module.weight_prefixes)
    load, report = match_state(net, source, [str(f) for f in fresh or []])
    report.source, report.weights, report.net = str(path), weights, attr
    if not report.loaded:
        raise WantrainError(f"init_from={path}: no tensor of it fits this {kind} model ({report.problems()}); "
                            "pass weights of the same network")
    if strict and report.problems():
        raise WantrainError(f"init_from={path} does not fit this model exactly (init_strict=true): "
                            f"{report.problems()}; fix the model config or set init_strict=false to load what fits")
    with torch.no_grad():
        state = net.state_dict()
        for key, value in load.items():
            state[key].copy_(value.to(state[key].dtype))
        ema = getattr(module, "ema", None)
        if ema is not None:  # the EMA starts from the loaded weights
            ema.module.load_state_dict(net.state_dict())
            ema.n_averaged.zero_()
    return report

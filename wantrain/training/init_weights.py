"""`init_from`: start a run from weights only (fresh optimizer, step 0): key mapping, shape checks, a report.

The source is a `.ckpt` written by `fit`, a run folder (its checkpoints/last.ckpt), an exported model folder, or a
`.safetensors` state dict. Its EMA or raw weights (`init_weights`) go into the trained network of the run's module
(`model` of the diffusion stage, `generator` of an upsampler stage) and its EMA copy. Names map across LoRA
(`to_q.weight` -> `to_q.base_layer.weight`; adapters start fresh), and `init_fresh` patterns keep parts at their
fresh init (image->video inflation: `[temporal]` keeps the temporal layers at identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import read_saved
from wantrain.io.weights import load_safetensors
from wantrain.nets.state_match import InitReport, match_state


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

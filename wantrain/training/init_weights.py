"""`init_from`: start a run from weights only (fresh optimizer, step 0): key mapping, shape checks, a report.

The source is a `.ckpt` written by `fit`, a run folder (its checkpoints/last.ckpt), an exported model folder, a
`.safetensors` state dict, or a diffusers folder of released weights (the DiT backbone's, e.g. Wan2.1). Its EMA or
raw weights (`init_weights`) go into the trained network of the run's module (`model` of the diffusion stage,
`generator` of an upsampler stage) and its EMA copy. Names map across LoRA (`to_q.weight` ->
`to_q.base_layer.weight`; adapters start fresh), and `init_fresh` patterns keep parts at their fresh init
(image->video inflation: `[temporal]` keeps the temporal layers at identity).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import read_saved
from wantrain.io.weights import load_safetensors
from wantrain.nets.pretrained import model_folder, weight_shards
from wantrain.nets.state_match import InitReport, match_state
from wantrain.nets.wan_lora import merge_wan_lora, read_wan_lora


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
    if is_released_folder(path):
        return init_released(module, path, strict, fresh)
    net = getattr(module, attr)
    source, weights = read_init_state(path, kind, use_ema, module.weight_prefixes)
    load, report = match_state(net, source, [str(f) for f in fresh or []])
    report.source, report.weights, report.net = str(path), weights, attr
    _check(report, path, kind, strict)
    with torch.no_grad():
        state = net.state_dict()
        for key, value in load.items():
            state[key].copy_(value.to(state[key].dtype))
    _restart_ema(module)
    return report


def _check(report: InitReport, path: str | Path, kind: str, strict: bool) -> None:
    """One line when nothing fits, or (init_strict) anything does not."""
    if not report.loaded:
        raise WantrainError(f"init_from={path}: no tensor of it fits this {kind} model ({report.problems()}); "
                            "pass weights of the same network")
    if strict and report.problems():
        raise WantrainError(f"init_from={path} does not fit this model exactly (init_strict=true): "
                            f"{report.problems()}; fix the model config or set init_strict=false to load what fits")


def _restart_ema(module: nn.Module) -> None:
    """The EMA starts from the loaded weights."""
    ema = getattr(module, "ema", None)
    if ema is not None:
        with torch.no_grad():
            ema.module.load_state_dict(getattr(module, module.trained_net).state_dict())
            ema.n_averaged.zero_()


def merge_lora_files(module: nn.Module, paths: Sequence[str | Path]) -> list[str]:
    """`init_lora`: Wan LoRA files (diffusers, ComfyUI / original Wan, musubi-tuner or DiffSynth-Studio keys) merged
    into the starting weights of the module's Wan backbone, then its EMA copy restarted; -> one line per file."""
    released = getattr(getattr(module, "denoiser", None), "transformer", None)
    if released is None:
        raise WantrainError("init_lora merges Wan LoRA files into a Wan backbone (model.net); this model has none: "
                            "for a UNet LoRA file use `sample lora=FILE`")
    lines = []
    for path in paths:
        try:
            layers = merge_wan_lora(released, read_wan_lora(path))
        except ValueError as err:
            raise WantrainError(f"init_lora={path}: {err}") from None
        lines.append(f"init_lora {path}: merged into {layers} linear layers of the transformer")
    _restart_ema(module)
    return lines


def is_released_folder(path: str | Path) -> bool:
    """Whether `path` is a diffusers model or pipeline folder (released weights as the Hub publishes them)."""
    p = Path(str(path)).expanduser()
    if not p.is_dir():
        return False
    if (p / "model_index.json").is_file() or (p / "transformer" / "config.json").is_file():
        return True
    config = p / "config.json"
    return config.is_file() and "_diffusers_version" in json.loads(config.read_text())


def init_released(module: nn.Module, path: str | Path, strict: bool = False,
                  fresh: Sequence[str] | None = None) -> InitReport:
    """Released weights (a diffusers folder) into the module's DiT backbone and its EMA copy, shard by shard
    (never a second full copy in memory); when the backbone was built from that very folder
    (`model.net.path: ${init_from}`), its load report stands and nothing is read twice."""
    denoiser = getattr(module, "denoiser", None)
    released = getattr(denoiser, "transformer", None)
    if released is None:
        raise WantrainError(f"init_from={path} is a diffusers folder: it initialises a DiT backbone (model.net, e.g. "
                            "+experiment=wan_tiny_i2v), not this model; pass a wantrain .ckpt, run folder or export")
    folder = model_folder(path, getattr(denoiser, "subfolder", "transformer"))
    built = getattr(denoiser, "load_report", None)
    if built is not None and Path(built.source).resolve() == folder.resolve() and not fresh:
        _check(built, path, "diffusion", strict)
        return built
    report = InitReport(str(folder), "diffusers", "transformer")
    with torch.no_grad():
        state = released.state_dict()
        for shard in weight_shards(folder):
            load, part = match_state(released, load_safetensors(shard, "diffusers weights file"),
                                     [str(f) for f in fresh or []], partial=True)
            for key, value in load.items():
                state[key].copy_(value.to(state[key].dtype))
            report.merge(part)
    report.fresh = sorted(set(report.fresh))
    report.missing = sorted(set(state) - set(report.loaded) - set(report.fresh))
    _check(report, path, "diffusion", strict)
    _restart_ema(module)
    return report

"""Read a trained model from a Lightning checkpoint or an exported folder, without Lightning: config + one state dict.

An exported model is a folder `config.json` + `model.safetensors`; `sample export=DIR` writes one per model under
an export root (`DIR/base/`, `DIR/sr_stage1/`, ... listed in `DIR/wantrain_export.json`), and `fit` of an upsampler
writes its stage to `run_dir/export/sr_stageN/` in the same format.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wantrain.diffusion.model import VideoDiffusion
from wantrain.errors import WantrainError
from wantrain.io.weights import load_safetensors, load_torch_file
from wantrain.nets.freeze import freeze
from wantrain.nets.lora import add_lora, load_lora_state, lora_settings, lora_state_dict, merge_lora, read_lora

DIFFUSION, UPSAMPLER = "diffusion", "upsampler"
# the self-describing model entry `fit` writes into every checkpoint (`model_entry`): inference reads only it
MODEL_ENTRY, ENTRY_FORMAT = "wantrain_model", 1
ENTRY_HPARAMS = ("sampling", "timestep_buckets", "stage", "base_size", "validation")  # what model_config reads
EXPORT_CONFIG = "config.json"  # in every exported model folder
EXPORT_WEIGHTS = "model.safetensors"  # the model's one state dict, beside config.json
EXPORT_INDEX = "wantrain_export.json"  # in an export root holding a base model and its upsampler stages
# Checkpoints written before the model entry (format 0) are read from their run config: the module class path
# gives the kind, and the weights sit under these state-dict prefixes (EMA copy, raw weights).
LEGACY_KINDS = {"wantrain.training.video_diffusion.VideoDiffusionModule": DIFFUSION,
                "wantrain.training.upsampler.UpsamplerModule": UPSAMPLER}
LEGACY_WEIGHTS = {DIFFUSION: {"ema": "ema.module.", "raw": "model."},
                  UPSAMPLER: {"ema": "ema.module.", "raw": "generator."}}


@dataclass
class SavedModel:
    """One trained model as read from disk: kind, plain config, ONE state dict, where it came from.

    `state` is the `VideoDiffusion` state dict (`unet.*`, `fusion.*`) of a diffusion model, the `UpsampleStage`
    state dict of an upsampler stage.
    """

    kind: str  # "diffusion" | "upsampler"
    config: dict[str, Any]  # network config nodes + what inference needs (see `model_config`)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    source: str = ""
    weights_kind: str = "ema"  # "ema" | "raw"
    run: dict[str, Any] | None = None  # the whole resolved run config (checkpoints only)
    # a LoRA fine-tune: {"settings": rank/alpha/dropout/targets, "state": the adapters alone (peft names)};
    # `state` above then holds the merged weights
    lora: dict[str, Any] | None = None


def build(node: dict[str, Any], **overrides: Any) -> Any:
    """Call a config node's `_target_` (a wantrain class) with its keyword arguments (no Hydra needed)."""
    target = node.get("_target_", "")
    if not isinstance(target, str) or not target.startswith("wantrain."):
        raise WantrainError(f"config node target {target!r} is not a wantrain class; the file is not a wantrain model")
    module_name, _, name = target.rpartition(".")
    obj = getattr(importlib.import_module(module_name), name)
    kwargs = {k: v for k, v in node.items() if not k.startswith("_")}
    return obj(**{**kwargs, **overrides})


def build_diffusion(config: dict[str, Any]) -> VideoDiffusion:
    """An untrained `VideoDiffusion` from a saved model's config nodes (unet + fusion, or net; schedule)."""
    if config.get("net"):
        return VideoDiffusion(None, None, build(config["schedule"]), int(config.get("timestep_buckets", 4)),
                              net=build(config["net"]))
    return VideoDiffusion(build(config["unet"]), build(config["fusion"]), build(config["schedule"]),
                          int(config.get("timestep_buckets", 4)))


def portable_net(node: dict[str, Any] | None) -> dict[str, Any] | None:
    """A backbone node that rebuilds without its source folder: `path` (a diffusers folder, read at training
    start) replaced by the architecture in its config.json, so checkpoints and exports are self-contained."""
    if not node or not node.get("path"):
        return node
    from wantrain.nets.pretrained import read_config

    return {**node, "path": None, "config": read_config(node["path"], node.get("subfolder") or "transformer")}


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Load `state` into `net` strictly (one-line error when it does not fit) and freeze it."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WantrainError(f"{what}: the weights do not fit the configured network "
                            f"({str(err).splitlines()[0][:200]})") from None
    return freeze(net)


def load_net(node: dict[str, Any], state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Build a network from its config node and load its weights strictly, frozen."""
    return load_weights(build(node), state, what)


def resolve_path(path: str | Path, what: str) -> Path:
    """A checkpoint file, an exported model folder, or a run folder (-> its checkpoints/last.ckpt)."""
    p = Path(path).expanduser()
    if p.is_dir() and not (p / EXPORT_CONFIG).is_file() and not (p / EXPORT_INDEX).is_file():
        last = p / "checkpoints" / "last.ckpt"
        if last.is_file():
            return last
        raise WantrainError(f"{what}={path} is a folder with neither {EXPORT_CONFIG} (an exported model) nor "
                            "checkpoints/last.ckpt (a run); pass a .ckpt file or an exported folder")
    if not p.exists():
        raise WantrainError(f"{what}={path}: no such file or folder")
    return p


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix`, with the prefix taken off."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _size(value: Any) -> list[int]:
    """An int or (h, w) resolution -> [h, w] ([] when unset)."""
    if value is None:
        return []
    return [int(value)] * 2 if isinstance(value, int) else [int(v) for v in value]


def upsampler_config(generator: dict[str, Any], stage: int, lr_size: Sequence[int],
                     validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config of upsampler stage N: its generator node, N (`sr_stageN`) and the input size it was trained on."""
    return {"kind": UPSAMPLER, "generator": dict(generator), "stage": int(stage),
            "lr_size": [int(v) for v in lr_size], "validation": dict(validation or {})}


def model_config(kind: str, run: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """What inference needs from a run config (`wantrain_config`): network nodes, encoders, sizes, sampling."""
    model, data = run.get("model", {}), run.get("data", {}) or {}
    size = _size(data.get("resolution"))
    if kind == DIFFUSION:
        missing = [k for k in (("net",) if model.get("net") else ("unet", "fusion")) + ("schedule",)
                   if k not in model]
        if missing:
            raise WantrainError(f"the checkpoint's config lacks model.{missing[0]}; "
                                "it was not written by `wantrain fit`")
        objective = model.get("objective", "ddpm")
        return {
            "kind": DIFFUSION, "unet": model.get("unet"), "fusion": model.get("fusion"),
            "net": portable_net(model.get("net")),
            "schedule": model["flow"] if objective == "flow" else model["schedule"], "objective": objective,
            "space": model.get("space", "pixel"), "vae": model.get("vae") if model.get("space") == "latent" else None,
            "text_encoder": model.get("text_encoder"), "image_encoder": model.get("image_encoder"),
            "sampling": dict(model.get("sampling") or hparams.get("sampling") or {}),
            "timestep_buckets": int(model.get("timestep_buckets", hparams.get("timestep_buckets", 4))),
            "num_frames": int(data.get("num_frames", 16)), "resolution": size,
        }
    stage = int(model.get("stage", hparams.get("stage", 1)))
    base = model.get("base_size", hparams.get("base_size"))
    if size:  # data.resolution is the stage's HR size
        lr_size = [v // 2 for v in size]
    elif base:
        lr_size = [int(base) * 2 ** (stage - 1)] * 2
    else:
        raise WantrainError("the upsampler checkpoint's config has neither data.resolution nor model.base_size")
    return upsampler_config(model["generator"], stage, lr_size, model.get("validation") or hparams.get("validation"))


def model_entry(kind: str, run: dict[str, Any], hparams: dict[str, Any], weights: dict[str, str]) -> dict[str, Any]:
    """A checkpoint's self-describing model entry (format 1): the kind, the config inference rebuilds the network
    from (`model_config`), the state-dict prefix of each set of weights ({"ema": ..., "raw": ...}), LoRA settings."""
    lora = dict((run.get("model") or {}).get("lora") or {}) if kind == DIFFUSION else {}
    return {"format": ENTRY_FORMAT, "kind": kind, "config": model_config(kind, run, hparams),
            "weights": dict(weights), "lora": lora if lora.get("rank") is not None else None}


def _legacy_entry(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The model entry of a checkpoint written before entries existed (format 0), from its run config."""
    run = data.get("wantrain_config")
    if not isinstance(run, dict) or "model" not in run:
        raise WantrainError(f"{path} has neither a {MODEL_ENTRY} entry nor a wantrain_config (what `wantrain fit` "
                            "stores in checkpoints); it cannot be rebuilt without Lightning")
    target = run["model"].get("_target_", "")
    kind = LEGACY_KINDS.get(target)
    if kind is None:
        raise WantrainError(f"{path} holds a {target!r} model; sample/test know {', '.join(LEGACY_KINDS)}")
    entry = model_entry(kind, run, data.get("hyper_parameters") or {}, LEGACY_WEIGHTS[kind])
    return {**entry, "format": 0}


def read_checkpoint(path: Path, use_ema: bool = True) -> SavedModel:
    """A Lightning .ckpt written by `wantrain fit` (weights_only load) -> SavedModel, rebuilt from its model entry."""
    data = load_torch_file(path, "checkpoint", "pass a .ckpt written by `wantrain fit` or an exported folder")
    if not isinstance(data, dict) or "state_dict" not in data:
        raise WantrainError(f"{path} is not a Lightning checkpoint (no state_dict); pass a .ckpt written by "
                            "`wantrain fit` or a folder written by `wantrain sample export=DIR`")
    entry = data.get(MODEL_ENTRY)
    if entry is None:
        entry = _legacy_entry(data, path)
    elif not isinstance(entry, dict) or int(entry.get("format", -1)) not in range(1, ENTRY_FORMAT + 1):
        found = entry.get("format") if isinstance(entry, dict) else type(entry).__name__
        raise WantrainError(f"{path} has a {MODEL_ENTRY} entry of format {found}; this wantrain reads formats up to "
                            f"{ENTRY_FORMAT}: upgrade wantrain (pip install -U wantrain)")
    kind = entry["kind"]
    config = {**entry["config"],
              "source": {"checkpoint": str(path), "global_step": int(data.get("global_step", 0))}}
    weights_kind = "ema" if use_ema else "raw"
    prefix = entry["weights"][weights_kind]
    state = sub_state(data["state_dict"], prefix)
    if not state:
        raise WantrainError(f"{path} has no {'EMA ' if use_ema else ''}weights (keys {prefix}*)")
    saved = SavedModel(kind, config, state, str(path), weights_kind, data.get("wantrain_config"))
    return merge_lora_of(saved, lora_settings(**entry["lora"])) if entry.get("lora") else saved


def _with_lora(saved: SavedModel, settings: dict[str, Any]) -> VideoDiffusion:
    """The saved diffusion model rebuilt (untrained) with LoRA adapters on its UNet."""
    model = build_diffusion(saved.config)
    add_lora(model.denoiser, settings)
    return model


def merge_lora_of(saved: SavedModel, settings: dict[str, Any]) -> SavedModel:
    """A LoRA fine-tune's weights (base + adapters, as trained) -> merged plain weights, adapters kept aside."""
    model = _with_lora(saved, settings)
    load_weights(model, saved.state, f"{saved.source} (LoRA fine-tune)")
    adapters = lora_state_dict(model.denoiser)
    merge_lora(model.denoiser)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return dataclasses.replace(saved, state=state, lora={"settings": settings, "state": adapters})


def apply_lora_file(saved: SavedModel, path: str | Path) -> SavedModel:
    """A base diffusion model + a LoRA file (`sample export=DIR export_lora=true`) -> merged weights."""
    if saved.kind != DIFFUSION:
        raise WantrainError(f"lora={path} adapts the base (diffusion) model, but {saved.source} is an upsampler stage")
    if saved.lora is not None:
        raise WantrainError(f"{saved.source} is already a LoRA fine-tune (merged); pass its base model with lora=")
    try:
        settings, adapters = read_lora(path)
        model = _with_lora(dataclasses.replace(saved), settings)
        missing = [k for k in model.state_dict() if ".lora_" not in k and k.replace(".base_layer.", ".") not in
                   saved.state]
        if missing:
            raise ValueError(f"the base model lacks {missing[0]}")
        model.load_state_dict({k: saved.state[k.replace(".base_layer.", ".")] for k in model.state_dict()
                               if ".lora_" not in k}, strict=False)
        load_lora_state(model.denoiser, adapters)
    except ValueError as err:
        raise WantrainError(f"lora={path} does not fit base model {saved.source}: {err}") from None
    merge_lora(model.denoiser)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return dataclasses.replace(saved, state=state, lora={"settings": settings, "state": adapters},
                               source=f"{saved.source} + {path}")


def read_exported(folder: Path) -> SavedModel:
    """An exported model folder (config.json + model.safetensors) -> SavedModel."""
    cfg_path = folder / EXPORT_CONFIG
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WantrainError(f"{cfg_path} is not a readable export config ({err})") from None
    kind = config.get("kind")
    if kind not in (DIFFUSION, UPSAMPLER):
        raise WantrainError(f"{cfg_path} has kind={kind!r}; expected '{DIFFUSION}' or '{UPSAMPLER}'")
    weights = folder / EXPORT_WEIGHTS
    if not weights.is_file():
        raise WantrainError(f"{folder} is an incomplete export: {EXPORT_WEIGHTS} is missing")
    return SavedModel(kind, config, load_safetensors(weights, "export weights"), str(folder),
                      config.get("weights", "ema"))


def read_saved(path: str | Path, what: str = "checkpoint", use_ema: bool = True) -> SavedModel:
    """A .ckpt, an exported model folder or a run folder -> SavedModel (`use_ema`: for .ckpt files)."""
    p = resolve_path(path, what)
    return read_exported(p) if p.is_dir() else read_checkpoint(p, use_ema)

"""Read a trained stage from a Lightning checkpoint or an exported folder, without Lightning: config + weights."""

from __future__ import annotations

import importlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wantrain.errors import WantrainError

DIFFUSION, UPSAMPLER = "diffusion", "upsampler"
KIND_OF_TARGET = {
    "wantrain.training.video_diffusion.VideoDiffusionModule": DIFFUSION,
    "wantrain.training.upsampler.UpsamplerModule": UPSAMPLER,
}
EXPORT_CONFIG = "config.json"  # in every exported stage folder
EXPORT_INDEX = "wantrain_export.json"  # in an export root holding several stages


@dataclass
class StageFile:
    """One trained stage as read from disk: its kind, plain config, weights per network, and where it came from."""

    kind: str  # "diffusion" | "upsampler"
    config: dict[str, Any]  # nets' constructor nodes + what inference needs (see `stage_config`)
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # network name -> state dict
    source: str = ""
    weights_kind: str = "ema"  # "ema" | "raw"
    run: dict[str, Any] | None = None  # the whole resolved run config (checkpoints only)


def build(node: dict[str, Any], **overrides: Any) -> Any:
    """Call a config node's `_target_` (a wantrain class) with its keyword arguments (no Hydra needed)."""
    target = node.get("_target_", "")
    if not isinstance(target, str) or not target.startswith("wantrain."):
        raise WantrainError(f"config node target {target!r} is not a wantrain class; the file is not a wantrain stage")
    module_name, _, name = target.rpartition(".")
    obj = getattr(importlib.import_module(module_name), name)
    kwargs = {k: v for k, v in node.items() if not k.startswith("_")}
    return obj(**{**kwargs, **overrides})


def _torch_load(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise WantrainError(f"{path} is not a readable checkpoint ({type(err).__name__}: not a torch file, truncated, "
                            "or holding objects that weights_only loading refuses)") from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise WantrainError(f"{path} is not a Lightning checkpoint (no state_dict); pass a .ckpt written by "
                            "`wantrain fit` or a folder written by `wantrain sample export=DIR`")
    return data


def resolve_path(path: str | Path, what: str) -> Path:
    """A checkpoint file, an exported stage folder, or a run folder (-> its checkpoints/last.ckpt)."""
    p = Path(path).expanduser()
    if p.is_dir() and not (p / EXPORT_CONFIG).is_file() and not (p / EXPORT_INDEX).is_file():
        last = p / "checkpoints" / "last.ckpt"
        if last.is_file():
            return last
        raise WantrainError(f"{what}={path} is a folder with neither {EXPORT_CONFIG} (an exported stage) nor "
                            "checkpoints/last.ckpt (a run); pass a .ckpt file or an exported folder")
    if not p.exists():
        raise WantrainError(f"{what}={path}: no such file or folder")
    return p


def _sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def stage_config(kind: str, run: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """What inference needs from a run config (`wantrain_config`): network nodes, encoders, sizes, sampling."""
    model, data = run.get("model", {}), run.get("data", {}) or {}
    resolution = data.get("resolution")
    size = [int(resolution)] * 2 if isinstance(resolution, int) else [int(v) for v in (resolution or [])]
    if kind == DIFFUSION:
        missing = [k for k in ("unet", "fusion", "schedule") if k not in model]
        if missing:
            raise WantrainError(f"the checkpoint's config lacks model.{missing[0]}; it was not written by `wantrain fit`")
        return {
            "kind": DIFFUSION, "unet": model["unet"], "fusion": model["fusion"], "schedule": model["schedule"],
            "text_encoder": model.get("text_encoder"), "image_encoder": model.get("image_encoder"),
            "sampling": dict(model.get("sampling") or hparams.get("sampling") or {}),
            "timestep_buckets": int(model.get("timestep_buckets", hparams.get("timestep_buckets", 4))),
            "num_frames": int(data.get("num_frames", 16)), "resolution": size,
        }
    stage = int(model.get("stage", hparams.get("stage", 0)))
    base = model.get("base_size", hparams.get("base_size"))
    if base:
        lr_size = [int(base) * 2 ** stage] * 2
    elif size:
        lr_size = [v // 2 for v in size]
    else:
        raise WantrainError("the upsampler checkpoint's config has neither model.base_size nor data.resolution")
    return {"kind": UPSAMPLER, "generator": model["generator"], "stage": stage, "lr_size": lr_size,
            "validation": dict(model.get("validation") or hparams.get("validation") or {})}


def read_checkpoint(path: Path, use_ema: bool = True) -> StageFile:
    """A Lightning .ckpt written by `wantrain fit` (weights_only load) -> StageFile."""
    data = _torch_load(path)
    run = data.get("wantrain_config")
    if not isinstance(run, dict) or "model" not in run:
        raise WantrainError(f"{path} has no wantrain_config (the run config `wantrain fit` stores in checkpoints); "
                            "it cannot be rebuilt without Lightning")
    target = run["model"].get("_target_", "")
    kind = KIND_OF_TARGET.get(target)
    if kind is None:
        raise WantrainError(f"{path} holds a {target!r} model; sample/test know {', '.join(KIND_OF_TARGET)}")
    state = data["state_dict"]
    config = stage_config(kind, run, data.get("hyper_parameters") or {})
    config["source"] = {"checkpoint": str(path), "global_step": int(data.get("global_step", 0))}
    names = ("unet", "fusion") if kind == DIFFUSION else ("generator",)
    weights = {}
    for name in names:
        if use_ema:
            prefix = f"ema.module.{name}." if kind == DIFFUSION else "ema.module."
        else:
            prefix = f"{name}."
        weights[name] = _sub_state(state, prefix)
        if not weights[name]:
            raise WantrainError(f"{path} has no {'EMA ' if use_ema else ''}weights for {name} (keys {prefix}*)")
    return StageFile(kind, config, weights, str(path), "ema" if use_ema else "raw", run)


def read_exported(folder: Path) -> StageFile:
    """An exported stage folder (config.json + NAME.safetensors per network) -> StageFile."""
    from safetensors.torch import load_file

    cfg_path = folder / EXPORT_CONFIG
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WantrainError(f"{cfg_path} is not a readable export config ({err})") from None
    kind = config.get("kind")
    if kind not in (DIFFUSION, UPSAMPLER):
        raise WantrainError(f"{cfg_path} has kind={kind!r}; expected '{DIFFUSION}' or '{UPSAMPLER}'")
    weights = {}
    for name in config.get("networks", []):
        file = folder / f"{name}.safetensors"
        if not file.is_file():
            raise WantrainError(f"{folder} is an incomplete export: {file.name} is missing")
        weights[name] = load_file(str(file))
    return StageFile(kind, config, weights, str(folder), config.get("weights", "ema"))


def read_stage(path: str | Path, what: str = "checkpoint", use_ema: bool = True) -> StageFile:
    """A .ckpt, an exported stage folder or a run folder -> StageFile."""
    p = resolve_path(path, what)
    return read_exported(p) if p.is_dir() else read_checkpoint(p, use_ema)


def load_net(node: dict[str, Any], state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Build a network from its config node and load its weights strictly, in eval mode without gradients."""
    net = build(node)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WantrainError(f"{what}: the weights do not fit the configured network "
                            f"({str(err).splitlines()[0][:200]})") from None
    return net.eval().requires_grad_(False)

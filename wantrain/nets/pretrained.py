"""A diffusers model folder (config.json + one or sharded safetensors) loaded without a second copy in memory:
parameters are built on the meta device and each shard's tensors are assigned in place as the shard is read, so a
14B transformer needs its own size in host memory plus one shard, never twice its size."""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

import torch
from torch import nn

from wantrain.errors import WantrainError
from wantrain.io.weights import load_safetensors
from wantrain.nets.state_match import InitReport, match_state

WEIGHTS = "diffusion_pytorch_model.safetensors"
INDEX = WEIGHTS + ".index.json"


def model_folder(path: str | os.PathLike, subfolder: str) -> Path:
    """`path` itself when it holds config.json, else `path/subfolder` (a pipeline folder as the Hub publishes it)."""
    root = Path(path).expanduser()
    if (root / "config.json").is_file():
        return root
    if (root / subfolder / "config.json").is_file():
        return root / subfolder
    raise WantrainError(f"{root} holds neither config.json nor {subfolder}/config.json: point to a diffusers "
                        f"model folder or a pipeline folder (model_index.json, {subfolder}/, ...)")


def read_config(path: str | os.PathLike, subfolder: str) -> dict:
    """A diffusers model folder's config.json (the architecture), without its private `_` keys."""
    config = json.loads((model_folder(path, subfolder) / "config.json").read_text())
    return {k: v for k, v in config.items() if not k.startswith("_")}


def weight_shards(folder: Path) -> list[Path]:
    """The safetensors files of a diffusers model folder: one file, or the shards its index names."""
    if (folder / INDEX).is_file():
        names = sorted(set(json.loads((folder / INDEX).read_text())["weight_map"].values()))
        return [folder / n for n in names]
    if (folder / WEIGHTS).is_file():
        return [folder / WEIGHTS]
    raise WantrainError(f"{folder} has config.json but neither {WEIGHTS} nor {INDEX}: copy the weights there "
                        "(safetensors only; .bin files are not read)")


def _cast(name: str, tensor: torch.Tensor, dtype: torch.dtype, keep_fp32: tuple[str, ...]) -> torch.Tensor:
    """Floating tensors in `dtype`, except the modules the model keeps in float32 (diffusers' _keep_in_fp32_modules)."""
    if not tensor.is_floating_point():
        return tensor
    return tensor.float() if any(m in name.split(".") for m in keep_fp32) else tensor.to(dtype)


@torch.no_grad()
def cast_like_diffusers(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A model built from its config cast to `dtype` in place, its `_keep_in_fp32_modules` kept in float32 (as
    diffusers' from_pretrained(torch_dtype=...) and `load_pretrained` do)."""
    if dtype == torch.float32:
        return model
    keep = tuple(getattr(type(model), "_keep_in_fp32_modules", None) or ())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        tensor.data = _cast(name, tensor.data, dtype, keep)
    return model


def load_pretrained(cls: type[nn.Module], path: str | os.PathLike, subfolder: str = "transformer",
                    dtype: torch.dtype = torch.float32) -> tuple[nn.Module, InitReport]:
    """A diffusers model class `cls` from a folder, built on meta and filled shard by shard (assign); one
    WantrainError line when a tensor is missing or of another shape (a released folder matches its config)."""
    folder = model_folder(path, subfolder)
    from accelerate import init_empty_weights

    config = cls.load_config(str(folder))
    with init_empty_weights(include_buffers=False):  # parameters on meta; computed buffers (rope tables) real
        model = cls.from_config(config)
    keep_fp32 = tuple(getattr(cls, "_keep_in_fp32_modules", None) or ()) if dtype != torch.float32 else ()
    ignored = tuple(getattr(cls, "_keys_to_ignore_on_load_unexpected", None) or ())
    report = InitReport(str(folder), "diffusers", cls.__name__)
    for shard in weight_shards(folder):
        state = load_safetensors(shard, "diffusers weights file")
        load, part = match_state(model, state, partial=True)
        del state
        model.load_state_dict({k: _cast(k, v, dtype, keep_fp32) for k, v in load.items()}, strict=False,
                              assign=True)
        report.merge(part)
    report.unexpected = [k for k in report.unexpected if not any(fnmatch.fnmatch(k, f"*{p}*") for p in ignored)]
    report.missing = sorted({k for k, v in model.state_dict().items() if v.is_meta} - set(report.loaded))
    if report.missing or report.mismatched:
        raise WantrainError(f"{folder} does not fit its own config.json: {report.problems()}; the folder is "
                            "incomplete or its config belongs to other weights")
    return model.requires_grad_(True), report  # train mode, as a freshly built module (diffusers loads in eval)

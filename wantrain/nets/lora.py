"""LoRA adapters on a network's projections through `peft` (plain PyTorch: no PeftModel wrapper, the network keeps its
class and forward): add, merge into the base weights, and read/write the adapters alone as one safetensors file with
peft/diffusers naming (`unet.<module path>.lora_A.weight` / `lora_B.weight`, the LoRA config in its metadata)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

LORA_FILE = "pytorch_lora_weights.safetensors"  # the file name diffusers' LoRA loaders look for
METADATA_KEY = "wantrain_lora"  # safetensors metadata entry holding the LoRA config (json)
DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"  # diffusers' (loaders/lora_base.py LORA_ADAPTER_METADATA_KEY)
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out")  # the attention projections (spatial, cross, temporal)


def lora_settings(rank: int, alpha: float | None = None, dropout: float = 0.0,
                  target_modules: Sequence[str] = DEFAULT_TARGETS) -> dict[str, Any]:
    """The LoRA config as plain values (what checkpoints and LoRA files store): alpha defaults to the rank."""
    if int(rank) < 1:
        raise ValueError(f"model.lora.rank={rank}: use a positive rank, or null for no LoRA")
    return {"rank": int(rank), "alpha": float(rank if alpha is None else alpha), "dropout": float(dropout),
            "target_modules": [str(t) for t in target_modules]}


def add_lora(net: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Inject LoRA adapters (zero-initialised B: the output is unchanged) into the modules of `net` named by
    `settings["target_modules"]` (name suffixes: linear and conv layers); only the adapters stay trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=settings["rank"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                        target_modules=list(settings["target_modules"]))
    try:
        inject_adapter_in_model(config, net)
    except ValueError as err:
        raise ValueError(f"model.lora.target_modules={settings['target_modules']}: {str(err).splitlines()[0][:160]}"
                         ) from None
    with torch.no_grad():  # adapters train in float32 over a bf16 base (diffusers' `cast_training_params`)
        for name, param in net.named_parameters():
            if any(part in name for part in (".lora_A.", ".lora_B.")) and param.dtype != torch.float32:
                param.data = param.data.float()
    return net


def has_lora(net: nn.Module) -> bool:
    """Whether `net` holds LoRA adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in net.modules())


def merge_lora(net: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (W + scale·B·A) and put the plain base layer back, in place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [(name, m) for name, m in net.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in layers:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent_name) if parent_name else net, child, layer.get_base_layer())
    return net


def lora_prefix(net: nn.Module) -> str:
    """The name prefix of `net`'s adapters in LoRA files: `unet.` for the UNet (diffusers' UNet LoRA files); a
    backbone that wraps a diffusers model names its own (`WanDenoiser`: its `transformer.` attribute, so the
    keys are diffusers' `transformer.blocks.N...`)."""
    return str(getattr(net, "lora_prefix", "unet."))


def lora_state_dict(net: nn.Module, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The adapters alone with peft/diffusers names: `PREFIX<module path>.lora_A.weight` / `.lora_B.weight`."""
    from peft import get_peft_model_state_dict

    prefix = lora_prefix(net) if prefix is None else prefix
    return {prefix + k: v.detach() for k, v in get_peft_model_state_dict(net).items()}


def load_lora_state(net: nn.Module, state: dict[str, torch.Tensor], prefix: str | None = None) -> None:
    """Load adapters written by `lora_state_dict` into `net` (which has the same adapters); every adapter of `net`
    must be given and every given key used, else ValueError naming one."""
    from peft import set_peft_model_state_dict

    prefix = lora_prefix(net) if prefix is None else prefix
    mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    expected = set(lora_state_dict(net, prefix=""))
    missing, unexpected = sorted(expected - set(mine)), sorted(set(mine) - expected)
    if missing or unexpected or len(mine) != len(state):
        other = sorted(k for k in state if not k.startswith(prefix))
        raise ValueError(f"the LoRA weights do not fit the network: {len(missing)} missing (e.g. {missing[:1]}), "
                         f"{len(unexpected) + len(other)} unexpected (e.g. {(unexpected + other)[:1]})")
    set_peft_model_state_dict(net, mine)


def save_lora(adapters: dict[str, torch.Tensor], settings: dict[str, Any], path: str | Path) -> Path:
    """Write adapters (from `lora_state_dict`) as one safetensors file and a peft `adapter_config.json` beside it;
    the LoRA config goes in the file's metadata twice: wantrain's, and diffusers' (`lora_adapter_metadata`, keys
    prefixed by the network: `transformer.lora_alpha`), so `pipe.load_lora_weights` scales by alpha / rank."""
    from peft import LoraConfig

    from wantrain.io.weights import save_safetensors

    path = Path(path)
    peft_config = LoraConfig(r=settings["rank"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                             target_modules=list(settings["target_modules"])).to_dict()
    peft_config = {k: sorted(v) if isinstance(v, set) else v for k, v in peft_config.items()}
    network = next(iter(adapters), "unet.").split(".")[0]
    diffusers_config = json.dumps({f"{network}.{k}": v for k, v in peft_config.items()}, default=str)
    save_safetensors(adapters, path, metadata={METADATA_KEY: json.dumps(settings), "format": "pt",
                                               DIFFUSERS_METADATA_KEY: diffusers_config})
    (path.parent / "adapter_config.json").write_text(json.dumps(peft_config, indent=2, default=str))
    return path


def read_lora(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A file written by `save_lora` -> (settings, adapter state dict). Raises ValueError when it is not one."""
    from safetensors import safe_open

    from wantrain.io.weights import load_safetensors

    state = load_safetensors(path, "LoRA file", "pass a file written by `wantrain sample export=DIR export_lora=true`")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if METADATA_KEY not in meta:
        raise ValueError(f"LoRA file {path} has no {METADATA_KEY!r} metadata (rank, alpha, targets); write it with "
                         "`wantrain sample export=DIR export_lora=true`")
    return json.loads(meta[METADATA_KEY]), state

"""Base for frozen pretrained encoders: nets kept out of parameters() and state_dict(), still moved by .to()."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from wantrain.nets.freeze import freeze

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map "float32" | "bfloat16" | "float16" (or a torch.dtype) to a torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported: use one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def resolve_local(path: str | os.PathLike, what: str, hint: str) -> Path:
    """A local directory for `path`: the path itself, or a hub id (`owner/name`) already in the local
    Hugging Face cache. Never downloads; raises one clear line when neither exists."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", str(path)):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(str(path), local_files_only=True))
        except Exception:  # noqa: BLE001 - any cache miss means "not here"
            pass
    raise FileNotFoundError(
        f"{what} path {str(path)!r} is neither a local directory nor a hub id in the local Hugging Face cache "
        f"(nothing is downloaded at run time): {hint}"
    )


def has_weights(folder: Path, stems: Iterable[str]) -> bool:
    """True if `folder` holds a weight file for one of the stems (sharded, variant or index files count)."""
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    alternatives = "|".join(re.escape(s) for s in stems)
    pattern = re.compile(rf"^({alternatives})(\.[A-Za-z0-9_]+)?(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?$")
    return any(pattern.match(n) for n in names)


def load_transformers_model(cls, source: str | Path, hint: str, **kwargs):  # noqa: ANN001, ANN201
    """cls.from_pretrained(source) offline with the load report silenced; raise if any of the model's weights
    are missing from the checkpoint (unused extra weights, e.g. a decoder or a text tower, are fine)."""
    import transformers

    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        model, info = cls.from_pretrained(str(source), output_loading_info=True, local_files_only=True, **kwargs)
    except OSError as err:
        raise RuntimeError(f"cannot load {cls.__name__} from {str(source)!r} ({err}): {hint}") from err
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise RuntimeError(
            f"{source} lacks {len(missing)} weights {cls.__name__} needs (e.g. {missing[0]}): "
            "check that the path holds the right model"
        )
    return model


class FrozenModule(nn.Module):
    """An nn.Module whose pretrained nets are frozen, in eval mode and invisible to
    parameters() / state_dict() (so optimizers, EMA, DDP and checkpoints skip them),
    while .to(device) / .to(dtype) / .cuda() still move them."""

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_frozen", {})

    def _freeze(self, name: str, net: nn.Module) -> nn.Module:
        """Register `net` as frozen under `name` (eval, requires_grad False) and return it."""
        self._frozen[name] = freeze(net)
        return net

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - torch signature
        for net in self._frozen.values():
            net._apply(fn)
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> FrozenModule:
        """Frozen nets always stay in eval mode."""
        super().train(mode)
        for net in self._frozen.values():
            net.eval()
        return self

    @property
    def device(self) -> torch.device:
        """Device of the frozen weights."""
        return next(next(iter(self._frozen.values())).parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the frozen weights."""
        return next(next(iter(self._frozen.values())).parameters()).dtype

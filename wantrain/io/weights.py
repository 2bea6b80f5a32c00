"""The one safe weights loader: torch files with `weights_only=True` (memory-mapped where the format allows) and
safetensors; failures are one-line WantrainErrors naming the file and the fix. Nothing here ever unpickles."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from wantrain.errors import WantrainError


def _first_line(err: BaseException) -> str:
    """The telling line of an error: torch's WeightsUnpickler detail when there is one, else the first line."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split(" Please use")[0]
    return text.splitlines()[0][:160] if text else type(err).__name__


def load_torch_file(path: str | os.PathLike, what: str = "weights file", fix: str = "", mmap: bool = True) -> Any:
    """`torch.load(path)` on the CPU with `weights_only=True` (mmap for zip-format files when `mmap`).

    `what` names the file in errors (a noun: "checkpoint", "I3D weights file"); `fix` says what to do instead.
    """
    path = Path(path)
    tail = f"; {fix}" if fix else ""
    if not path.is_file():
        raise WantrainError(f"{what} {path}: no such file{tail}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):  # not a pickled object: the bytes are no torch file at all
            raise WantrainError(f"{path} is not a readable {what} (not a torch file, or truncated: "
                                f"{_first_line(err)}){tail}") from None
        raise WantrainError(f"{what} {path} holds pickled objects that are not tensors or plain containers; wantrain "
                            f"loads torch files with weights_only=True only ({_first_line(err)}){tail}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise WantrainError(f"{path} is not a readable {what} (not a torch file, or truncated: {_first_line(err)})"
                            f"{tail}") from None


def load_safetensors(path: str | os.PathLike, what: str = "weights file", fix: str = "") -> dict[str, torch.Tensor]:
    """A .safetensors file -> state dict on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    tail = f"; {fix}" if fix else ""
    if not path.is_file():
        raise WantrainError(f"{what} {path}: no such file{tail}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WantrainError(f"{path} is not a readable {what} (not a safetensors file, or truncated: "
                            f"{_first_line(err)}){tail}") from None


def load_state_dict(path: str | os.PathLike, what: str = "weights file", fix: str = "") -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors or torch file (unwrapping a top-level "state_dict" entry if there is one)."""
    if Path(path).suffix == ".safetensors":
        return load_safetensors(path, what, fix)
    state = load_torch_file(path, what, fix)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        tail = f"; {fix}" if fix else ""
        raise WantrainError(f"{what} {path} holds a {type(state).__name__}, not a state dict{tail}")
    return state


def save_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike,
                     metadata: dict[str, str] | None = None) -> Path:
    """Write a state dict as .safetensors (detached, contiguous CPU copies), atomically; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

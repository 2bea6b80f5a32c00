"""Checking that a checkpoint fits the model a run builds, before Lightning loads it (one line instead of a
key-by-key traceback): the same stage (LightningModule class) and the same architecture (weight names and shapes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from wantrain.errors import WantrainError
from wantrain.io.weights import load_torch_file
from wantrain.training.resume import SHARDED_META, is_sharded

STAGE_NAMES = {
    "VideoDiffusionModule": "the video diffusion stage (+experiment=i2v_tiny / i2v_64)",
    "UpsamplerModule": "an upsampler stage (+experiment=sr_tiny / sr_stage1-4)",
}


def _stage_of(checkpoint: dict[str, Any]) -> str | None:
    """Class name of the LightningModule that wrote the checkpoint, from its stored run config."""
    target = (checkpoint.get("wantrain_config") or {}).get("model", {}).get("_target_")
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else None


def saved_weights(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]] | None]:
    """(the checkpoint without its tensors' values where it can, weight name -> shape): a single file, or a sharded
    folder (trainer=fsdp2: Lightning's meta.pt + the torch distributed checkpoint's metadata; no shard is read)."""
    fix = "pass a .ckpt written by wantrain fit, or ckpt_path=auto"
    if is_sharded(Path(path)):
        from torch.distributed.checkpoint import FileSystemReader

        checkpoint = load_torch_file(Path(path) / SHARDED_META, "checkpoint", fix=fix)
        entries = FileSystemReader(str(path)).read_metadata().state_dict_metadata
        return checkpoint, {k.removeprefix("state_dict."): tuple(v.size) for k, v in entries.items()
                            if k.startswith("state_dict.") and hasattr(v, "size")}
    checkpoint = load_torch_file(path, "checkpoint", fix=fix)
    state = checkpoint.get("state_dict")
    return checkpoint, {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else None


def check_checkpoint_fits(path: str | Path, model: nn.Module) -> None:
    """Raise WantrainError (one line) when the checkpoint at `path` was written by another stage or architecture."""
    checkpoint, state = saved_weights(path)
    if state is None:
        raise WantrainError(f"checkpoint {path} has no state_dict: it is not a Lightning checkpoint "
                            "(exported weights such as *.safetensors are loaded by `sample`, not resumed)")
    mine = type(model).__name__
    theirs = _stage_of(checkpoint)
    if theirs is not None and theirs != mine:
        raise WantrainError(
            f"checkpoint {path} was trained by {theirs} ({STAGE_NAMES.get(theirs, theirs)}) but this run builds "
            f"{mine} ({STAGE_NAMES.get(mine, mine)}): pick the matching +experiment or another checkpoint"
        )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        prefixes = sorted({k.split(".", 1)[0] for k in [*missing, *unexpected]})
        raise WantrainError(
            f"checkpoint {path} does not fit this model ({len(missing)} weights missing, e.g. "
            f"{(missing or ['-'])[0]}; {len(unexpected)} unexpected, e.g. {(unexpected or ['-'])[0]}; in "
            f"{', '.join(prefixes)}): it was trained by {theirs or 'another model'} with another architecture; "
            "use the model settings it was trained with (its wantrain_config) or start fresh with ckpt_path=null"
        )
    for key, value in expected.items():
        if state[key] != tuple(value.shape):
            raise WantrainError(
                f"checkpoint {path} does not fit this model: {key} is {state[key]} in the checkpoint "
                f"but {tuple(value.shape)} here (another architecture); use the model settings it was trained with "
                "(model.* in its wantrain_config) or start fresh with ckpt_path=null"
            )

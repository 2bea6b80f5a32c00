"""Write trained models in the one export format: a folder `config.json` + `model.safetensors` per model, and an
export root (`base/`, `sr_stage1/`, ...) for a whole pipeline; read back with `read_saved` / `load_pipeline`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wantrain.errors import WantrainError
from wantrain.inference.checkpoints import (
    EXPORT_CONFIG,
    EXPORT_INDEX,
    EXPORT_WEIGHTS,
    UPSAMPLER,
    SavedModel,
    upsampler_config,
)
from wantrain.io.weights import save_safetensors
from wantrain.nets.upsampler import UpsampleStage

FORMAT = "wantrain-export"
VERSION = 2  # 1: one NAME.safetensors per network, stages named sr0, sr1, ...


def stage_name(saved: SavedModel) -> str:
    """`sr_stageN` for upsampler stage N (the experiment that trains it)."""
    return f"sr_stage{int(saved.config['stage'])}"


def write_saved(saved: SavedModel, folder: str | Path) -> Path:
    """Write one model: `model.safetensors` (its state dict) and `config.json` (config nodes, sizes, sampling)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(saved.state, folder / EXPORT_WEIGHTS)
    config = {**saved.config, "format": FORMAT, "version": VERSION, "weights": saved.weights_kind}
    config.setdefault("source", {"path": saved.source})
    (folder / EXPORT_CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def export_upsampler(net: UpsampleStage, stage: int, lr_size: Sequence[int], folder: str | Path,
                     validation: dict[str, Any] | None = None, weights_kind: str = "ema", source: str = "") -> Path:
    """Write a trained stage (what `fit` of `sr_stageN` leaves in run_dir/export/sr_stageN/)."""
    config = upsampler_config(net.config_node(), stage, lr_size, validation)
    state = {k: v.detach() for k, v in net.state_dict().items()}
    return write_saved(SavedModel(UPSAMPLER, config, state, source, weights_kind), folder)


def export_pipeline(base: SavedModel, stages: Sequence[SavedModel], out: str | Path) -> Path:
    """Write `out/base/`, `out/sr_stage1/`, ... and `out/wantrain_export.json` listing the stages in cascade order."""
    out = Path(out)
    names = [stage_name(s) for s in stages if s.kind == UPSAMPLER]
    if len(set(names)) != len(names) or len(names) != len(stages):
        raise WantrainError(f"sr_ckpts hold upsampler stages {names}: give each stage (sr_stage1, sr_stage2, ...) once")
    write_saved(base, out / "base")
    for name, stage in zip(names, stages):
        write_saved(stage, out / name)
    index = {"format": FORMAT, "version": VERSION, "base": "base", "stages": names,
             "sources": {"base": base.source, **{n: s.source for n, s in zip(names, stages)}}}
    (out / EXPORT_INDEX).write_text(json.dumps(index, indent=2))
    return out

"""Export trained stages as safetensors + JSON config, loadable with `wantrain.inference.load_exported` (no Lightning)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from wantrain.inference.checkpoints import EXPORT_CONFIG, EXPORT_INDEX, StageFile

FORMAT = "wantrain-export"
VERSION = 1


def write_stage(stage: StageFile, folder: Path) -> Path:
    """Write one stage: `NAME.safetensors` per network and `config.json` (constructor nodes, sizes, sampling)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for name, state in stage.weights.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(folder / f"{name}.safetensors"))
    config = {**stage.config, "format": FORMAT, "version": VERSION, "networks": list(stage.weights),
              "weights": stage.weights_kind}
    config.setdefault("source", {"path": stage.source})
    (folder / EXPORT_CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def export_pipeline(base: StageFile, stages: Sequence[StageFile], out: str | Path) -> Path:
    """Write `out/base/`, `out/sr0/`, `out/sr1/`, ... and `out/wantrain_export.json` listing them in cascade order."""
    out = Path(out)
    write_stage(base, out / "base")
    names = []
    for i, stage in enumerate(stages):
        names.append(f"sr{i}")
        write_stage(stage, out / names[-1])
    index = {"format": FORMAT, "version": VERSION, "base": "base", "stages": names,
             "sources": {"base": base.source, **{n: s.source for n, s in zip(names, stages)}}}
    (out / EXPORT_INDEX).write_text(json.dumps(index, indent=2))
    return out

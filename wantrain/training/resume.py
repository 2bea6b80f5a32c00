"""`ckpt_path=auto`: resume from the newest complete checkpoint of a run directory.

The one place that picks the checkpoint to resume from: `run_dir/checkpoints/*.ckpt` (last and periodic ones,
written by ModelCheckpoint) and `run_dir/hpc_ckpt_N.ckpt` (written by Lightning's SLURMEnvironment on the requeue
signal). The newest file wins. `fit` passes the chosen path to `Trainer.fit(ckpt_path=...)`, so Lightning's own
"restore hpc_ckpt when ckpt_path is None on SLURM" never decides on its own (it would find nothing we did not).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from wantrain.errors import WantrainError
from wantrain.io.weights import load_torch_file

SHARDED_META = "meta.pt"  # Lightning's name for the non-tensor part of a sharded (distributed) checkpoint
HPC_PATTERN = "hpc_ckpt_*.ckpt"  # Lightning's name for the checkpoint saved on the SLURM requeue signal


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run (run_dir/checkpoints/*.ckpt and run_dir/hpc_ckpt_*.ckpt), oldest first."""
    run_dir = Path(run_dir)
    found: list[Path] = []
    for folder, pattern in ((run_dir / "checkpoints", "*.ckpt"), (run_dir, HPC_PATTERN)):
        if folder.is_dir():
            # Writers save to `NAME.ckpt.tmp-PID` and rename, so every `*.ckpt` here is complete (a file, or a
            # torch distributed checkpoint folder of trainer=fsdp2's sharded checkpoints)
            found += [p for p in folder.glob(pattern) if (p.is_file() and p.stat().st_size > 0) or is_sharded(p)]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def is_sharded(path: Path) -> bool:
    """A sharded checkpoint: a folder with the shards' `.metadata` and Lightning's `meta.pt` (the rest of the
    checkpoint: loops, callbacks, step)."""
    return path.is_dir() and (path / SHARDED_META).is_file() and (path / ".metadata").is_file()


def checkpoint_step(path: Path) -> int | None:
    """The global step stored in a Lightning checkpoint, read without loading the tensors into memory."""
    try:
        state = load_torch_file(path / SHARDED_META if is_sharded(path) else path, "checkpoint")
    except WantrainError as err:  # an unreadable file is reported by Lightning when it loads it
        warnings.warn(f"could not read the step of {path}: {err}", stacklevel=2)
        return None
    return int(state.get("global_step", 0))


def resolve_ckpt_path(ckpt_path: str | None, run_dir: str | Path, max_steps: int | None = None) -> str | None:
    """Turn the `ckpt_path` setting into a file to resume from, or None for a fresh start."""
    if ckpt_path in (None, "", "null", "none"):
        return None
    if ckpt_path != "auto":
        path = Path(ckpt_path)
        if not (path.is_file() or is_sharded(path)):
            raise WantrainError(f"checkpoint {path} does not exist; give an existing .ckpt (a file, or a sharded "
                                "checkpoint folder) or ckpt_path=auto")
        return str(path)
    candidates = checkpoint_candidates(Path(run_dir))
    if not candidates:
        return None
    newest = candidates[-1]
    step = checkpoint_step(newest)
    if max_steps is not None and max_steps > 0 and step is not None and step >= max_steps:
        raise WantrainError(
            f"the run in {run_dir} already finished (step {step} >= trainer.max_steps={max_steps}); "
            "start a new run with run_name=NEW or raise trainer.max_steps to train on"
        )
    return str(newest)

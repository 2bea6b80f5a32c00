"""Checkpoint files written atomically: a killed writer never leaves a `*.ckpt` that resuming would pick."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.cloud_io import _atomic_save
from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to `NAME.ckpt.tmp-PID`, fsyncs, then renames over `NAME.ckpt` (a rename is atomic on POSIX)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            _atomic_save(checkpoint, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

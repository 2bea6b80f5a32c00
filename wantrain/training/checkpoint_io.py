"""Checkpoint files written atomically and loaded safely: a killed or failing writer never leaves a `*.ckpt` that
resuming would pick, a full disk leaves the previous checkpoint intact, and loading never unpickles objects."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from wantrain.errors import WantrainError

TMP_MARK = ".tmp-"  # NAME.ckpt.tmp-PID: never matches `*.ckpt`, so resuming ignores it


def _is_local(path: str | os.PathLike) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete `*.tmp-PID` files (and sharded checkpoint folders) left in `folder` by writers that died (kill -9,
    node failure); returns them."""
    removed = []
    for tmp in folder.glob(f"*{TMP_MARK}*"):
        pid = tmp.name.rsplit(TMP_MARK, 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            if tmp.is_dir():  # a sharded (torch distributed) checkpoint folder
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: some filesystems refuse to open directories)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Streams the checkpoint into `NAME.ckpt.tmp-PID` next to its target, fsyncs it, then renames it over `NAME.ckpt`
    (atomic on POSIX). Nothing is staged in $TMPDIR. Loading uses `weights_only=True`."""

    def __init__(self) -> None:
        super().__init__()
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(str(path).removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._cleaned:  # once per folder: temp files of writers killed in earlier launches
            remove_stale_temp_files(path.parent)
            self._cleaned.add(path.parent)
        tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:
            raise WantrainError(self._save_failure(path, err)) from err
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    @staticmethod
    def _save_failure(path: Path, err: BaseException) -> str:
        """One line: what failed, why, which checkpoint is still intact, what to do."""
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        code = getattr(cause, "errno", None)
        reason = os.strerror(code) if code else str(err).splitlines()[0]
        if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or "write failed" in str(err):
            reason += " (disk full or quota/file-size limit)"
        intact = sorted((p for p in path.parent.glob("*.ckpt") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
        kept = (f"the previous checkpoint {intact[-1]} is intact" if intact
                else "no earlier checkpoint exists in " + str(path.parent))
        return (f"could not write checkpoint {path}: {reason}; the partial file was removed and {kept}; "
                "free space (or point run_dir elsewhere) and resume with ckpt_path=auto")

    def load_checkpoint(self, path: str | os.PathLike, map_location: Callable | None = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Load with `weights_only=True` unless the caller explicitly asks otherwise."""
        try:
            return super().load_checkpoint(path, map_location=map_location,
                                           weights_only=True if weights_only is None else weights_only)
        except pickle.UnpicklingError as err:
            raise WantrainError(
                f"checkpoint {path} holds pickled objects that are not tensors or plain containers; wantrain loads "
                f"checkpoints with weights_only=True only ({str(err).splitlines()[0][:120]})"
            ) from None

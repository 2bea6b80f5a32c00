"""Disk full while saving: the write fails in the kernel (a small tmpfs, else a file-size limit), the partial file is
removed, the previous checkpoint stays loadable, and the error is one line saying so."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from wantrain.errors import WantrainError
from wantrain.training.checkpoint_io import AtomicCheckpointIO


class Regressor(pl.LightningModule):
    """A real (small) model whose checkpoint is ~3 MB: weights + Adam moments."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(512, 512)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return torch.nn.functional.mse_loss(self.net(x), x.flip(-1))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def fit(root: Path, max_steps: int, ckpt_path: str | None = None) -> None:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 512)), batch_size=8)
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=root, plugins=[AtomicCheckpointIO()],
                         callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=1,
                                                    save_top_k=1, save_last=True, filename="step{step}")])
    trainer.fit(Regressor(), data, ckpt_path=ckpt_path)


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 MB tmpfs (needs root and mount rights; skipped elsewhere, where the file-size-limit case still runs)."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", f"wantrain-{uuid.uuid4().hex[:8]}", str(where)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the filesystem of `folder` until `leave` bytes are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with open(folder / "filler", "wb") as f:
        f.truncate(0)
        chunk = b"\0" * (1 << 20)
        while free - f.tell() > leave + len(chunk):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def check_failure(err: pytest.ExceptionInfo, run: Path, before: bytes) -> None:
    message = str(err.value)
    assert "\n" not in message
    last = run / "checkpoints" / "last.ckpt"
    assert f"could not write checkpoint {run / 'checkpoints'}" in message and "is intact" in message
    assert "resume with ckpt_path=auto" in message
    assert last.read_bytes() == before  # untouched ...
    assert torch.load(last, weights_only=True)["global_step"] == 2  # ... and loadable
    assert not list((run / "checkpoints").glob("*.tmp-*"))  # the partial file was removed


def test_disk_full_on_a_real_tmpfs_keeps_the_previous_checkpoint(tmpfs):
    run = tmpfs / "run"
    fit(run, max_steps=2)
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    fill(tmpfs, leave=len(before) // 2)  # the next checkpoint cannot fit
    with pytest.raises(WantrainError, match=r"No space left on device \(disk full") as err:
        fit(run, max_steps=4, ckpt_path=str(last))
    check_failure(err, run, before)


def test_file_size_limit_while_saving_keeps_the_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    fit(run, max_steps=2)
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))  # writes beyond it fail with EFBIG
    try:
        with pytest.raises(WantrainError, match=r"File too large \(disk full or quota/file-size limit\)") as err:
            fit(run, max_steps=4, ckpt_path=str(last))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    check_failure(err, run, before)

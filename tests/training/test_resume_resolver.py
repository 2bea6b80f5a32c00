"""`ckpt_path=auto`: the newest of last / periodic / SLURM hpc checkpoints, refusal of a finished run, fresh start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from wantrain.errors import WantrainError
from wantrain.training.resume import checkpoint_candidates, resolve_ckpt_path


def write_ckpt(path: Path, step: int, mtime: int) -> Path:
    """A checkpoint file holding `global_step`, with a chosen modification time (seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.zeros(2)}}, path)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


def test_no_checkpoint_starts_fresh(tmp_path):
    assert resolve_ckpt_path("auto", tmp_path / "never-created", 100) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt.tmp-123").write_bytes(b"half a file")  # a killed writer's leftover
    (tmp_path / "hpc_ckpt_1.ckpt.tmp-456").write_bytes(b"half a file")
    (tmp_path / "checkpoints" / "empty.ckpt").touch()
    assert resolve_ckpt_path("auto", tmp_path, 100) is None


@pytest.mark.parametrize("newest", ["last", "hpc", "periodic"])
def test_the_newest_of_last_hpc_and_periodic_wins(tmp_path, newest):
    times = {"last": 1_000, "hpc": 2_000, "periodic": 3_000}
    times[newest] = 9_000
    write_ckpt(tmp_path / "checkpoints" / "last.ckpt", 40, times["last"])
    write_ckpt(tmp_path / "hpc_ckpt_2.ckpt", 30, times["hpc"])
    write_ckpt(tmp_path / "hpc_ckpt_1.ckpt", 10, 500)
    write_ckpt(tmp_path / "checkpoints" / "step0000020.ckpt", 20, times["periodic"])
    expected = {"last": "checkpoints/last.ckpt", "hpc": "hpc_ckpt_2.ckpt", "periodic": "checkpoints/step0000020.ckpt"}
    assert resolve_ckpt_path("auto", tmp_path, 100) == str(tmp_path / expected[newest])
    assert [p.name for p in checkpoint_candidates(tmp_path)][0] == "hpc_ckpt_1.ckpt"  # oldest first


def test_hpc_checkpoint_alone_is_resumed(tmp_path):
    write_ckpt(tmp_path / "hpc_ckpt_1.ckpt", 7, 1_000)
    assert resolve_ckpt_path("auto", tmp_path, 100) == str(tmp_path / "hpc_ckpt_1.ckpt")


def test_finished_run_is_refused(tmp_path):
    write_ckpt(tmp_path / "checkpoints" / "step0000050.ckpt", 50, 1_000)
    write_ckpt(tmp_path / "checkpoints" / "last.ckpt", 100, 2_000)
    with pytest.raises(WantrainError, match=r"already finished \(step 100 >= trainer.max_steps=100\)"):
        resolve_ckpt_path("auto", tmp_path, 100)
    # more steps asked for: the same run trains on from its newest checkpoint
    assert resolve_ckpt_path("auto", tmp_path, 200) == str(tmp_path / "checkpoints" / "last.ckpt")
    # no step limit (max_steps=-1, epochs decide): never refused
    assert resolve_ckpt_path("auto", tmp_path, -1) == str(tmp_path / "checkpoints" / "last.ckpt")


def test_explicit_paths(tmp_path):
    ckpt = write_ckpt(tmp_path / "elsewhere.ckpt", 100, 1_000)
    assert resolve_ckpt_path(str(ckpt), tmp_path / "run", 100) == str(ckpt)  # explicit: never refused
    with pytest.raises(WantrainError, match="does not exist"):
        resolve_ckpt_path(str(tmp_path / "missing.ckpt"), tmp_path, 100)
    for fresh in (None, "", "null", "none"):
        assert resolve_ckpt_path(fresh, tmp_path, 100) is None

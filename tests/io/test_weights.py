"""The one safe weights loader: torch files weights_only (mmap), safetensors, one-line errors naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wantrain.errors import WantrainError
from wantrain.io.weights import load_safetensors, load_state_dict, load_torch_file, save_safetensors


def test_torch_files_load_on_cpu_memory_mapped_or_not(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}
    torch.save(state, tmp_path / "new.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    for name in ("new.pt", "legacy.pt"):
        got = load_torch_file(tmp_path / name, "weights file")
        assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    torch.save({"state_dict": state, "global_step": 3}, tmp_path / "wrapped.ckpt")
    assert torch.equal(load_state_dict(tmp_path / "wrapped.ckpt")["w"], state["w"])


def test_pickled_objects_and_garbage_are_one_line_errors(tmp_path):
    torch.save({"w": torch.ones(1), "obj": Path("x")}, tmp_path / "evil.pt")
    with pytest.raises(WantrainError, match=r"^checkpoint .*evil.pt holds pickled objects .* weights_only=True only"):
        load_torch_file(tmp_path / "evil.pt", "checkpoint")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(WantrainError, match=r"garbage.pt is not a readable checkpoint .*; pass a \.ckpt") as err:
        load_torch_file(tmp_path / "garbage.pt", "checkpoint", fix="pass a .ckpt")
    assert "\n" not in str(err.value)
    with pytest.raises(WantrainError, match="missing.pt: no such file; download it"):
        load_state_dict(tmp_path / "missing.pt", "I3D weights file", fix="download it")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(WantrainError, match="is not a readable weights file"):
        load_state_dict(tmp_path / "bad.safetensors")


def test_safetensors_round_trip(tmp_path):
    base = torch.randn(4, 4)
    state = {"a": base.t(), "b": torch.zeros(3, dtype=torch.bfloat16)}  # a non-contiguous view is copied
    path = save_safetensors(state, tmp_path / "sub" / "model.safetensors", metadata={"kind": "test"})
    got = load_safetensors(path)
    assert torch.equal(got["a"], base.t()) and got["b"].dtype == torch.bfloat16
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temporary file left
    assert torch.equal(load_state_dict(path)["a"], got["a"])

"""Safe loading across the package: every torch.load is weights_only, every np.load refuses pickles, nothing calls
pickle, and Lightning's own checkpoint loading goes through AtomicCheckpointIO with weights_only=True."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import wantrain
from wantrain.errors import WantrainError
from wantrain.training.checkpoint_io import AtomicCheckpointIO

PACKAGE = Path(wantrain.__file__).parent


def calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call `X.name(...)` / `name(...)` in the package's source."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    found.append((path, node))
    return found


def keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_every_load_in_the_package_refuses_pickles():
    torch_loads = [(p, n) for p, n in calls("load") if isinstance(n.func, ast.Attribute)
                   and getattr(n.func.value, "id", "") == "torch"]
    assert torch_loads  # the scan sees them
    for path, node in torch_loads:
        assert keyword(node, "weights_only") is True, f"{path}:{node.lineno} torch.load without weights_only=True"
    for path, node in calls("load"):
        if isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") in ("np", "numpy"):
            assert keyword(node, "allow_pickle") is False, f"{path}:{node.lineno} np.load without allow_pickle=False"
        if isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") in ("pickle", "dill"):
            pytest.fail(f"{path}:{node.lineno} unpickles")
    assert not calls("loads") or all(getattr(n.func.value, "id", "") == "json" for _, n in calls("loads")
                                     if isinstance(n.func, ast.Attribute))


def test_lightning_checkpoint_loading_is_weights_only(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 3}, tmp_path / "ok.ckpt")
    assert io.load_checkpoint(tmp_path / "ok.ckpt")["global_step"] == 3
    torch.save({"state_dict": {}, "obj": Path("x")}, tmp_path / "evil.ckpt")  # a pickled class instance
    with pytest.raises(WantrainError, match="holds pickled objects .* weights_only=True only"):
        io.load_checkpoint(tmp_path / "evil.ckpt")

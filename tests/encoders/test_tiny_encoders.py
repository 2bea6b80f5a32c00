"""Tiny builders: hub layouts, determinism per seed, atomic idempotent writes."""

from __future__ import annotations

import json
import threading

import pytest
from safetensors.torch import load_file

from wantrain.encoders.tiny import MARKER, build_tiny_clip, build_tiny_dit, build_tiny_t5


def test_hub_layouts(tiny_dir):
    for kind in ("t5", "umt5"):
        names = {p.name for p in (tiny_dir / kind).iterdir()}
        assert {"config.json", "model.safetensors", "spiece.model", "tokenizer_config.json"} <= names
        assert json.loads((tiny_dir / kind / "config.json").read_text())["model_type"] == kind
    for sub in ("transformer", "vae"):
        assert {p.name for p in (tiny_dir / "dit" / sub).iterdir()} == {
            "config.json", "diffusion_pytorch_model.safetensors"}
    assert json.loads((tiny_dir / "dit" / "vae" / "config.json").read_text())["scaling_factor"] == 0.18215
    clip = json.loads((tiny_dir / "clip" / "config.json").read_text())
    assert clip["model_type"] == "clip" and (tiny_dir / "clip" / "preprocessor_config.json").exists()


def test_deterministic_for_a_seed(tiny_dir, tmp_path, captions):
    same = build_tiny_t5(tmp_path / "t5", captions, seed=0)
    other = build_tiny_t5(tmp_path / "t5_seed1", captions, seed=1)
    ref = load_file(tiny_dir / "t5" / "model.safetensors")
    got, diff = load_file(same / "model.safetensors"), load_file(other / "model.safetensors")
    assert all((ref[k] == got[k]).all() for k in ref)
    assert any(not (ref[k] == diff[k]).all() for k in ref)
    assert (same / "spiece.model").read_bytes() == (tiny_dir / "t5" / "spiece.model").read_bytes()
    dit = build_tiny_dit(tmp_path / "dit", seed=0)
    a = load_file(dit / "vae" / "diffusion_pytorch_model.safetensors")
    b = load_file(tiny_dir / "dit" / "vae" / "diffusion_pytorch_model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


def test_idempotent_and_refuses_a_different_build(tmp_path):
    path = build_tiny_clip(tmp_path / "clip", seed=0)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_clip(path, seed=0) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="remove it or pick another path"):
        build_tiny_clip(path, seed=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        build_tiny_clip(tmp_path / "other")


def test_concurrent_builds_never_expose_half_a_model(tmp_path):
    errors = []

    def build():
        try:
            build_tiny_dit(tmp_path / "dit", seed=3)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dit"]  # temp dirs are gone
    assert (tmp_path / "dit" / MARKER).exists()
    assert (tmp_path / "dit" / "vae" / "diffusion_pytorch_model.safetensors").exists()

"""`bench step` in latent space: pixel vs latent (live VAE, cached latents) rows per resolution, and the
Lightning-vs-bare rows of a latent-space module."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from wantrain.benchmarks.step import run

CONF = Path(__file__).resolve().parents[2] / "conf" / "bench" / "step.yaml"
TINY = {"device": "cpu", "batch_size": 1, "num_frames": 5, "steps": 2, "warmup": 1, "repeats": 1, "threads": 1}


def test_bench_step_spaces_rows() -> None:
    cfg = OmegaConf.load(CONF)
    cfg.merge_with({**TINY, "spaces": True, "resolutions": [16, [16, 32]]})
    rows = run(cfg)
    assert [(r["space"], r["size"]) for r in rows] == [("pixel", "16x16"), ("latent", "16x16"),
                                                       ("pixel", "16x32"), ("latent", "16x32")]
    assert [r["unet_input"] for r in rows] == ["3x5x16x16", "4x2x2x2", "3x5x16x32", "4x2x2x4"]
    for pixel, latent in zip(rows[::2], rows[1::2]):
        assert pixel["vae_encode_ms_per_clip"] == 0 and latent["vae_encode_ms_per_clip"] > 0
        assert all(r["step_ms_per_clip"] > 0 and r["step_ms_cached_per_clip"] > 0 for r in (pixel, latent))
        # the ratio comes from the unrounded times; the printed ms are rounded to 0.01
        ratio = latent["step_ms_per_clip"] / pixel["step_ms_per_clip"]
        assert latent["vs_pixel"] == pytest.approx(ratio, rel=1e-3, abs=1e-3)


def test_bench_step_of_a_latent_module() -> None:
    """overrides=[+experiment=i2v_latent_tiny]: Lightning vs bare rows; 2T keeps the VAE's 4k+1 frames (5 -> 9)."""
    cfg = OmegaConf.load(CONF)
    cfg.merge_with({**TINY, "height": 16, "width": 16, "overrides": ["+experiment=i2v_latent_tiny"]})
    rows = run(cfg)
    assert [(r["shape"], r["frames"], r["size"]) for r in rows] == [("base", 5, "16x16"), ("2T", 9, "16x16"),
                                                                    ("2HW", 5, "16x32")]
    assert all(r["lightning_steps_s"] > 0 and r["bare_steps_s"] > 0 for r in rows)

"""`bench unet`: rows for our UNet and the diffusers peer, with FLOPs and timing from a real run."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from wantrain.benchmarks.unet import run

CONF = Path(__file__).resolve().parents[2] / "conf" / "bench" / "unet.yaml"


def test_bench_unet_rows() -> None:
    cfg = OmegaConf.load(CONF)
    cfg.merge_with({"device": "cpu", "batch_size": 1, "num_frames": 3, "height": 16, "width": 8, "iters": 1})
    rows = run(cfg)
    assert [r["model"] for r in rows] == ["SpatioTemporalUNet", "diffusers.UNet3DConditionModel"]
    ours, peer = rows
    for row in rows:
        assert row["gflop_fwd_bwd"] > 0 and row["fwd_bwd_ms"] > 0 and row["samples_per_s"] > 0
        assert row["mfu"] is None  # CPU: no peak
    assert 0.5 < peer["params_M"] / ours["params_M"] < 2.0  # matched parameter count
    assert ours["speed_per_flop_vs_diffusers"] > 0
    # FLOPs scale with the clip: doubling frames doubles the work
    cfg.merge_with({"num_frames": 6, "compare_diffusers": False})
    (longer,) = run(cfg)
    assert 1.8 < longer["gflop_fwd_bwd"] / ours["gflop_fwd_bwd"] < 2.2


def test_bench_unet_latent_shapes() -> None:
    """space=latent: the UNet is sized to the VAE latents of the clip (Wan factors: 4k+1 frames, 8x space)."""
    cfg = OmegaConf.load(CONF)
    cfg.merge_with({"device": "cpu", "batch_size": 1, "num_frames": 9, "height": 32, "width": 16, "iters": 1,
                    "compare_diffusers": False, "space": "latent", "latent": {"channels": 4}})
    (row,) = run(cfg)
    assert row["space"] == "latent" and row["model_input"] == "4x3x4x2" and row["frames"] == 9
    assert row["size"] == "32x16" and row["gflop_fwd_bwd"] > 0
    cfg.merge_with({"space": "pixel"})
    (pixel,) = run(cfg)
    assert pixel["model_input"] == "3x9x32x16" and pixel["gflop_fwd_bwd"] > 10 * row["gflop_fwd_bwd"]
    cfg.merge_with({"space": "latent", "num_frames": 8})
    with pytest.raises(ValueError, match="frames 4k\\+1"):
        run(cfg)

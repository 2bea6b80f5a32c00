"""`bench unet`: rows for our UNet and the diffusers peer, with FLOPs and timing from a real run."""

from __future__ import annotations

from pathlib import Path

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

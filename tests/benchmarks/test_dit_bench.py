"""`bench dit`: the Wan backbone through wantrain beside diffusers' direct call of the same transformer does the same
work (equal FLOPs), and its row says what the wrapper costs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from wantrain.benchmarks import dit


def test_wrapper_and_direct_call_do_the_same_work() -> None:
    cfg = OmegaConf.load(Path(dit.__file__).parents[2] / "conf" / "bench" / "dit.yaml")
    cfg.update(device="cpu", latent_height=8, latent_width=8, iters=2)
    ours, theirs = dit.run(cfg)
    assert ours["gflop_fwd_bwd"] == theirs["gflop_fwd_bwd"] > 0 and ours["params_M"] == theirs["params_M"]
    assert ours["fwd_bwd_ms"] > 0 and isinstance(ours["wrapper_overhead_pct"], float)
    assert theirs["speed_per_flop_vs_diffusers"] == 1.0

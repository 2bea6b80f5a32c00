"""scripts/gpu-check.sh: every launch of the one-shot GPU acceptance run works on the CPU at tiny sizes (--cpu), and
its one JSON report holds each part's figures; the CUDA-only parts say they were skipped. On a GPU:
`pytest -m gpu tests/test_gpu_check.py` runs the real thing (< 8 minutes on one GPU)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check.sh"


def run_check(out: Path, *flags: str, timeout: int) -> dict:
    """Run the script, return its report."""
    proc = subprocess.run([str(SCRIPT), "--out", str(out), *flags], capture_output=True, text=True, timeout=timeout)
    report = json.loads((out / "report.json").read_text())
    assert proc.returncode == 0, (report["failed"], proc.stdout[-2000:], proc.stderr[-2000:])
    return report


@pytest.mark.slow
def test_gpu_check_runs_every_part_on_cpu(tmp_path: Path) -> None:
    report = run_check(tmp_path, "--cpu", timeout=1500)
    parts = report["parts"]
    assert report["mode"] == "cpu" and report["failed"] == []
    assert set(parts) == {"shards", "plan", "plan_vs_measured", "fit_i2v_64", "bench_unet", "bench_unet_compile",
                          "bench_step", "fit_fsdp", "fit_dit_fsdp2", "fit_sr_stage1", "sample_cascade", "fit_sr_stage4"}
    assert "CUDA" in parts["fit_fsdp"]["skipped"] and "CUDA" in parts["bench_unet_compile"]["skipped"]
    assert "test_fsdp2_strategy" in parts["fit_dit_fsdp2"]["skipped"]
    assert "test_plan" in parts["plan"]["skipped"] and "test_plan" in parts["plan_vs_measured"]["skipped"]
    assert "test_bench" in parts["bench_unet"]["skipped"] and "test_bench_step" in parts["bench_step"]["skipped"]
    assert parts["fit_i2v_64"]["samples_per_s"] > 0  # read back from the CSV logger (perf/*)
    assert parts["sample_cascade"]["mp4_bytes"] > 0
    assert all(p.get("rc") == 0 for p in parts.values() if "skipped" not in p)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_check_on_gpu(tmp_path: Path) -> None:
    report = run_check(tmp_path, timeout=900)
    assert report["mode"] == "gpu" and report["parts"]["fit_i2v_64"]["gpu_mem_gb"] is not None
    assert report["parts"]["plan"]["rc"] == 0 and report["parts"]["fit_i2v_64"]["plan_mem_gib"] > 0
    assert 0.8 < report["parts"]["plan_vs_measured"]["ratio"] < 1.25  # real vs traced peak of the i2v_64 step
    assert report["parts"]["bench_unet"]["rows"][0]["gflop_fwd_bwd"] > 0 and report["parts"]["bench_step"]["rows"]
    dit = report["parts"]["fit_dit_fsdp2"]
    assert dit["rc"] == 0 and dit["plan_rc"] == 0 and dit["mfu"] > 0
    assert 0.5 < dit["gpu_mem_gb"] / (dit["plan_mem_gib"] * 2**30 / 1e9) < 1.5  # measured peak vs planned

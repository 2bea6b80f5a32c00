"""`python -m wantrain bench step` through the real CLI: Lightning vs bare-loop rows, table printed, JSON written."""

from __future__ import annotations

import json

import pytest

TINY = ["bench.batch_size=1", "bench.num_frames=2", "bench.height=8", "bench.width=8", "bench.steps=3",
        "bench.warmup=1", "bench.repeats=1", "bench.device=cpu", "bench.threads=1"]


@pytest.mark.slow
def test_bench_step_prints_a_table_and_writes_json(wantrain_cli, tmp_path):
    result = wantrain_cli(["bench", "step", *TINY], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wantrain bench step" in result.stdout
    (path,) = (tmp_path / "runs" / "bench").glob("step-*.json")
    report = json.loads(path.read_text())
    rows = report["rows"]
    assert [r["shape"] for r in rows] == ["base", "2T", "2HW"]
    assert [(r["frames"], r["size"]) for r in rows] == [(2, "8x8"), (4, "8x8"), (2, "8x16")]
    for r in rows:
        assert r["lightning_steps_s"] > 0 and r["bare_steps_s"] > 0
        assert abs(r["lightning_over_bare"] - r["bare_ms"] / r["lightning_ms"]) < 0.01
        assert r["peak_mem_gb_lightning"] > 0 and r["peak_mem_gb_bare"] > 0
    assert rows[0]["lightning_ms_vs_base"] == 1.0

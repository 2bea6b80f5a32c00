"""`python -m wantrain bench NAME` prints its table and writes JSON, through the real CLI."""

from __future__ import annotations

import json

import pytest

TINY = {
    "data": ["bench.num_clips=8", "bench.shard_size=4", "bench.source_frames=12", "bench.source_size=48",
             "bench.long_frames=48", "bench.num_frames=4", "bench.resolution=32", "bench.workers=[1]",
             "bench.repeats=1", "bench.length_trials=2"],
    "unet": ["bench.device=cpu", "bench.batch_size=1", "bench.num_frames=3", "bench.height=16", "bench.width=16",
             "bench.iters=1", "bench.compare_diffusers=false"],
    "upsampler": ["bench.device=cpu", "bench.size=16", "bench.tiled_size=32", "bench.tile=16", "bench.overlap=4",
                  "bench.repeats=1", "bench.pair_stages=[sr_tiny]"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_bench_prints_a_table_and_writes_json(wantrain_cli, tmp_path, name):
    result = wantrain_cli(["bench", name, *TINY[name]], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wantrain bench {name}" in result.stdout
    (path,) = (tmp_path / "runs" / "bench").glob(f"{name}-*.json")
    report = json.loads(path.read_text())
    assert report["benchmark"] == name and report["rows"]
    assert all(isinstance(row, dict) and row for row in report["rows"])
    if name == "upsampler":  # the data path: sr_tiny's pairs on the host against its planned GPU step
        (pairs,) = [row for row in report["rows"] if row["part"].startswith("pairs sr_tiny")]
        assert pairs["host_s_per_batch"] > 0 and pairs["gpu_step_s_H100"] > 0 and pairs["workers_to_hide"] >= 1
        assert 0 <= pairs["in_step_host_s"] < pairs["host_s_per_batch"]  # make_pairs=step: the codecs only

"""Buckets and images through the real CLI: refused shapes in one line, and a 2-process DDP fit on the mixed set."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from wantrain.__main__ import main


def _fit_args(data_dir: Path, run: str) -> list[str]:
    return ["fit", "data=mixed", f"paths.data_dir={data_dir}", f"run_name={run}", "data.num_workers=1",
            "trainer.limit_val_batches=0", "logger=csv", "print_config=false", "model.sampling.every_n_steps=0",
            "model.unet.micro_conditioning=[fps,motion]"]


@pytest.mark.parametrize("extra,message", [
    (["data.buckets=[[33,48,8],[32,32,8]]"],
     "data.buckets: bucket 33x48x8 (HxWxT) is not divisible by the downsampling factor 2; use H and W that are "
     "multiples of 2 (e.g. 32x48x8)"),
    (["model.unet.channel_mult=[1,2,2,2,2,2]"], "bucket 32x48x8 (HxWxT) is not divisible by the downsampling "
                                                "factor 32"),
    (["trainer=ddp_cpu"], "data.image_shards under DDP: image steps (T = 1) leave the UNet's temporal layers"),
])
def test_a_bad_bucket_or_strategy_is_refused_at_start_in_one_line(data_dir, tmp_path, capsys, monkeypatch, extra,
                                                                   message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    try:
        code = main([*_fit_args(data_dir, "bad"), "trainer.max_steps=1", *extra])
    except SystemExit as stop:
        code = stop.code
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("wantrain: error: ") and message in last, last
    assert not (tmp_path / "runs").exists()


def _last_counts(run_dir: Path) -> dict[str, float]:
    rows = list(csv.DictReader(next(run_dir.rglob("metrics.csv")).open()))
    names = [c for c in rows[0] if c.startswith("data/")]
    return {n: float(next((r[n] for r in reversed(rows) if r.get(n)), 0.0)) for n in names}


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_fit_on_mixed_shapes_and_images_draws_several_buckets_and_counts_filters(data_dir, tmp_path,
                                                                                     wantrain_cli):
    args = [*_fit_args(data_dir, "mix"), f"paths.root_dir={tmp_path}", "trainer=ddp_cpu",
            "trainer.strategy=ddp_find_unused_parameters_true", "data.samples_per_epoch=64", "trainer.max_steps=14"]
    done = wantrain_cli(args, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "data buckets (7; image batches: 25% of steps)" in done.stdout
    counts = _last_counts(tmp_path / "runs" / "mix")
    videos = {k: v for k, v in counts.items() if k.startswith("data/bucket_") and not k.endswith("x1")}
    images = {k: v for k, v in counts.items() if k.startswith("data/bucket_") and k.endswith("x1")}
    assert sum(v > 0 for v in videos.values()) >= 3, counts
    assert sum(images.values()) > 0, counts
    assert counts["data/filtered_aesthetic_score"] > 0 and counts["data/skipped_fraction"] == 0, counts

"""Buckets and images through the real CLI: refused shapes in one line, and a 2-process DDP fit on the mixed set."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from wantrain.__main__ import main
from wantrain.commands import fit


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
    (["trainer=ddp_cpu", "trainer.strategy=ddp_find_unused_parameters_false"],  # plain ddp is switched
     "data.image_shards under DDP: image steps (T = 1) leave the UNet's temporal layers"),
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
            "data.samples_per_epoch=64", "trainer.max_steps=14"]
    done = wantrain_cli(args, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # plain ddp + image shards: fit switched to find_unused_parameters itself, said once
    assert done.stdout.count("trainer.strategy=ddp_find_unused_parameters_true: data.image_shards adds") == 1
    assert "data buckets (7; image batches: 25% of steps)" in done.stdout
    counts = _last_counts(tmp_path / "runs" / "mix")
    videos = {k: v for k, v in counts.items() if k.startswith("data/bucket_") and not k.endswith("x1")}
    images = {k: v for k, v in counts.items() if k.startswith("data/bucket_") and k.endswith("x1")}
    assert sum(v > 0 for v in videos.values()) >= 3, counts
    assert sum(images.values()) > 0, counts
    assert counts["data/filtered_aesthetic_score"] > 0 and counts["data/skipped_fraction"] == 0, counts


def _tensors_equal(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors bitwise equal."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _tensors_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _tensors_equal(x, y, f"{where}[{i}]")


@pytest.mark.slow
def test_a_fit_with_buckets_and_images_resumed_mid_epoch_ends_bitwise_like_the_whole_run(data_dir, tmp_path,
                                                                                         compose):
    overrides = ["data=mixed", f"paths.data_dir={data_dir}", "logger=csv", "print_config=false",
                 "data.num_workers=1", "data.samples_per_epoch=48", "trainer.limit_val_batches=0",
                 "trainer.max_steps=6", "model.unet.model_channels=16", "model.sampling.every_n_steps=0",
                 "model.unet.micro_conditioning=[fps,motion]", "callbacks.model_checkpoint.every_n_train_steps=3",
                 "callbacks.model_checkpoint.save_top_k=-1"]
    fit.run(compose(*overrides, "run_name=whole", root=tmp_path))
    step3 = tmp_path / "runs" / "whole" / "checkpoints" / "step0000003.ckpt"
    resumed = tmp_path / "runs" / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copy(step3, resumed / step3.name)
    fit.run(compose(*overrides, "run_name=resumed", root=tmp_path))
    whole, again = (torch.load(tmp_path / "runs" / n / "checkpoints" / "last.ckpt", weights_only=False)
                    for n in ("whole", "resumed"))
    assert whole["global_step"] == again["global_step"] == 6
    _tensors_equal(whole["state_dict"], again["state_dict"], "state_dict")
    _tensors_equal(whole["optimizer_states"], again["optimizer_states"], "optimizer")
    counts = [c for k, c in whole["callbacks"].items() if "DataCounts" in k][0]
    assert counts == [c for k, c in again["callbacks"].items() if "DataCounts" in k][0]
    assert sum(t > 0 for n, t in zip(counts["names"], counts["total"]) if n.startswith("bucket_")) >= 3


def test_bucket_and_fps_settings_that_cannot_work_are_refused_in_one_line():
    from wantrain.errors import WantrainError
    from wantrain.training.datamodule import VideoShardDataModule

    for kwargs, message in (({"buckets": [[32, 32, 1]]}, "data.buckets has no video bucket"),
                            ({"fps": [8, 0]}, "data.fps must be a positive number or a list"),
                            ({"image_shards": "x.tar"}, "data.image_ratio=0.0"),
                            ({"buckets": [[32, 32, 8]], "embeddings": ["latent"]}, "cannot be used with cached")):
        with pytest.raises(WantrainError, match=message):
            VideoShardDataModule(train_shards="x.tar", num_frames=8, resolution=32, **kwargs)
    dm = VideoShardDataModule(train_shards="x.tar", num_frames=8, resolution=32, batch_size=4, fps=[6, 8],
                              buckets=[[32, 32, 8], [32, 48, 8, 3]], image_shards="i.tar", image_ratio=0.5)
    assert dm.bucket_names == ["32x32x8", "32x48x8", "32x32x1", "32x48x1"]
    assert dm.mean_batch_size() == 0.5 * (4 + 3) / 2 + 0.5 * (32 + 21) / 2

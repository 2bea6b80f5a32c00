"""Corrupt shards: a real Lightning run goes through and the skip counters equal what was injected."""

from __future__ import annotations

import json
import tarfile

import pytest
import pytorch_lightning as pl
import torch

from wantrain.data.synthetic import synthetic_sample
from wantrain.errors import WantrainError
from wantrain.io.tar import write_shard
from wantrain.training.datamodule import VideoShardDataModule
from wantrain.training.skip_monitor import SkippedSamplesMonitor

CLIP = dict(num_frames=10, size=32, fps=8, gop=5)


class TinyVideoModel(pl.LightningModule):
    """A real (small) model: Conv3d over the clip, regress the conditioning image's mean colour."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Conv3d(3, 3, kernel_size=3, padding=1)
        self.seen: list[str] = []

    def training_step(self, batch, batch_idx):
        self.seen += batch["key"]
        pred = self.net(batch["video"]).mean(dim=(2, 3, 4))  # (B, 3)
        loss = torch.nn.functional.mse_loss(pred, batch["image"].mean(dim=(2, 3)))
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.net(batch["video"]).abs().mean(), batch_size=len(batch["key"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _write(path, samples):
    write_shard(path, ({"__key__": key, **members} for key, members in samples))


def corrupt_set(root):
    """4 shards: 14 good samples and one of each corruption kind; returns (shard paths, injected counts)."""
    good = lambda i: synthetic_sample(11, i, **CLIP)  # noqa: E731
    short = synthetic_sample(11, 99, **{**CLIP, "num_frames": 4})
    bad_json = {**good(20), "json": b"{not json"}
    no_caption = {k: v for k, v in good(21).items() if k != "txt"}
    no_caption["json"] = json.dumps({"fps": 8}).encode()
    shards = [
        [(f"{i:04d}", good(i)) for i in range(4)] + [("g0", {**good(22), "mp4": b"\x00garbage" * 64})],
        [(f"{i:04d}", good(i)) for i in range(4, 8)] + [("s0", short), ("j0", bad_json)],
        [(f"{i:04d}", good(i)) for i in range(8, 11)] + [("c0", no_caption), ("z0", {**good(23), "txt": b""})],
        [(f"{i:04d}", good(i)) for i in range(11, 15)],
    ]
    paths = []
    for n, samples in enumerate(shards):
        paths.append(root / f"bad-{n}.tar")
        _write(paths[-1], samples)
    with tarfile.open(paths[3]) as tar:  # truncate the last shard inside its last sample's video
        last_video = [m for m in tar.getmembers() if m.name.endswith(".mp4")][-1]
    paths[3].write_bytes(paths[3].read_bytes()[: last_video.offset_data + last_video.size // 2])
    injected = {"undecodable_video": 1, "too_short": 1, "bad_json": 1, "missing_caption": 1, "zero_size": 1,
                "truncated_tar": 1}
    return [str(p) for p in paths], injected


def test_training_on_corrupt_shards_counts_every_skip(tmp_path):
    shards, injected = corrupt_set(tmp_path)
    dm = VideoShardDataModule(train_shards=shards, val_shards=shards, batch_size=2, num_workers=2, num_frames=8,
                              resolution=32, resampled=False, max_skip_fraction=0.9)
    model, monitor = TinyVideoModel(), SkippedSamplesMonitor(min_samples=4)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                         num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    logged = {k[len("data/skipped_"):]: int(v) for k, v in trainer.callback_metrics.items()
              if k.startswith("data/skipped_") and k != "data/skipped_fraction"}
    assert logged == injected  # the running totals the monitor logs, summed over ranks
    assert len(model.seen) == 14  # the 15th good sample sat in the truncated tail
    assert trainer.callback_metrics["data/skipped_fraction"] == pytest.approx(6 / 20)
    assert trainer.callback_metrics["data/val_skipped_bad_json"] == 1


def test_mostly_broken_data_stops_training_with_a_clear_error(tmp_path):
    good = synthetic_sample(11, 0, **CLIP)
    _write(tmp_path / "broken.tar", [(f"{i:03d}", {**good, "mp4": b"junk" * 50} if i % 4 else good) for i in range(40)])
    dm = VideoShardDataModule(train_shards=str(tmp_path / "broken.tar"), batch_size=2, num_workers=0, num_frames=8,
                              resolution=32, samples_per_epoch=40, max_skip_fraction=0.3)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[SkippedSamplesMonitor(min_samples=16)])
    expected = r"\d+\.\d% of \d+ samples were skipped \(undecodable_video=.*max_skip_fraction=0\.3"
    with pytest.raises(WantrainError, match=expected):
        trainer.fit(TinyVideoModel(), datamodule=dm)

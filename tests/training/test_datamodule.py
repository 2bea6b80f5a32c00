"""VideoShardDataModule: synthetic generation in prepare_data, clear errors, and DDP (2 ranks, subprocess)."""

from __future__ import annotations

import json

import pytest
import torch

from wantrain.training.datamodule import VideoShardDataModule

SYN = dict(num_clips=8, num_val_clips=3, shard_size=2, num_frames=10, size=32, fps=8, gop=5, seed=1)


def test_prepare_data_writes_the_synthetic_set_then_batches_follow_the_contract(tmp_path):
    out = tmp_path / "data" / "synthetic"
    dm = VideoShardDataModule(train_shards=str(out / "train-{00000..00003}.tar"), val_shards=str(out / "val-*.tar"),
                              batch_size=2, num_workers=0, num_frames=8, resolution=[32, 24], samples_per_epoch=6,
                              synthetic={"out_dir": str(out), **SYN})
    with pytest.raises(FileNotFoundError, match=r"data\.train_shards: shard .*train-00000\.tar does not exist"):
        dm.train_dataloader()
    dm.prepare_data()
    assert sorted(p.name for p in out.glob("*.tar"))[-1] == "val-00001.tar"
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 3  # samples_per_epoch / batch_size
    b = batches[0]
    assert b["video"].shape == (2, 3, 8, 32, 24) and b["image"].shape == (2, 3, 32, 24)
    assert b["video"].dtype == torch.float32 and b["video"].abs().max() <= 1.0
    val_keys = [k for batch in dm.val_dataloader() for k in batch["key"]]
    assert val_keys == ["000000008", "000000009", "000000010"]


def test_missing_shards_without_synthetic_say_how_to_fix(tmp_path):
    dm = VideoShardDataModule(train_shards=str(tmp_path / "nothing" / "*.tar"), num_workers=0)
    with pytest.raises(FileNotFoundError, match=r"matches no shards.*configure data\.synthetic"):
        dm.train_dataloader()


DDP_SCRIPT = """
import json, sys
import pytorch_lightning as pl
import torch
from wantrain.training.datamodule import VideoShardDataModule
from wantrain.training.skip_monitor import SkippedSamplesMonitor

out, syn = sys.argv[1], json.loads(sys.argv[2])

class Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.train_keys, self.val_keys, self.batches = [], [], 0
    def training_step(self, batch, i):
        self.train_keys += batch["key"]
        self.batches += 1
        return self.lin(batch["video"].mean(dim=(2, 3, 4))).pow(2).mean()
    def validation_step(self, batch, i):
        self.val_keys += batch["key"]
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
    def on_fit_end(self):
        with open(f"{out}/rank{self.global_rank}.json", "w") as f:
            json.dump({"train": self.train_keys, "val": self.val_keys, "batches": self.batches}, f)

if __name__ == "__main__":
    dm = VideoShardDataModule(train_shards=f"{out}/syn/train-{{00000..00003}}.tar", val_shards=f"{out}/syn/val-*.tar",
                              batch_size=2, num_workers=1, num_frames=6, resolution=24, samples_per_epoch=12,
                              synthetic={"out_dir": f"{out}/syn", **syn})
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[SkippedSamplesMonitor()])
    trainer.fit(Recorder(), datamodule=dm)
"""


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_see_disjoint_shards_and_equal_batches(python_script, tmp_path):
    proc = python_script(DDP_SCRIPT, tmp_path, str(tmp_path), json.dumps(SYN), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["batches"] == ranks[1]["batches"] == 2 * 3  # 2 epochs x 12 samples / (2 per batch x 2 ranks)
    shard_of = lambda key: int(key) // SYN["shard_size"]  # noqa: E731
    shards = [{shard_of(k) for k in r["train"]} for r in ranks]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    val = [r["val"] for r in ranks]
    assert not set(val[0]) & set(val[1])  # each val clip on one rank, once per epoch (2 epochs)
    assert sorted(val[0] + val[1]) == sorted(["000000008", "000000009", "000000010"] * 2)

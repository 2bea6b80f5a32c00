"""ThroughputMonitor in a real tiny Lightning fit: perf/* columns land in the CSV log with sane values."""

from __future__ import annotations

import csv
import time

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from wantrain.data.synthetic import caption_corpus
from wantrain.training.throughput import ThroughputMonitor, peak_tflops

SLEEP_S = 0.05  # per batch in the loader, so the steps really wait for data


class SlowBatches(Dataset):
    """Six copies of one batch, each fetched after a short sleep."""

    def __init__(self) -> None:
        video = torch.rand(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.batch = {"video": video, "image": video[:, :, 0].clone(), "caption": caption_corpus()[:2],
                      "key": ["a", "b"], "skipped": {}}

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> dict:
        time.sleep(SLEEP_S)
        return self.batch


def test_throughput_monitor_logs_perf_columns(compose, tmp_path):
    cfg = compose(root=tmp_path)
    model = instantiate(cfg.model)
    monitor = ThroughputMonitor(log_every_n_steps=2, measure_flops=True, peak_tflops=1.0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=6, max_epochs=1, logger=CSVLogger(tmp_path / "logs"),
                         callbacks=[monitor], enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=2)
    trainer.fit(model, train_dataloaders=DataLoader(SlowBatches(), batch_size=None))

    (metrics_file,) = (tmp_path / "logs").rglob("metrics.csv")
    rows = [r for r in csv.DictReader(metrics_file.open()) if r.get("perf/samples_per_s")]
    assert [int(r["step"]) for r in rows] == [3, 5]  # first batch is warm-up; then every 2 optimizer steps
    for r in rows:
        samples = float(r["perf/samples_per_s"])
        assert samples > 0
        assert float(r["perf/frames_per_s"]) == pytest.approx(samples * 4)
        assert float(r["perf/pixels_per_s"]) == pytest.approx(samples * 4 * 16 * 16)
        wait = float(r["perf/data_wait_fraction"])
        assert 0 < wait <= 1
        # each step sleeps SLEEP_S in the loader: the wait share matches that sleep over the measured step time
        step_s = 2 / samples
        assert wait * step_s >= 0.8 * SLEEP_S
        assert float(r["perf/tflops"]) > 0
        assert float(r["perf/mfu"]) == pytest.approx(float(r["perf/tflops"]) / 1.0)
    assert monitor.flops_per_step and monitor.flops_per_step > 1e6
    assert "perf/gpu_mem_gb" not in rows[0] or not rows[0]["perf/gpu_mem_gb"]  # CPU: no GPU memory


def test_peak_tflops_is_known_only_with_a_gpu_or_an_override():
    assert peak_tflops(torch.device("cpu")) is None
    assert peak_tflops(torch.device("cpu"), 100.0) == 100.0

"""`ThroughputMonitor`: samples/frames/pixels per second, data-wait fraction, TFLOP/s, MFU and GPU memory per step."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense bf16 tensor-core peaks (TFLOP/s) by GPU name substring, most specific first.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
                    "A10G": 70.0, "RTX 4090": 165.0, "V100": 125.0}


def peak_tflops(device: torch.device, override: float | None = None) -> float | None:
    """The bf16 dense peak of `device` (None on CPU or an unknown GPU without an override): MFU's denominator."""
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


class ThroughputMonitor(pl.Callback):
    """Logs `perf/*` every `log_every_n_steps` optimizer steps (rank 0 values, straight to the loggers).

    Rates are averaged over the steps since the previous log; the first batch is never timed (warm-up,
    and it is the one whose FLOPs are counted). On CUDA it synchronises only when it logs; on CPU never.
    """

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        flops_per_step: float | None = None,
        peak_tflops: float | None = None,
        measure_flops: bool | None = None,
    ) -> None:
        """`log_every_n_steps` None = the Trainer's; `flops_per_step` (per training batch) None = counted once
        with FlopCounterMode on the first batch when `measure_flops` (None = on CUDA only); `peak_tflops` None =
        the bf16 dense peak looked up from the GPU name (MFU is logged only when a peak is known)."""
        super().__init__()
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"ThroughputMonitor log_every_n_steps must be >= 1, got {log_every_n_steps}")
        self.log_every_n_steps = log_every_n_steps
        self.flops_per_step = float(flops_per_step) if flops_per_step else None
        self.peak_tflops_override = float(peak_tflops) if peak_tflops else None
        self.measure_flops = measure_flops
        self._counter: FlopCounterMode | None = None
        self._peak: float | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._last_end: float | None = None  # perf_counter at the end of the previous train batch
        self._interval_start: float | None = None  # perf_counter where the current averaging interval began
        self._last_logged_step = 0
        self._wait = 0.0
        self._batches = self._samples = self._frames = self._pixels = 0

    # --- hooks -------------------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reset the counters and look up the peak TFLOP/s of this device."""
        self._reset_state()
        self._last_logged_step = trainer.global_step
        self._peak = peak_tflops(pl_module.device, self.peak_tflops_override)
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Book the time since the previous batch ended as data wait; count FLOPs on the first batch."""
        now = time.perf_counter()
        if self._last_end is not None:
            self._wait += now - self._last_end
        measure = self.measure_flops if self.measure_flops is not None else pl_module.device.type == "cuda"
        if self.flops_per_step is None and measure and self._interval_start is None and self._counter is None:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Accumulate the batch's sizes; every `log_every_n_steps` optimizer steps, log the interval's rates."""
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops_per_step = float(self._counter.get_total_flops()) or None
            self._counter = None
        b, t, h, w = video_sizes(batch)
        cuda = pl_module.device.type == "cuda"
        if self._interval_start is None:  # first batch: warm-up, start the clock at its end
            if cuda:
                torch.cuda.synchronize(pl_module.device)
            self._interval_start = self._last_end = time.perf_counter()
            self._wait = 0.0
            self._last_logged_step = trainer.global_step
            return
        self._batches += 1
        self._samples += b
        self._frames += b * t
        self._pixels += b * t * h * w
        every = self.log_every_n_steps or trainer.log_every_n_steps or 1
        if trainer.global_step - self._last_logged_step < every:
            self._last_end = time.perf_counter()
            return
        if cuda:
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        elapsed = max(now - self._interval_start, 1e-12)
        metrics = {
            "perf/samples_per_s": self._samples / elapsed,
            "perf/frames_per_s": self._frames / elapsed,
            "perf/pixels_per_s": self._pixels / elapsed,
            "perf/data_wait_fraction": min(1.0, self._wait / elapsed),
        }
        if self.flops_per_step:
            tflops = self.flops_per_step * self._batches / elapsed / 1e12
            metrics["perf/tflops"] = tflops
            if self._peak:
                metrics["perf/mfu"] = tflops / self._peak
        if cuda:
            metrics["perf/gpu_mem_gb"] = torch.cuda.max_memory_allocated(pl_module.device) / 1e9
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        self._last_logged_step = trainer.global_step
        self._wait = 0.0
        self._batches = self._samples = self._frames = self._pixels = 0
        self._interval_start = self._last_end = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close a FLOP counter left open by an interrupted first batch."""
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None


def video_sizes(batch: Any) -> tuple[int, int, int, int]:
    """(B, T, H, W) of `batch["video"]` (B, C, T, H, W)."""
    video = batch.get("video") if isinstance(batch, dict) else None
    if not isinstance(video, torch.Tensor) or video.ndim != 5:
        raise ValueError("ThroughputMonitor needs batches with a 'video' tensor (B, C, T, H, W); "
                         "drop the ThroughputMonitor callback for this model")
    b, _, t, h, w = video.shape
    return int(b), int(t), int(h), int(w)

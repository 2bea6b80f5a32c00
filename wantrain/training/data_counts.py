"""DataCountsMonitor: log how many samples each bucket got and how many the metadata filters left out."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class DataCountsMonitor(pl.Callback):
    """Sums, over DDP ranks, the samples per bucket (`data/bucket_<H>x<W>x<T>`, images under their T = 1 bucket)
    and the samples filtered out per reason (`data/filtered_<reason>`: data.filters fields, too_small); running
    totals, logged every step. Filtered samples are not skips: they never count toward data.max_skip_fraction.

    The names come from the datamodule (`bucket_names`, `filter_reasons`) so every rank reduces the same vector.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.total = torch.zeros(0, dtype=torch.float64)

    def _ensure(self, trainer: pl.Trainer) -> None:
        if self.names:
            return
        dm = trainer.datamodule
        buckets = list(getattr(dm, "bucket_names", []) or [])
        reasons = list(getattr(dm, "filter_reasons", []) or [])
        names = [f"bucket_{b}" for b in buckets] + [f"filtered_{r}" for r in reasons]
        saved = dict(zip(self.names or getattr(self, "_saved_names", []), self.total.tolist()))
        self.names = names
        self.total = torch.tensor([float(saved.get(n, 0.0)) for n in names], dtype=torch.float64)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Add this batch's bucket and filtered counts (all ranks) and log the totals."""
        if not isinstance(batch, dict) or "bucket" not in batch:
            return
        self._ensure(trainer)
        if not self.names:
            return
        step = torch.zeros(len(self.names), dtype=torch.float64)
        name = f"bucket_{batch['bucket']}"
        if name in self.names:
            step[self.names.index(name)] += len(batch["key"])
        for reason, count in (batch.get("filtered") or {}).items():
            if f"filtered_{reason}" in self.names:
                step[self.names.index(f"filtered_{reason}")] += count
        if trainer.world_size > 1:
            step = trainer.strategy.reduce(step.to(trainer.strategy.root_device, torch.float32), reduce_op="sum")
            step = step.detach().cpu().to(torch.float64)
        self.total += step
        metrics = {f"data/{n}": float(c) for n, c in zip(self.names, self.total.tolist())
                   if c or n.startswith("bucket_")}
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, logger=True, sync_dist=False)

    def state_dict(self) -> dict[str, Any]:
        """Totals by name, so the counts carry over a resume."""
        return {"names": list(self.names), "total": self.total.tolist()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore totals saved by state_dict (matched by name when the run starts)."""
        self._saved_names = list(state_dict.get("names", []))
        self.total = torch.tensor(state_dict.get("total", []), dtype=torch.float64)
        self.names = []

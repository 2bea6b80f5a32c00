"""SkippedSamplesMonitor: log the data pipeline's skip counts and stop when most data is broken."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from wantrain.data.skips import SKIP_REASONS
from wantrain.errors import WantrainError


class SkippedSamplesMonitor(pl.Callback):
    """Sums batch["skipped"] over ranks; logs data/skipped_<reason> and data/skipped_fraction; enforces the ceiling.

    The ceiling is `max_skip_fraction` if given, else the datamodule's; it is checked once at least
    `min_samples` samples (used + skipped, all ranks) have gone by.
    """

    def __init__(self, max_skip_fraction: float | None = None, min_samples: int = 64) -> None:
        super().__init__()
        self.max_skip_fraction, self.min_samples = max_skip_fraction, int(min_samples)
        self.total = torch.zeros(len(SKIP_REASONS) + 1, dtype=torch.float64)  # [used, *reasons] over all ranks
        self.val_local = torch.zeros(len(SKIP_REASONS), dtype=torch.float64)

    @staticmethod
    def _vector(skipped: dict[str, int] | None) -> torch.Tensor:
        v = torch.zeros(len(SKIP_REASONS), dtype=torch.float64)
        for reason, count in (skipped or {}).items():
            v[SKIP_REASONS.index(reason) if reason in SKIP_REASONS else SKIP_REASONS.index("other")] += float(count)
        return v

    def _ceiling(self, trainer: pl.Trainer) -> float | None:
        if self.max_skip_fraction is not None:
            return float(self.max_skip_fraction)
        value = getattr(trainer.datamodule, "max_skip_fraction", None) if trainer.datamodule is not None else None
        return None if value is None else float(value)

    def _reduce(self, trainer: pl.Trainer, v: torch.Tensor) -> torch.Tensor:
        if trainer.world_size <= 1:
            return v.clone()
        out = trainer.strategy.reduce(v.to(trainer.strategy.root_device, torch.float32), reduce_op="sum")
        return out.detach().cpu().to(torch.float64)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Accumulate this batch's skips, log the running totals and check the ceiling."""
        if not isinstance(batch, dict) or "skipped" not in batch:
            return
        step = torch.cat([torch.tensor([float(len(batch.get("key", batch["video"])))]), self._vector(batch["skipped"])])
        self.total += self._reduce(trainer, step)
        used, skipped = float(self.total[0]), self.total[1:]
        seen = used + float(skipped.sum())
        fraction = float(skipped.sum()) / seen if seen else 0.0
        metrics = {f"data/skipped_{r}": float(c) for r, c in zip(SKIP_REASONS, skipped.tolist()) if c}
        metrics["data/skipped_fraction"] = fraction
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, logger=True, sync_dist=False)
        ceiling = self._ceiling(trainer)
        if ceiling is not None and seen >= self.min_samples and fraction > ceiling:
            ranked = sorted(zip(SKIP_REASONS, skipped.tolist()), key=lambda x: -x[1])
            worst = ", ".join(f"{r}={int(c)}" for r, c in ranked if c)
            raise WantrainError(
                f"{fraction:.1%} of {int(seen)} samples were skipped ({worst}) > data.max_skip_fraction={ceiling}: "
                "the shards are mostly broken; check them (see the warnings) or raise data.max_skip_fraction"
            )

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        """Accumulate validation skips (logged at the end of the validation epoch)."""
        if isinstance(batch, dict) and "skipped" in batch:
            self.val_local += self._vector(batch["skipped"])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log data/val_skipped_<reason> summed over ranks for this validation pass."""
        counts = self._reduce(trainer, self.val_local)
        self.val_local.zero_()
        if trainer.sanity_checking:
            return
        metrics = {f"data/val_skipped_{r}": float(c) for r, c in zip(SKIP_REASONS, counts.tolist()) if c}
        if metrics:
            pl_module.log_dict(metrics, on_step=False, on_epoch=True, logger=True, sync_dist=False)

    def state_dict(self) -> dict[str, Any]:
        """Totals, so the skipped fraction carries over a resume."""
        return {"total": self.total.tolist(), "reasons": list(SKIP_REASONS)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore totals saved by state_dict (matching reasons by name)."""
        saved = dict(zip(["used", *state_dict.get("reasons", [])], state_dict.get("total", [])))
        self.total = torch.tensor([float(saved.get(k, 0.0)) for k in ["used", *SKIP_REASONS]], dtype=torch.float64)

"""The video-quality metrics (`evaluation/video_quality.py`) during training: every N validations, on the EMA samples
of the validation clips the module kept, logged as val/<metric> (mean over ranks)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from wantrain.evaluation.video_quality import VideoQuality


class VideoQualityMetrics(pl.Callback):
    """Every `every_n_validations` validations (not the sanity check, not fast_dev_run): the module's EMA samples of
    its kept validation clips (`pl_module.sampled_examples()`, shared with the sample videos) scored by
    `VideoQuality(**options)`; the networks load on first use, and the weights each metric used are printed once."""

    def __init__(self, every_n_validations: int, **options: Any) -> None:
        self.every_n_validations, self.options = int(every_n_validations), options
        self.quality: VideoQuality | None = None
        self.validations = 0

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or not self.every_n_validations:
            return
        self.validations += 1
        examples = getattr(pl_module, "val_examples", None)
        if examples is None or self.validations % self.every_n_validations:
            return
        if self.quality is None:
            options = dict(self.options)
            options["fps"] = options.get("fps") or _data_fps(trainer)
            self.quality = VideoQuality(**options, device=str(pl_module.device))
        videos = pl_module.sampled_examples(examples)
        metrics = self.quality(videos, examples["image"].to(videos.device), list(examples["caption"]))
        for name, value in metrics.items():
            pl_module.log(f"val/{name}", float(value), batch_size=videos.shape[0], sync_dist=True)
        if self.validations == self.every_n_validations:  # the first time
            weights = self.quality.weights(metrics)
            rank_zero_info("video metrics: " + "; ".join(f"{k} <- {v}" for k, v in weights.items()))


def _data_fps(trainer: pl.Trainer) -> float | None:
    """The data module's clip frame rate when it has one number (a list draws one per clip)."""
    fps = getattr(getattr(trainer, "datamodule", None), "fps", None)
    return float(fps) if isinstance(fps, (int, float)) else None

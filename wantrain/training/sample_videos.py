"""Sample videos made during validation: PSNR against ground truth, mp4 files in the run directory, logger media."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from wantrain.data.synthetic import encode_mp4


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu()


def side_by_side(truth: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Ground truth | sample for each clip, clips stacked vertically: (B, 3, T, H, W) x2 -> (T, B*H, 2*W, 3) uint8."""
    rows = [torch.cat([to_uint8_frames(t), to_uint8_frames(s)], dim=2) for t, s in zip(truth, samples)]
    return torch.cat(rows, dim=1)


class SampleVideoWriter:
    """Writes `RUN_DIR/samples/stepNNNNNNN.mp4` (truth | sample) and hands the file to the loggers."""

    def __init__(self, fps: int = 8, folder: str = "samples") -> None:
        self.fps = fps
        self.folder = folder

    @staticmethod
    def psnr(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """PSNR (dB) of sampled clips against the ground truth, both in [-1, 1]."""
        return peak_signal_noise_ratio(samples.float(), truth.float().to(samples.device), data_range=(-1.0, 1.0))

    def write(self, trainer: pl.Trainer, examples: dict[str, Any], samples: torch.Tensor, step: int) -> Path:
        """Encode the comparison video, save it with its captions, and log it to every logger that takes media."""
        folder = Path(trainer.default_root_dir) / self.folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step{step:07d}.mp4"
        path.write_bytes(encode_mp4(side_by_side(examples["video"], samples).numpy(), fps=self.fps))
        captions = list(examples.get("caption", []))
        path.with_suffix(".json").write_text(json.dumps({"step": step, "captions": captions,
                                                         "layout": "rows: clips; left: truth, right: sample"}))
        for logger in trainer.loggers:
            log_video(logger, path, " | ".join(captions), step, self.fps)
        return path


def log_video(logger: Any, path: Path, caption: str, step: int, fps: int) -> None:
    """Log an mp4 file as media where the logger supports it (wandb: the file; TensorBoard: a frame strip)."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        logger.experiment.log({"val/samples": wandb.Video(str(path), caption=caption, format="mp4"),
                               "trainer/global_step": step})
    elif isinstance(logger, TensorBoardLogger):
        # TensorBoard's add_video needs moviepy: log the frames as one image strip instead (time runs left to right)
        from wantrain.data.video import open_video

        reader = open_video(path.read_bytes())
        frames = reader.get_frames(list(range(reader.meta.num_frames or 0)))
        reader.close()
        strip = torch.from_numpy(frames).permute(1, 0, 2, 3).flatten(1, 2)  # (T, H, W, 3) -> (H, T*W, 3)
        logger.experiment.add_image("val/samples", strip, global_step=step, dataformats="HWC")

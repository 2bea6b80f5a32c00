"""Videos made during validation: mp4 files (+ a JSON note) in run_dir/samples/, handed to the loggers as media."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from wantrain.io.mp4 import encode_mp4, to_uint8


def side_by_side(truth: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Ground truth | sample for each clip, clips stacked vertically: (B, 3, T, H, W) x2 -> (T, B*H, 2*W, 3) uint8."""
    rows = [torch.cat([torch.from_numpy(to_uint8(t)), torch.from_numpy(to_uint8(s))], dim=2)
            for t, s in zip(truth, samples)]
    return torch.cat(rows, dim=1)


def write_video(trainer: pl.Trainer, name: str, frames: torch.Tensor, note: dict[str, Any], caption: str, step: int,
                fps: int, folder: str = "samples") -> Path:
    """Encode frames (T, H, W, 3) uint8 as run_dir/FOLDER/NAME.mp4 with NAME.json (`note`), log it as media."""
    out = Path(trainer.default_root_dir) / folder
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.mp4"
    path.write_bytes(encode_mp4(frames.numpy(), fps=fps))
    path.with_suffix(".json").write_text(json.dumps(note))
    for logger in trainer.loggers:
        log_video(logger, path, caption, step, fps)
    return path


class SampleVideoWriter:
    """Writes `RUN_DIR/samples/stepNNNNNNN.mp4` (truth | sample) and hands the file to the loggers."""

    def __init__(self, fps: int = 8, folder: str = "samples") -> None:
        self.fps = fps
        self.folder = folder

    def write(self, trainer: pl.Trainer, examples: dict[str, Any], samples: torch.Tensor, step: int) -> Path:
        """Encode the comparison video, save it with its captions, and log it to every logger that takes media."""
        captions = list(examples.get("caption", []))
        note = {"step": step, "captions": captions, "layout": "rows: clips; left: truth, right: sample"}
        return write_video(trainer, f"step{step:07d}", side_by_side(examples["video"], samples), note,
                           " | ".join(captions), step, self.fps, self.folder)


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

"""Videos made during validation: mp4 files (+ a JSON note) in run_dir/samples/, handed to the loggers as media."""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass
class SampleVideo:
    """A comparison video a module made from its validation examples: RUN_DIR/samples/NAME.mp4 and its JSON note."""

    name: str
    frames: torch.Tensor  # (T, H, W, 3) uint8
    note: dict[str, Any]
    caption: str


class SampleVideos(pl.Callback):
    """Every `every_n_steps` training steps (0: never), at the end of validation (not the sanity check, not
    fast_dev_run): asks the module for a video of the examples it kept (`pl_module.val_examples`, reset after every
    validation) with `pl_module.sample_video(examples)` on every rank, and writes it on rank 0 to
    RUN_DIR/FOLDER/NAME.mp4 (+ NAME.json), handing it to the loggers. The modules add it in `configure_callbacks()`
    from their own config (`model.sampling`, `model.validation`)."""

    def __init__(self, every_n_steps: int = 0, fps: int = 8, folder: str = "samples") -> None:
        self.every_n_steps, self.fps, self.folder = int(every_n_steps or 0), int(fps), folder
        self.last_step = -1  # the step of the last video (not checkpointed: a resumed run writes one at once)

    def due(self, trainer: pl.Trainer) -> bool:
        """A video is due at this validation: `every_n_steps` steps since the last one (or none yet)."""
        if not self.every_n_steps or trainer.sanity_checking or trainer.fast_dev_run:
            return False
        return self.last_step < 0 or trainer.global_step - self.last_step >= self.every_n_steps

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        examples = getattr(pl_module, "val_examples", None)
        if examples is not None and self.due(trainer):
            self.last_step = step = trainer.global_step
            video = pl_module.sample_video(examples)  # every rank: it may log metrics synced over ranks
            if trainer.is_global_zero:
                write_video(trainer, video.name, video.frames, video.note, video.caption, step, self.fps, self.folder)
        pl_module.val_examples = None


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

"""Inference without Lightning: trained stages from checkpoints or exported folders -> image-to-video pipeline.

    from wantrain.inference import load_exported, read_image
    pipe = load_exported("export/")                       # or load_pipeline("base.ckpt", ["sr.ckpt"])
    image = read_image("first.png", pipe.base.resolution)[None]
    video = pipe(image, ["a red ball bouncing"], seeds=[0])  # (1, 3, T, H, W) in [-1, 1]
"""

from wantrain.inference.base import BaseModel
from wantrain.inference.cascade import SRStage
from wantrain.inference.checkpoints import StageFile, read_stage
from wantrain.inference.export import export_pipeline
from wantrain.inference.media import read_image, write_grid, write_mp4
from wantrain.inference.pipeline import ImageToVideoPipeline, load_exported, load_pipeline

__all__ = ["BaseModel", "ImageToVideoPipeline", "SRStage", "StageFile", "export_pipeline", "load_exported",
           "load_pipeline", "read_image", "read_stage", "write_grid", "write_mp4"]

"""Inference without Lightning: trained stages from checkpoints or exported folders -> image-to-video pipeline.

    from wantrain.inference import load_exported, read_image
    pipe = load_exported("export/")        # or load_pipeline("base.ckpt", ["runs/sr1/export/sr_stage1", "sr2.ckpt"])
    image = read_image("first.png", pipe.base.resolution)[None]
    video = pipe(image, ["a red ball bouncing"], seeds=[0])  # (1, 3, T, H, W) in [-1, 1]
"""

from wantrain.inference.base import BaseModel
from wantrain.inference.cascade import SRStage, upsample
from wantrain.inference.checkpoints import SavedModel, read_saved
from wantrain.inference.export import export_pipeline, write_saved
from wantrain.inference.media import read_image, write_grid
from wantrain.inference.pipeline import ImageToVideoPipeline, load_exported, load_pipeline
from wantrain.io.mp4 import write_mp4

__all__ = ["BaseModel", "ImageToVideoPipeline", "SRStage", "SavedModel", "export_pipeline", "load_exported",
           "load_pipeline", "read_image", "read_saved", "upsample", "write_grid", "write_mp4", "write_saved"]

"""The options of the video-quality metrics (`evaluation/video_quality.py`): torch-free, so the config schemas and
help pages read them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from wantrain.schema import option


@dataclass
class VideoMetricsOptions:
    """Where the networks of the video-quality metrics are: local paths, never downloaded; each null (or missing)
    one skips its metrics; the flow metrics always run (Lucas-Kanade without RAFT)."""

    clip: str | None = option(None, "CLIP model folder (transformers CLIPModel + CLIPProcessor, e.g. "
                                    "openai/clip-vit-base-patch32 saved with save_pretrained): clip_score, "
                                    "clip_frame_similarity, background_consistency")
    dino: str | None = option(None, "DINO model folder (transformers ViT facebook/dino-vitb16, or DINOv2): "
                                    "subject_consistency, dino_frame_similarity")
    raft: str | None = option(None, "torchvision RAFT weights (.pth, raft_large_C_T_SKHT_V2 or raft_small): flow of "
                                    "dynamic_degree, motion_smoothness; null: Lucas-Kanade")
    musiq: str | None = option(None, "MUSIQ weights (pyiqa, e.g. musiq_spaq_ckpt-358bb6af.pth): imaging_quality")
    fps: float | None = option(None, "frame rate of the clips for dynamic_degree's threshold (null: 8, VBench's)",
                               gt=0)

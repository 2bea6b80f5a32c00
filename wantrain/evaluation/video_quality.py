"""What users look at in generated clips: CLIP text-video score, similarity of each frame to the input frame (CLIP,
DINO), VBench's subject / background consistency, motion smoothness, dynamic degree and imaging quality.

The formulas are small pure functions on features, frames and flows; `VideoQuality` loads the networks it is given
(by path, never downloaded; a missing file is one logged line and its metrics are skipped) and names, per metric,
the weights it used. Sources:
- clip_score: torchmetrics `CLIPScore` (Hessel et al. 2021): max(100 · mean cos(E_image, E_text), 0), over all
  frames of all clips, each frame with its clip's caption.
- clip_frame_similarity / dino_frame_similarity: mean cos of frames 1..T-1 to the input frame (drift from it).
- subject_consistency (DINO) / background_consistency (CLIP): VBench (vbench/subject_consistency.py,
  background_consistency.py): mean over t >= 1 of (max(0, cos(f_t, f_{t-1})) + max(0, cos(f_t, f_0))) / 2.
- motion_smoothness: VBench (vbench/motion_smoothness.py): keep frames 0, 2, 4, ..., interpolate the odd ones,
  1 - mean |interpolated - real| (0..1). VBench interpolates with AMT; here the midpoint is the flow-warped average
  of the two neighbours (RAFT flow when given, else Lucas-Kanade).
- dynamic_degree: VBench (vbench/dynamic_degree.py): a clip is dynamic when at least round(4 T / 16) (at least 1;
  VBench allows 0 for clips under 3 frames) of its frame pairs have a mean top-5 % flow magnitude above
  6 · max(1, 8 / fps) · min(H, W) / 256 px; the score is the share of dynamic clips. `flow_top5` is that magnitude.
- imaging_quality: VBench (vbench/imaging_quality.py): MUSIQ (SPAQ) per frame / 100.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wantrain.evaluation.optical_flow import FlowFn, load_raft, lucas_kanade, warp
from wantrain.evaluation.quality_options import VideoMetricsOptions

log = logging.getLogger(__name__)

# the metrics each network serves
CLIP_METRICS = ("clip_score", "clip_frame_similarity", "background_consistency")
DINO_METRICS = ("dino_frame_similarity", "subject_consistency")
FLOW_METRICS = ("motion_smoothness", "dynamic_degree", "flow_top5")
MUSIQ_METRICS = ("imaging_quality",)


def clip_score(frame_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """torchmetrics' CLIPScore of unit features (B, T, D) against their captions' (B, D): max(100 · mean cos, 0)."""
    return (100 * torch.einsum("btd,bd->bt", frame_features, text_features)).mean().clamp(min=0)


def frame_similarity(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean cos (B,) of each clip's frames 1..T-1 (all when T == 1) to its reference: unit features (B, T, D),
    (B, D)."""
    later = features[:, 1:] if features.shape[1] > 1 else features
    return torch.einsum("btd,bd->bt", later, reference).mean(1)


def vbench_consistency(features: torch.Tensor) -> torch.Tensor:
    """VBench's subject / background consistency (B,) of unit features (B, T, D); 1 for one-frame clips."""
    if features.shape[1] < 2:
        return features.new_ones(features.shape[0])
    previous = (features[:, 1:] * features[:, :-1]).sum(-1).clamp(min=0)
    first = (features[:, 1:] * features[:, :1]).sum(-1).clamp(min=0)
    return ((previous + first) / 2).mean(1)


def interpolate_midpoint(a: torch.Tensor, b: torch.Tensor, flow_fn: FlowFn) -> torch.Tensor:
    """The frame halfway between a and b (N, 3, H, W): both warped half the flow towards the middle, averaged."""
    flow = flow_fn(a, b)  # b(p + flow) ≈ a(p)
    return (warp(a, -flow / 2) + warp(b, flow / 2)) / 2


def motion_smoothness(videos: torch.Tensor, flow_fn: FlowFn) -> torch.Tensor:
    """VBench's motion smoothness (B,) of clips (B, 3, T, H, W) in [-1, 1], T >= 3: odd frames re-made from their
    even neighbours, 1 - their mean absolute error in [0, 1] units."""
    if videos.shape[2] < 3:
        raise ValueError(f"motion smoothness needs clips of 3 or more frames, got {videos.shape[2]}")
    v = videos.float()
    odd = list(range(1, v.shape[2] - 1, 2))
    before = torch.stack([v[:, :, i - 1] for i in odd], 1).flatten(0, 1)  # (B*K, 3, H, W)
    after = torch.stack([v[:, :, i + 1] for i in odd], 1).flatten(0, 1)
    real = torch.stack([v[:, :, i] for i in odd], 1).flatten(0, 1)
    made = interpolate_midpoint(before, after, flow_fn).clamp(-1, 1)
    error = ((made - real).abs() / 2).flatten(1).mean(1).view(v.shape[0], len(odd))
    return 1 - error.mean(1)


def flow_top5(videos: torch.Tensor, flow_fn: FlowFn) -> torch.Tensor:
    """Mean of the top 5 % flow magnitudes (px) of each frame pair (B, T-1) of clips (B, 3, T, H, W)."""
    b, _, t, h, w = videos.shape
    a = videos[:, :, :-1].transpose(1, 2).flatten(0, 1)
    c = videos[:, :, 1:].transpose(1, 2).flatten(0, 1)
    radius = flow_fn(a, c).float().norm(dim=1).flatten(1)  # (B*(T-1), H*W)
    k = max(1, int(h * w * 0.05))
    return radius.topk(k, dim=1).values.mean(1).view(b, t - 1)


def dynamic_degree(top5: torch.Tensor, size: tuple[int, int], fps: float = 8.0) -> torch.Tensor:
    """VBench's dynamic flags (B,) in {0, 1} from the per-pair flow magnitudes (B, T-1) of clips of `size` (H, W)."""
    threshold = max(1.0, 8.0 / fps) * 6.0 * min(size) / 256.0
    needed = max(1, round(4 * (top5.shape[1] + 1) / 16.0))
    return ((top5 > threshold).sum(1) >= needed).float()


@dataclass
class VideoQuality(VideoMetricsOptions):
    """The video-quality metrics of generated clips with the networks it was given (see VideoMetricsOptions)."""

    device: str = "cpu"
    sources: dict[str, str] = field(default_factory=dict, init=False)  # metric -> the weights it uses
    skipped: dict[str, str] = field(default_factory=dict, init=False)  # metric -> why not

    def __post_init__(self) -> None:
        from wantrain.evaluation.feature_models import CLIPFeatures, DINOFeatures, MUSIQScore

        self.clip_net = self._load("clip", self.clip, CLIPFeatures, CLIP_METRICS)
        self.dino_net = self._load("dino", self.dino, DINOFeatures, DINO_METRICS)
        self.musiq_net = self._load("musiq", self.musiq, MUSIQScore, MUSIQ_METRICS)
        raft = self._load("raft", self.raft, load_raft, FLOW_METRICS, fallback="Lucas-Kanade flow")
        self.flow_fn: FlowFn = raft if raft is not None else lucas_kanade
        if raft is None:
            self.sources.update(dict.fromkeys(FLOW_METRICS, "lucas-kanade (no weights)"))

    def _load(self, name: str, path: str | None, build: Any, metrics: tuple[str, ...],
              fallback: str | None = None) -> Any:
        """The network at `path`, or None: one logged line when a path was given but nothing loads from it, and
        its metrics are skipped (or, with a `fallback`, computed with that instead)."""
        if not path:
            return None
        try:
            if not Path(path).exists():
                raise FileNotFoundError(f"no file or folder at {path}")
            net = build(path, self.device)
        except (OSError, ValueError, ImportError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            outcome = f"use {fallback}" if fallback else "skipped"
            log.warning("video metrics: %s weights not loaded (%s): %s %s", name, reason, ", ".join(metrics), outcome)
            if fallback is None:
                self.skipped.update(dict.fromkeys(metrics, f"{name}: {reason}"))
            return None
        self.sources.update(dict.fromkeys(metrics, f"{name}: {path}"))
        return net

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, images: torch.Tensor | None = None,
                 captions: list[str] | None = None) -> dict[str, float]:
        """Metrics of clips (B, 3, T, H, W) in [-1, 1] made from input frames (B, 3, H, W) and captions."""
        b, _, t, h, w = videos.shape
        frames = videos.transpose(1, 2).flatten(0, 1)  # (B*T, 3, H, W)
        out: dict[str, float] = {}
        if self.clip_net is not None:
            feats = self.clip_net.images(frames).view(b, t, -1)
            out["background_consistency"] = vbench_consistency(feats).mean().item()
            if captions is not None:
                out["clip_score"] = clip_score(feats, self.clip_net.texts(list(captions))).item()
            if images is not None:
                out["clip_frame_similarity"] = frame_similarity(feats, self.clip_net.images(images)).mean().item()
        if self.dino_net is not None:
            feats = self.dino_net.images(frames).view(b, t, -1)
            out["subject_consistency"] = vbench_consistency(feats).mean().item()
            if images is not None:
                out["dino_frame_similarity"] = frame_similarity(feats, self.dino_net.images(images)).mean().item()
        if t >= 2:
            top5 = flow_top5(videos, self.flow_fn)
            out["flow_top5"] = top5.mean().item()
            out["dynamic_degree"] = dynamic_degree(top5, (h, w), float(self.fps or 8.0)).mean().item()
        if t >= 3:
            out["motion_smoothness"] = motion_smoothness(videos, self.flow_fn).mean().item()
        if self.musiq_net is not None:
            out["imaging_quality"] = self.musiq_net.frames(frames).mean().item()
        return out

    def weights(self, metrics: dict[str, float]) -> dict[str, str]:
        """The weights each computed metric used, and why each configured one was skipped."""
        used = {k: self.sources[k] for k in metrics if k in self.sources}
        return {**used, **{k: f"skipped ({why})" for k, why in self.skipped.items()}}

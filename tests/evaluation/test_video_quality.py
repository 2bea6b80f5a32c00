"""Video-quality metrics (issue 30): behaviour that needs no weights (flow on a photo filmed by a moving camera),
torchmetrics' CLIPScore on the same tiny CLIP, VBench's formulas, and the one-line skip of missing weights."""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

from wantrain.evaluation.optical_flow import lucas_kanade
from wantrain.evaluation.video_quality import (
    VideoQuality,
    dynamic_degree,
    flow_top5,
    motion_smoothness,
    vbench_consistency,
)


def photo() -> torch.Tensor:
    """scikit-learn's china photo (3, 427, 640) in [-1, 1]."""
    from sklearn.datasets import load_sample_image

    return torch.from_numpy(load_sample_image("china.jpg").copy()).permute(2, 0, 1).float() / 127.5 - 1


def pan(step: float, frames: int = 8, size: int = 64) -> torch.Tensor:
    """A clip (1, 3, T, size, size) of the photo through a camera panning `step` px per frame to the right."""
    image = photo()
    return torch.stack([image[:, 120:120 + size, 200 + round(i * step):200 + round(i * step) + size]
                        for i in range(frames)], 1)[None]


def test_dynamic_degree_is_zero_on_a_frozen_clip_and_one_on_a_pan() -> None:
    frozen, moving = pan(0.0), pan(4.0)
    top = flow_top5(torch.cat([frozen, moving]), lucas_kanade)  # (2, T-1) px
    assert float(top[0].max()) < 0.05 and float(top[1].min()) > 3.0  # 4 px per frame
    assert dynamic_degree(top, (64, 64)).tolist() == [0.0, 1.0]  # threshold 6 * 64 / 256 = 1.5 px
    speeds = [flow_top5(pan(step), lucas_kanade).mean().item() for step in (1.0, 2.0, 4.0)]
    assert speeds == sorted(speeds) and 3.5 < speeds[-1] < 5, speeds  # faster pans, larger flows


def test_shuffled_frames_lower_motion_smoothness() -> None:
    clip = pan(2.0)
    order = torch.tensor([0, 5, 2, 7, 4, 1, 6, 3])
    smooth, shuffled = motion_smoothness(torch.cat([clip, clip[:, :, order]]), lucas_kanade).tolist()
    assert smooth > 0.97 and shuffled < smooth - 0.02, (smooth, shuffled)
    assert motion_smoothness(pan(0.0), lucas_kanade).item() == pytest.approx(1.0)


def test_consistency_is_vbenchs_formula() -> None:
    """vbench/subject_consistency.py's loop, written out, on random unit features (some cosines negative)."""
    feats = torch.nn.functional.normalize(torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    for clip, ours in zip(feats, vbench_consistency(feats)):
        total = 0.0
        for i in range(1, len(clip)):
            total += (max(0.0, float(clip[i - 1] @ clip[i])) + max(0.0, float(clip[0] @ clip[i]))) / 2
        assert float(ours) == pytest.approx(total / (len(clip) - 1), abs=1e-6)


class Tensors(torch.nn.Module):
    """The same CLIPModel, its get_*_features returning tensors: torchmetrics 1.9 expects transformers 4's return
    type (transformers 5 returns an output object with `pooler_output`)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        out = self.model.get_image_features(*args, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_text_features(self, *args, **kwargs):
        out = self.model.get_text_features(*args, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_clip_score_equals_torchmetrics_and_frozen_clips_are_consistent(metric_nets) -> None:
    from torchmetrics.functional.multimodal import clip_score

    quality = VideoQuality(clip=str(metric_nets["clip"]), dino=str(metric_nets["dino"]))
    clips = torch.cat([pan(2.0, frames=3, size=48), pan(0.0, frames=3, size=48)])
    captions = ["a temple roof", "green trees"]
    net = quality.clip_net
    if quality(clips, None, captions)["clip_score"] == 0:  # the random model's cosines are negative: flip them, as
        net.model.text_projection.weight.data.neg_()       # max(·, 0) would make any two implementations agree
    ours = quality(clips, clips[:, :, 0], captions)
    assert ours["clip_score"] > 0
    frames = [((f + 1) * 127.5).round() for f in clips.transpose(1, 2).flatten(0, 1)]
    with torch.no_grad():
        reference = clip_score(frames, [c for c in captions for _ in range(3)],
                               lambda: (Tensors(net.model), net.processor))
    assert ours["clip_score"] == pytest.approx(float(reference), abs=1e-4)
    frozen = quality(clips[1:], clips[1:, :, 0], captions[1:])  # the same frame three times
    for key in ("background_consistency", "subject_consistency", "clip_frame_similarity", "dino_frame_similarity"):
        assert frozen[key] == pytest.approx(1.0, abs=1e-5), key
        assert 0 <= ours[key] <= 1 + 1e-6
    assert set(quality.weights(ours)) >= {"clip_score", "subject_consistency", "dynamic_degree"}
    assert quality.weights(ours)["dynamic_degree"] == "lucas-kanade (no weights)"


def test_raft_weights_by_path_and_missing_weights_are_one_line(metric_nets, tmp_path, caplog) -> None:
    musiq = tmp_path / "musiq_spaq_ckpt.pth"
    musiq.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="wantrain.evaluation.video_quality"):
        quality = VideoQuality(clip=str(tmp_path / "no-clip"), raft=str(metric_nets["raft"]), musiq=str(musiq))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "clip weights not loaded" in lines[0] and "clip_score" in lines[0] and lines[0].endswith("skipped")
    assert "musiq weights not loaded" in lines[1] and "imaging_quality skipped" in lines[1]
    if importlib.util.find_spec("pyiqa") is None:
        assert "pip install pyiqa" in lines[1]
    metrics = quality(pan(3.0, frames=3, size=32), None, ["a photo"])
    assert "clip_score" not in metrics and "imaging_quality" not in metrics
    assert set(metrics) == {"flow_top5", "dynamic_degree", "motion_smoothness"}
    weights = quality.weights(metrics)
    assert weights["dynamic_degree"] == f"raft: {metric_nets['raft']}"
    assert weights["clip_score"].startswith("skipped (clip:") and weights["imaging_quality"].startswith("skipped")

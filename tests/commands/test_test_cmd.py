"""`python -m wantrain test ckpt=...` on tiny trained checkpoints of both stages: a table and RUN_DIR/metrics.json."""

from __future__ import annotations

import json
import math

import pytest
import torch
from in_process import run_main
from test_sample_cmd import train_tiny_stages  # the same cached tiny checkpoints (one training per session)


@pytest.fixture(scope="module")
def stages(data_dir, tmp_path_factory):
    return train_tiny_stages(data_dir, tmp_path_factory.getbasetemp() / "tiny-stages")


def test_command(*overrides: str) -> list[str]:
    """`test` + overrides."""
    return ["test", *overrides]


test_command.__test__ = False  # a helper, not a test


def read_metrics(tmp_path) -> dict:
    files = list(tmp_path.glob("runs/test/*/metrics.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_diffusion_checkpoint_metrics_with_fvd_and_video_quality(stages, metric_nets, tmp_path, capsys):
    from wantrain.evaluation.fvd import build_i3d

    torch.manual_seed(0)
    weights = tmp_path / "i3d_random.pt"  # the real weights cannot be downloaded here: same network, random init
    torch.save(build_i3d().state_dict(), weights)
    code = run_main(test_command(f"ckpt={stages['base']}", "data.num_workers=0", "data.val_batch_size=2",
                                 "limit_batches=1", "diffusion.num_videos=2", "diffusion.steps=2",
                                 f"diffusion.i3d_weights={weights}", "out=copy.json",
                                 f"diffusion.video_metrics.clip={metric_nets['clip']}",
                                 f"diffusion.video_metrics.dino={metric_nets['dino']}",
                                 f"diffusion.video_metrics.raft={tmp_path}/raft_large.pth"), tmp_path)
    assert code == 0
    out = capsys.readouterr()
    stdout = out.out
    # the missing RAFT file: one line, its metrics run on the weight-free flow instead
    said = [line for line in (out.err + stdout).splitlines() if "video metrics" in line]
    assert len(said) == 1 and said[0].endswith(
        f"video metrics: raft weights not loaded (no file or folder at {tmp_path}/raft_large.pth): "
        "motion_smoothness, dynamic_degree, flow_top5 use Lucas-Kanade flow"), said
    report = read_metrics(tmp_path)
    assert report["model"] == "diffusion" and report["weights"] == "ema" and report["global_step"] == 3
    assert "stage" not in report  # "stage" means only a cascade ×2 stage
    m = report["metrics"]
    assert m["clips"] == 2 and m["generated_clips"] == 2
    assert all(math.isfinite(m[k]) for k in ("loss", "loss_t0", "loss_t3", "first_frame_psnr", "tdiff", "fvd"))
    assert m["loss"] == pytest.approx(sum(m[f"loss_t{i}"] for i in range(4)) / 4, rel=1e-5)
    assert m["fvd"] > 0 and m["tdiff_real"] > 0
    assert "first_frame_psnr" in stdout and "loss_t3" in stdout  # the printed table
    assert json.loads((tmp_path / "copy.json").read_text()) == report
    quality = ("clip_score", "clip_frame_similarity", "background_consistency", "subject_consistency",
               "dino_frame_similarity", "dynamic_degree", "motion_smoothness", "flow_top5")
    assert all(math.isfinite(m[k]) for k in quality) and 0 <= m["dynamic_degree"] <= 1
    sources = report["metric_weights"]
    assert sources["clip_score"] == f"clip: {metric_nets['clip']}" and sources["subject_consistency"].startswith("dino")
    assert sources["dynamic_degree"] == "lucas-kanade (no weights)"
    assert "clip_score" in stdout and "clip:" in stdout  # each row says which weights it used


def test_upsampler_checkpoint_metrics_vs_bicubic(stages, tmp_path, capsys):
    code = run_main(test_command(f"ckpt={stages['sr']}", "data.num_workers=0", "limit_batches=1"), tmp_path)
    assert code == 0
    stdout = capsys.readouterr().out
    report = read_metrics(tmp_path)
    assert report["model"] == "upsampler" and report["stage"] == 1  # +experiment=sr_tiny plays sr_stage1
    for name in ("psnr", "ssim", "psnr_y", "ssim_y", "tdiff"):
        assert math.isfinite(report["metrics"][name]) and math.isfinite(report["baseline"][name])
    assert report["metrics"]["psnr"] > 15 and report["baseline"]["psnr"] > 15  # real 64 px clips, not noise
    assert "bicubic" in stdout


def test_missing_shards_fail_in_one_line(stages, tmp_path, capsys):
    code = run_main(test_command(f"ckpt={stages['sr']}", f"data.val_shards={tmp_path}/none.tar"), tmp_path)
    assert code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "none.tar" in lines[0], lines

"""bench quality at a tiny size: the virtual camera films the photos, both parts run and score."""

from __future__ import annotations

import pytest
import torch

from wantrain.benchmarks.quality import clips, film, load_scenes, run


@pytest.fixture(scope="module")
def scenes():
    return load_scenes(0.25)  # (3, 107, 160) each


def test_virtual_camera_moves_inside_its_part(compose, scenes, tmp_path) -> None:
    cfg = compose("bench=quality", config_name="bench", root=tmp_path).bench
    g = torch.Generator().manual_seed(0)
    clip = film(scenes[0], 4, 16, (0.6, 1.0), (1.0, 1.0), (1.0, 1.0), g)
    assert clip.shape == (3, 4, 16, 16) and clip.min() >= -1 and clip.max() <= 1
    assert (clip[:, 1:] - clip[:, :-1]).abs().mean() > 0.01  # it moves
    # film a coordinate map: channel 0 is the scene column, so the clip tells where the camera looked
    h, w = 100, 200
    coords = torch.stack([torch.linspace(-1, 1, w).expand(h, w), torch.linspace(-1, 1, h)[:, None].expand(h, w),
                          torch.zeros(h, w)])
    for seed in range(5):
        look = film(coords, 6, 16, (0.6, 1.0), (1.0, 3.0), (1.0, 1.3), torch.Generator().manual_seed(seed))
        columns = (look[0] + 1) / 2 * (w - 1)  # (T, 16, 16) scene columns seen
        assert float(columns.min()) >= 0.6 * w - 1 and float(columns.max()) <= w
        assert float((look[:, -1] - look[:, 0]).abs().max()) > 0.005  # the camera moved
    a = clips(scenes, 2, 3, 16, (0.0, 0.6), cfg, torch.Generator().manual_seed(3))
    b = clips(scenes, 2, 3, 16, (0.0, 0.6), cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (2, 3, 3, 16, 16)
    with pytest.raises(Exception, match="does not fit"):
        film(scenes[0], 2, 200, (0.0, 0.6), (1.0, 1.0), (1.0, 1.0), g)


def test_bench_quality_tiny_runs_both_parts(compose, data_dir, tmp_path) -> None:
    cfg = compose("bench=quality", f"paths.data_dir={data_dir}", "bench.photo_scale=0.25",
                  "bench.base_frames=2", "bench.base_size=16", "bench.base_steps=2", "bench.base_batch=1",
                  "bench.base_model.sampling.num_steps=2", "bench.sr_frames=2", "bench.sr_size=32",
                  "bench.sr_batches=2", "bench.sr_curve=[1,5]", "bench.sr_batch=2", "bench.eval_clips=2",
                  "bench.sr_model.crop_size=16",
                  "bench.sr_model.generator.channels=8", "bench.sr_model.generator.num_blocks=1",
                  "bench.sr_model.discriminator.channels=8", config_name="bench", root=tmp_path)
    rows = run(cfg.bench)
    base, *sr = rows
    assert base["part"] == "(a) base overfit" and base["steps"] == 2
    assert 0 < base["sample_psnr"] < 100
    assert abs(base["margin_db"] - (base["sample_psnr"] - base["untrained_psnr"])) < 0.02
    # the curve: after 1 batch and at the end (2); 5 is past the end
    assert [(r["steps"], r["input"][:5]) for r in sr] == [(1, "clean"), (1, "own d"), (1, "noise"),
                                                          (2, "clean"), (2, "own d"), (2, "noise")]
    clean, own, degraded = sr[3:]
    for row in sr:
        assert abs(row["margin_db"] - (row["psnr_sr"] - row["psnr_bicubic"])) < 0.02
        assert 0 < row["ssim_bicubic"] <= 1 and row["flicker_bicubic"] >= 0
    # the stage's own degradations (blur, noise) and noise + JPEG cost bicubic PSNR (same held-out clips)
    assert degraded["psnr_bicubic"] < clean["psnr_bicubic"] and own["psnr_bicubic"] < clean["psnr_bicubic"]

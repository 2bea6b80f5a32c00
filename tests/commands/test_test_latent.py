"""`python -m wantrain test` on a latent-space checkpoint: decoded samples scored against the clips and against the
VAE's own reconstruction of them (sample_psnr, sample_psnr_vs_recon)."""

from __future__ import annotations

import json
import math

import torch

FIT = ["fit", "+experiment=i2v_latent_tiny", "run_name=latent", "data.resolution=32", "trainer.max_steps=2",
       "data.samples_per_epoch=4", "data.batch_size=2", "data.num_workers=0", "trainer.limit_val_batches=0",
       "model.sampling.every_n_steps=0", "logger=csv", "print_config=false"]


def test_latent_checkpoint_reports_sample_psnr_and_psnr_vs_recon(wantrain_main, data_dir, tmp_path, capsys):
    assert wantrain_main([*FIT, f"paths.data_dir={data_dir}"], tmp_path) == 0
    ckpt = tmp_path / "runs" / "latent" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2
    capsys.readouterr()
    code = wantrain_main(["test", f"ckpt={ckpt}", "data.num_workers=0", "data.val_batch_size=2", "limit_batches=1",
                     "diffusion.num_videos=2", "diffusion.steps=2"], tmp_path)
    assert code == 0
    stdout = capsys.readouterr().out
    (path,) = tmp_path.glob("runs/test/*/metrics.json")
    m = json.loads(path.read_text())["metrics"]
    assert m["generated_clips"] == 2
    assert all(math.isfinite(m[k]) for k in ("loss", "sample_psnr", "sample_psnr_vs_recon", "first_frame_psnr"))
    # two different references: the clips, and their VAE reconstructions (a random tiny VAE is far from the clips)
    assert m["sample_psnr_vs_recon"] != m["sample_psnr"]
    assert "sample_psnr_vs_recon" in stdout and "sample_psnr" in stdout
    print(f"latent test: sample_psnr {m['sample_psnr']:.2f} dB, vs_recon {m['sample_psnr_vs_recon']:.2f} dB")

"""`logger=wandb`: offline runs hold scalars and mp4 media, resumes continue the same run, disabled writes nothing,
and an unreachable server only switches to offline logging."""

from __future__ import annotations

import pytest

COMMON = ["logger=wandb", "trainer.max_steps=4", "data.samples_per_epoch=8", "data.num_workers=0",
          "data.batch_size=2", "model.sampling.every_n_steps=1", "model.sampling.num_steps=2",
          "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "print_config=false"]


def fit(wantrain_cli, data_dir, tmp_path, env, *extra):
    result = wantrain_cli(["fit", *COMMON, f"paths.data_dir={data_dir}", "run_name=w", *extra], cwd=tmp_path,
                          env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, tmp_path / "runs" / "w"


@pytest.mark.slow
def test_offline_run_has_scalars_and_videos_and_resumes_the_same_run(wantrain_cli, data_dir, tmp_path):
    _, run_dir = fit(wantrain_cli, data_dir, tmp_path, {"WANDB_MODE": "offline"})
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    (offline,) = run_dir.glob(f"wandb/offline-run-*-{run_id}")
    record = next(offline.glob("run-*.wandb")).read_bytes()
    for key in (b"train/loss", b"val/loss", b"val/sample_psnr", b"lr-AdamW"):
        assert key in record, key
    assert list(offline.glob("files/media/videos/val/*.mp4"))

    fit(wantrain_cli, data_dir, tmp_path, {"WANDB_MODE": "offline"}, "trainer.max_steps=6")
    assert (run_dir / "wandb_run_id").read_text().strip() == run_id
    assert len(list(run_dir.glob(f"wandb/offline-run-*-{run_id}"))) == 2  # both parts log to the same run id


@pytest.mark.slow
def test_disabled_writes_nothing(wantrain_cli, data_dir, tmp_path):
    _, run_dir = fit(wantrain_cli, data_dir, tmp_path, {"WANDB_MODE": "disabled"})
    assert not (run_dir / "wandb").exists() and not (tmp_path / "wandb").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_unreachable_server_falls_back_to_offline(wantrain_cli, data_dir, tmp_path):
    env = {"WANDB_MODE": None, "WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}  # closed port
    result, run_dir = fit(wantrain_cli, data_dir, tmp_path, env, "logger.wandb.init_timeout=10",
                          "trainer.max_steps=2")
    assert "wandb server unreachable" in result.stderr
    assert list(run_dir.glob("wandb/offline-run-*"))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

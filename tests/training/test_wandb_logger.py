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
def test_offline_run_has_scalars_and_videos_and_resumes_the_same_run(wantrain_cli, data_dir, metric_nets, tmp_path):
    result, run_dir = fit(wantrain_cli, data_dir, tmp_path, {"WANDB_MODE": "offline"},
                          "model.video_metrics.every_n_validations=1",
                          f"model.video_metrics.clip={metric_nets['clip']}",
                          f"model.video_metrics.dino={metric_nets['dino']}")
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    (offline,) = run_dir.glob(f"wandb/offline-run-*-{run_id}")
    record = next(offline.glob("run-*.wandb")).read_bytes()
    for key in (b"train/loss", b"val/loss", b"val/sample_psnr", b"lr-AdamW", b"val/clip_score",
                b"val/subject_consistency", b"val/background_consistency", b"val/clip_frame_similarity",
                b"val/dynamic_degree", b"val/motion_smoothness"):  # the video-quality metrics of the EMA samples
        assert key in record, key
    assert f"clip_score <- clip: {metric_nets['clip']}" in result.stdout + result.stderr  # the weights, said once
    assert list(offline.glob("files/media/videos/val/*.mp4"))

    fit(wantrain_cli, data_dir, tmp_path, {"WANDB_MODE": "offline"}, "trainer.max_steps=6")
    assert (run_dir / "wandb_run_id").read_text().strip() == run_id
    assert len(list(run_dir.glob(f"wandb/offline-run-*-{run_id}"))) == 2  # both parts log to the same run id


# WANDB_MODE=disabled writes nothing: tests/commands/test_fit_experiments.py (every tiny fit runs with it and the
# default loggers, csv + wandb, and finds no wandb folder beside its checkpoint).


@pytest.mark.slow
def test_unreachable_server_falls_back_to_offline(wantrain_cli, data_dir, tmp_path):
    env = {"WANDB_MODE": None, "WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}  # closed port
    result, run_dir = fit(wantrain_cli, data_dir, tmp_path, env, "logger.wandb.init_timeout=10",
                          "trainer.max_steps=2")
    assert "wandb server unreachable" in result.stderr
    assert list(run_dir.glob("wandb/offline-run-*"))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()



def test_building_the_logger_writes_nothing(tmp_path):
    """The preflight builds the loggers: no run folder, run id file or wandb/ yet; a resume reads the stored id."""
    from wantrain.training.lightning_private import wandb_init_kwargs
    from wantrain.training.wandb_logger import RUN_ID_FILE, make_wandb_logger

    run_dir = tmp_path / "run"
    kwargs = wandb_init_kwargs(make_wandb_logger(str(run_dir), mode="offline"))
    assert not run_dir.exists()
    assert "anonymous" not in kwargs  # Lightning's default None made wandb 0.31 print a deprecation line
    run_dir.mkdir()
    (run_dir / RUN_ID_FILE).write_text("abcd1234")
    assert wandb_init_kwargs(make_wandb_logger(str(run_dir), mode="offline"))["id"] == "abcd1234"
    assert sorted(p.name for p in run_dir.iterdir()) == [RUN_ID_FILE]


@pytest.mark.slow
def test_run_id_and_wandb_folder_appear_when_the_run_starts(tmp_path):
    from wantrain.training.lightning_private import wandb_init_kwargs
    from wantrain.training.wandb_logger import RUN_ID_FILE, make_wandb_logger

    run_dir = tmp_path / "run"
    logger = make_wandb_logger(str(run_dir), mode="offline")
    run_id = wandb_init_kwargs(logger)["id"]
    try:
        logger.experiment  # noqa: B018 - starts the (offline) run
        assert (run_dir / RUN_ID_FILE).read_text() == run_id
        assert list(run_dir.glob(f"wandb/offline-run-*-{run_id}"))
    finally:
        logger.experiment.finish()

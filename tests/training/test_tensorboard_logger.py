"""`logger=tensorboard`: scalars and the sample frames land in run_dir/tensorboard/<launch>/ (no moviepy needed)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_tensorboard_run_has_scalars_and_sample_frames(wantrain_cli, data_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = wantrain_cli(["fit", "logger=tensorboard", f"paths.data_dir={data_dir}", "run_name=tb",
                           "trainer.max_steps=2", "data.samples_per_epoch=4", "data.batch_size=2",
                           "data.num_workers=0", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
                           "model.sampling.every_n_steps=1", "model.sampling.num_steps=2", "print_config=false"],
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (events_dir,) = {p.parent for p in (tmp_path / "runs" / "tb" / "tensorboard").glob("*/events.out.tfevents.*")}
    events = EventAccumulator(str(events_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"train/loss", "val/loss", "val/sample_psnr"} <= set(events.Tags()["scalars"])
    assert "val/samples" in events.Tags()["images"]

"""trainer=fsdp2 through the CLI on CPU processes (gloo): the Wan backbone with its clips' tokens split over 2 ranks
(sequence_parallel=2) and FSDP2 shards; its sharded checkpoint (a torch distributed checkpoint folder) resumes on 1
process and on 2 with the same next losses and gradient norms as the uninterrupted run; the 1-process run writes
the default single-file checkpoints."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from wantrain.training.resume import is_sharded, resolve_ckpt_path

FSDP2 = ["trainer=fsdp2", "trainer.accelerator=cpu", "trainer.strategy.param_dtype=float32"]
SEQUENCE_PARALLEL = ["trainer.devices=2", "trainer.strategy.sequence_parallel=2"]


def logged(run_dir: Path) -> dict[int, tuple[float, float]]:
    """step -> (train/loss, train/grad_norm) from the run's CSV log."""
    (metrics,) = run_dir.glob("csv/*/metrics.csv")
    return {int(r["step"]): (float(r["train/loss"]), float(r["train/grad_norm"]))
            for r in csv.DictReader(metrics.open()) if r.get("train/loss")}


@pytest.mark.ddp
@pytest.mark.slow
def test_sequence_parallel_run_resumes_on_one_and_two_processes(wantrain_cli, data_dir, wan_dir, tmp_path):
    common = ["fit", "+experiment=wan_tiny_i2v", f"paths.data_dir={data_dir}", "data.samples_per_epoch=16",
              "data.num_workers=0", "trainer.limit_val_batches=0", "print_config=false", "logger=csv",
              "trainer.log_every_n_steps=1", "model.sampling.every_n_steps=0", "trainer.max_steps=3"]
    every_step = ["callbacks.model_checkpoint.every_n_train_steps=1", "callbacks.model_checkpoint.save_top_k=-1",
                  "trainer.strategy.save_distributed_checkpoint=true"]
    whole = wantrain_cli([*common, *FSDP2, *SEQUENCE_PARALLEL, "run_name=whole", *every_step], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    checkpoints = tmp_path / "runs" / "whole" / "checkpoints"
    saved = checkpoints / "step0000001.ckpt"
    assert is_sharded(saved) and not list(checkpoints.glob("*.tmp-*"))  # renamed when complete
    assert Path(resolve_ckpt_path("auto", tmp_path / "runs" / "whole")).name == "last.ckpt"  # folders count
    reference = logged(tmp_path / "runs" / "whole")
    assert sorted(reference) == [0, 1, 2]
    for name, devices in (("one", ["trainer.devices=1"]), ("two", SEQUENCE_PARALLEL)):
        resumed = wantrain_cli([*common, *FSDP2, *devices, f"run_name={name}", f"ckpt_path={saved}"], cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        after = logged(tmp_path / "runs" / name)
        assert sorted(after) == [1, 2], name
        if name == "one":  # the default: one file gathered on rank 0 (full tensors, weights_only)
            state = torch.load(tmp_path / "runs" / "one" / "checkpoints" / "last.ckpt", weights_only=True)
            assert any(k.startswith("ema.module.net.transformer.blocks.1.") for k in state["state_dict"])
        for step, (loss, norm) in after.items():  # one process = the sequence-parallel pair, to float rounding
            assert loss == pytest.approx(reference[step][0], abs=1e-5), (name, step)
            assert norm == pytest.approx(reference[step][1], abs=1e-5), (name, step)

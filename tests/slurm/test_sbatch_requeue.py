"""slurm/fit.sbatch on the local cluster: 2 CPU tasks (DDP over gloo) under srun, preempted with SIGUSR1, saved at a
batch boundary and requeued by GracefulShutdown, resumed by `ckpt_path=auto` in the same run directory at the next
step, finished at max_steps, one wandb run id."""

from __future__ import annotations

import re
import subprocess

import pytest
import torch
from conftest import REPO, job_fields, slurm_env, wait_for  # tests/slurm/conftest.py

pytestmark = [pytest.mark.slurm, pytest.mark.ddp, pytest.mark.slow]

MAX_STEPS = 6


def test_preempted_job_requeues_itself_and_resumes_to_the_end(slurm_cluster, data_dir, tmp_path):
    log = tmp_path / "job.out"
    submit = subprocess.run(
        ["sbatch", "--parsable", "--job-name=wantrain-test", "--gpus-per-node=0", "--ntasks-per-node=2",
         "--cpus-per-task=1", "--time=10", f"--output={log}", str(REPO / "slurm" / "fit.sbatch"),
         "trainer=ddp_cpu", f"trainer.max_steps={MAX_STEPS}", f"paths.data_dir={data_dir}",
         "data.samples_per_epoch=400", "data.batch_size=2", "data.num_workers=0", "trainer.limit_val_batches=0",
         "model.sampling.every_n_steps=0", "print_config=false", "logger=wandb",
         "callbacks.model_checkpoint.every_n_train_steps=1000", "callbacks.progress.every_n_steps=1"],
        cwd=tmp_path, env=slurm_env(), capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    try:
        text = lambda: log.read_text() if log.exists() else ""  # noqa: E731
        wait_for(lambda: re.search(r"^step 2/", text(), re.M), 150, f"job {job_id} to train 2 steps\n{text()[-3000:]}")
        subprocess.run(["scancel", "--signal=USR1", job_id], check=True, timeout=30)
        wait_for(lambda: job_fields(job_id).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"),
                 200, f"job {job_id} to end\n{text()[-3000:]}", interval=1)
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)
    out, fields = text(), job_fields(job_id)
    assert fields["JobState"] == "COMPLETED", out[-4000:]
    assert fields["Restarts"] == "1", fields  # requeued once, by GracefulShutdown's `scontrol requeue`
    first, _, second = out.partition(f"wantrain: job {job_id} restart 1 ")
    assert second, out[-4000:]
    assert f"wantrain: job {job_id} restart 0 " in first
    assert f"wantrain: SLURM job {job_id}: SIGUSR1 saves last.ckpt" in first  # the one owner of requeueing
    assert "SLURM auto-requeueing enabled" not in first  # Lightning's mid-step handler is off
    stopped = re.search(rf"wantrain: stopped on SIGUSR1 at step (\d+); saved (\S+); requeueing job {job_id}", first)
    assert stopped, first[-4000:]
    stop_step = int(stopped.group(1))
    assert 2 <= stop_step < MAX_STEPS

    run_dir = tmp_path / "runs" / job_id  # the same directory before and after the requeue
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [job_id]
    restored = re.search(r"Restoring states from the checkpoint path at (\S+)", second)
    assert restored and restored.group(1) == str(run_dir / "checkpoints" / "last.ckpt"), second[-3000:]
    steps = [int(s) for s in re.findall(r"^step (\d+)/", second, re.M)]
    assert steps and steps[0] == stop_step + 1 and steps[-1] == MAX_STEPS, steps  # resumed at the next step
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == MAX_STEPS

    run_id = (run_dir / "wandb_run_id").read_text().strip()
    offline_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(p.name.endswith(f"-{run_id}") for p in offline_runs), offline_runs

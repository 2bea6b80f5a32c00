"""`fit -m hydra/launcher=slurm`: Hydra's submitit launcher submits one SLURM job per sweep point to the local cluster;
each runs `wantrain fit` in its own run directory, with Lightning (not submitit) owning the requeue signal."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from conftest import slurm_env  # tests/slurm/conftest.py

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_multirun_submits_one_job_per_seed_and_both_finish(slurm_cluster, data_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the `slurm` extra is not installed")
    sweep_dir = tmp_path / "runs" / "multirun" / "sweep"  # the default sweep dir for this launch stamp
    result = subprocess.run(
        [sys.executable, "-m", "wantrain", "fit", "-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
         "trainer.max_steps=1", f"paths.data_dir={data_dir}", "data.samples_per_epoch=8", "data.batch_size=2",
         "data.num_workers=0", "trainer.limit_val_batches=0", "model.sampling.every_n_steps=0", "print_config=false",
         "logger=csv", "seed=1,2"],
        cwd=tmp_path, env=slurm_env(WANTRAIN_RUN_STAMP="sweep"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    # the batch script submitit wrote: Lightning's SIGUSR1 and SLURM requeue, not submitit's USR2
    script = next((sweep_dir / ".submitit").glob(".submission_file_*.sh")).read_text()
    assert "#SBATCH --signal=USR1@90" in script and "#SBATCH --requeue" in script and "USR2" not in script
    assert "#SBATCH --array=0-1" in script

    run_dirs = sorted((p for p in (tmp_path / "runs").iterdir() if p.name != "multirun"), key=lambda p: p.name)
    assert len(run_dirs) == 2, run_dirs  # runs/<SLURM_JOB_ID>, one per sweep point
    seeds = set()
    for run_dir in run_dirs:
        seeds.add(yaml.safe_load((run_dir / "config.yaml").read_text())["seed"])
        assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1
    assert seeds == {1, 2}
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").glob("*/*_log.out"))
    assert logs.count("SIGUSR1 saves last.ckpt at the next batch end and requeues") == 2, logs[-3000:]  # one owner

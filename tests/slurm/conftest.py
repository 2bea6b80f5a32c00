"""The local SLURM cluster (slurm/local-cluster.sh) for the `slurm` tests: skip with the reason when it is not up."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_HINT = "start it with `sudo bash slurm/local-cluster.sh start` (Debian, root)"


def slurm_env(**extra: str) -> dict[str, str]:
    """The environment of a submission: ours without WANTRAIN_*/SLURM_* leftovers, this interpreter, wandb offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANTRAIN_", "SLURM_", "SBATCH_", "SRUN_"))}
    env.update({"PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANTRAIN_PYTHON": sys.executable,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    env.update(extra)
    return env


def job_fields(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (empty once the job has left slurmctld's memory)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, int]:
    """A reachable SLURM with an idle node of at least 2 CPUs (the jobs run 2 tasks), else skip with the reason."""
    for tool in ("sinfo", "sbatch", "scontrol", "scancel", "squeue"):
        if shutil.which(tool) is None:
            pytest.skip(f"no SLURM here ({tool} not found); {START_HINT}")
    try:
        info = subprocess.run(["sinfo", "-h", "-N", "-o", "%t %c"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.skip(f"sinfo timed out: slurmctld does not answer; {START_HINT}")
    nodes = [line.split() for line in info.stdout.splitlines() if line.strip()]
    if info.returncode != 0 or not nodes:
        pytest.skip(f"SLURM is not running ({(info.stderr or 'no nodes').strip().splitlines()[0]}); {START_HINT}")
    usable = [int(cpus) for state, cpus in nodes if state.rstrip("*~#") in ("idle", "mix", "alloc", "comp")]
    if not usable:  # a node still cleaning up after an earlier job: give it a moment
        time.sleep(15)
        again = subprocess.run(["sinfo", "-h", "-N", "-o", "%t %c"], capture_output=True, text=True, timeout=20)
        nodes = [line.split() for line in again.stdout.splitlines() if line.strip()]
        usable = [int(cpus) for state, cpus in nodes if state.rstrip("*~#") in ("idle", "mix", "alloc", "comp")]
    if not usable or max(usable) < 2:
        pytest.skip(f"no SLURM node up with 2 CPUs (sinfo: {nodes}); {START_HINT}")
    return {"cpus": max(usable)}

"""The one rank and device helper: torchrun's variables, srun's as fallback, the device of this process."""

from __future__ import annotations

import pytest
import torch

from wantrain.ranks import dist_rank, local_rank, pick_device, process_rank

VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")


@pytest.fixture
def env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_rank_from_torchrun_or_srun(env):
    assert process_rank() == (0, 1) and local_rank() == 0
    env.setenv("SLURM_PROCID", "2")
    env.setenv("SLURM_NTASKS", "4")
    env.setenv("SLURM_LOCALID", "1")
    assert process_rank() == (2, 4) and local_rank() == 1
    env.setenv("RANK", "1")
    env.setenv("WORLD_SIZE", "2")
    env.setenv("LOCAL_RANK", "0")
    assert process_rank() == (1, 2) and local_rank() == 0  # torchrun's variables win


def test_dist_rank_ignores_the_environment(env):
    env.setenv("SLURM_NTASKS", "4")
    env.setenv("SLURM_PROCID", "3")
    assert dist_rank() == (0, 1)  # one process inside a 4-task allocation still reads all data


def test_pick_device(env):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    auto = pick_device()
    if torch.cuda.is_available():
        env.setenv("LOCAL_RANK", str(torch.cuda.device_count()))  # more local ranks than visible GPUs: wraps
        assert pick_device("auto") == torch.device("cuda", 0) and auto.type == "cuda"
    else:
        assert auto == torch.device("cpu")

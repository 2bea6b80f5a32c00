"""The one rank and device helper: which process this is (torchrun or srun variables) and which device it uses."""

from __future__ import annotations

import os
from typing import Any

import torch


def _env_int(*names: str, default: int) -> int:
    """The first of the environment variables `names` that is set, as an int; else `default`."""
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def process_rank() -> tuple[int, int]:
    """(rank, world_size): torchrun's RANK/WORLD_SIZE, else srun's SLURM_PROCID/SLURM_NTASKS, else (0, 1)."""
    return _env_int("RANK", "SLURM_PROCID", default=0), _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)


def local_rank() -> int:
    """This process's index on its node: torchrun's LOCAL_RANK, else srun's SLURM_LOCALID, else 0."""
    return _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)


def pick_device(setting: str | torch.device = "auto") -> torch.device:
    """`auto`: this process's GPU (cuda:local_rank) when there is one, else the CPU; anything else as written."""
    if str(setting) != "auto":
        return torch.device(setting)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


def dist_rank() -> tuple[int, int]:
    """(rank, world_size) of the initialised torch.distributed process group; (0, 1) outside one (environment
    variables are not consulted: a single process inside a multi-task allocation must still read all data)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def data_rank(trainer: Any) -> tuple[int, int]:
    """(rank, size) of a Lightning Trainer's process among the ranks that read different batches: its global rank
    and world size, or the data-parallel coordinate when the strategy has one (trainer=fsdp2's sequence-parallel
    groups read one stream)."""
    ranks = getattr(trainer.strategy, "data_parallel_rank", None)
    return ranks() if ranks is not None else (trainer.global_rank, trainer.world_size)

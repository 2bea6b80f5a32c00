"""Wall-clock timing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def seconds_per_call(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Mean seconds per call of `fn` after `warmup` calls, synchronising CUDA around the timed calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats

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


def alternating_seconds(fns: list[Callable[[], Any]], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Median seconds per call of each of `fns`, timed in alternating order round by round (ours, theirs; theirs,
    ours; ...), so a slow spell of a shared machine or a warm cache favours neither."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        order = list(range(len(fns))) if r % 2 == 0 else list(reversed(range(len(fns))))
        for i in order:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fns[i]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[i].append(time.perf_counter() - start)
    return [sorted(t)[len(t) // 2] for t in times]

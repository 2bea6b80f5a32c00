"""Measure a training step without running it: peak live tensor bytes and FLOPs of one forward + backward, traced
on FakeTensors (shapes and dtypes only, no memory, no compute), so full-size models can be measured on a CPU."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensor storages created inside it that are still alive, and their peak.

    Each new storage (not one of the op's inputs': views, in-place results) adds its size; a weak reference
    subtracts it when the storage dies. Tensors made before entering (parameters, inputs) are not counted: `peak` is
    what the step adds on top of them. Kernels' internal scratch (im2col columns, cuDNN workspaces) is not seen.
    Checked against the resident memory of real CPU steps in tests/benchmarks/test_plan.py.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.live = 0
        self.peak = 0

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        # views and in-place results share an input's storage (e.g. `t` of a parameter): not new memory
        inputs = {t.untyped_storage()._cdata for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage._cdata not in inputs and storage not in self.seen:
                    nbytes = storage.nbytes()
                    self.seen[storage] = weakref.ref(storage, lambda _, n=nbytes: self._freed(n))
                    self.live += nbytes
        self.peak = max(self.peak, self.live)
        return out


@dataclass
class StepTrace:
    """One traced training step at batch size `batch`: peak bytes it adds on top of weights and inputs
    (activations, temporaries, gradients), FLOPs of forward + backward and of one inference forward."""

    batch: int
    peak_bytes: int
    train_flops: int
    forward_flops: int


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision string (None: no autocast)."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))


def autocast_factory(precision: str, device_type: str = "cpu") -> Callable[[], Any]:
    """A no-argument factory of the autocast context of a Lightning precision (FakeTensors trace as CPU)."""
    dtype = autocast_dtype(precision)
    return lambda: torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@contextmanager
def fake_safe_conversions() -> Iterator[None]:
    """`nn.Module.to` as a no-op while the networks are built on FakeTensors: `to` swaps parameters, which
    FakeTensors (held by their mode) cannot do, and there is one fake device anyway. peft calls it when it adds
    adapters; their dtype is set by `nets.lora.add_lora` (float32, as training keeps them), not by `to`."""
    to = torch.nn.Module.to
    torch.nn.Module.to = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.nn.Module.to = to


def trace_step(build: Callable[[int], tuple[Callable[[], None], Callable[[], Any], Any]], batch: int,
               precision: str, real: bool = False, flops: bool = True) -> StepTrace:
    """Trace one step. `build(batch)` makes the networks and inputs and returns (train_fn, infer_fn, nets): the
    first runs forward + backward (autocast inside, backward outside it as Lightning runs it), the second one
    inference forward. `real`: run on real CPU tensors instead of FakeTensors; `flops=False`: memory only (FLOPs 0)."""
    mode = FakeTensorMode(allow_non_fake_inputs=True) if not real else None
    with mode or nullcontext(), fake_safe_conversions():
        step, infer_fn, _ = build(batch)
        tracker = LiveBytes()
        with tracker:  # memory and FLOPs in separate passes: FlopCounterMode's module hooks keep tensors alive
            step()
        if not flops:
            return StepTrace(batch, tracker.peak, 0, 0)
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        train_flops = counter.get_total_flops()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad(), autocast_factory(precision)():
            infer_fn()
        return StepTrace(batch, tracker.peak, train_flops, counter.get_total_flops())

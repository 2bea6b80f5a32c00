"""Check `bench plan`'s traced figures against real runs of the same training step: peak memory (CPU: the resident
set's high-water mark, reset through /proc/self/clear_refs; CUDA: max_memory_allocated) and FLOPs.

    MALLOC_MMAP_THRESHOLD_=65536 python -m wantrain.benchmarks.plan_validate '[{"overrides": [...], ...}]'

prints one JSON list: per case the traced (FakeTensor) and the measured peak bytes and FLOPs. glibc returns
large blocks to the OS at once only when they are mmapped: the threshold makes the CPU measurement exact to the
page, so run it in a fresh process with that variable (tests/benchmarks/test_plan.py does).
"""

from __future__ import annotations

import gc
import json
import sys
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from wantrain.benchmarks.plan_build import diffusion_step, is_upsampler, upsampler_step
from wantrain.benchmarks.plan_trace import autocast_factory, trace_step


def _status(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def builder(case: dict[str, Any], device_type: str = "cpu") -> Any:
    """The step builder of a case {overrides, frames, height, width, checkpointing, precision}."""
    from omegaconf import OmegaConf

    from wantrain.benchmarks.plan import model_shape
    from wantrain.benchmarks.step import compose_train_config

    model = compose_train_config(list(case.get("overrides", []))).model
    t, h, w, ckpt = int(case["frames"]), int(case["height"]), int(case["width"]), bool(case["checkpointing"])
    autocast = autocast_factory(case.get("precision", "32-true"), device_type)
    if is_upsampler(model):
        return upsampler_step(model, (t, h, w), ckpt, autocast)
    plan = OmegaConf.create({"latent": {"spatial_factor": 8, "temporal_factor": 4}})
    tokens = (int(model.text_encoder.max_length), int(case.get("image_tokens", 256)))
    return diffusion_step(model, model_shape(model, t, h, w, plan), tokens, ckpt, autocast)


def measure(case: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Traced vs measured peak bytes and training-step FLOPs of one case at batch `case['batch']`."""
    batch, precision = int(case["batch"]), case.get("precision", "32-true")
    traced = trace_step(builder(case), batch, precision)
    torch.manual_seed(0)
    with torch.device(device) if device != "cpu" else nullcontext():
        step, _, nets = builder(case, "cuda" if device != "cpu" else "cpu")(batch)
    step()  # warm-up: kernels' one-time allocations (oneDNN, cuBLAS workspaces) are not the step's
    for net in nets.values():
        net.zero_grad(set_to_none=True)
    gc.collect()
    if device == "cpu":
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current resident set
        base = _status("VmRSS")
        step()
        measured = _status("VmHWM") - base
    else:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        measured = torch.cuda.max_memory_allocated() - base
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return {**case, "device": device, "traced_bytes": traced.peak_bytes, "measured_bytes": measured,
            "traced_flops": traced.train_flops, "measured_flops": counter.get_total_flops()}


def main(argv: list[str]) -> None:
    """Measure the JSON list of cases in argv[0] (on argv[1], default cpu) and print the JSON results."""
    cases = json.loads(argv[0])
    device = argv[1] if len(argv) > 1 else "cpu"
    print(json.dumps([measure(case, device) for case in cases]))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1:])

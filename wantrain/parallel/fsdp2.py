"""FSDP2 over a module: one `fully_shard` unit per block (then the rest), bf16 parameters with fp32 gradient
reduction, optional optimizer-state CPU offload; per-block activation checkpointing and `torch.compile` first
(torchtitan's order: checkpoint, compile, shard). Parameter names stay the module's own (composable APIs)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.distributed._composable import checkpoint
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy, fully_shard


def blocks_of(module: nn.Module, classes: Iterable[type[nn.Module]]) -> list[nn.Module]:
    """The outermost submodules of `module` that are instances of `classes` (a block inside a block is not one)."""
    classes = tuple(classes)
    found: list[nn.Module] = []
    inside: set[str] = set()
    for name, sub in module.named_modules():
        if sub is module or any(name.startswith(f"{outer}.") for outer in inside):
            continue
        if isinstance(sub, classes):
            found.append(sub)
            inside.add(name)
    return found


def checkpoint_blocks(blocks: list[nn.Module]) -> None:
    """Recompute each block's activations in backward (composable `checkpoint`: names and state dicts unchanged)."""
    for block in blocks:
        checkpoint(block)


def compile_blocks(blocks: list[nn.Module], backend: str = "inductor") -> None:
    """`torch.compile` each block in place (one graph per block: the same code compiles once for all of them)."""
    for block in blocks:
        block.compile(backend=backend)


def shard(module: nn.Module, blocks: list[nn.Module], mesh: DeviceMesh, param_dtype: torch.dtype | None,
          reduce_dtype: torch.dtype | None, cpu_offload: bool = False, reshard_after_forward: bool = True,
          gradient_divide_factor: float | None = None) -> None:
    """`fully_shard` every block, then `module` (its embeddings, heads and whatever lies outside the blocks).

    `gradient_divide_factor`: what summed gradients are divided by (default: the mesh size). Ranks of a sequence
    group each hold the part of the gradient their tokens give, so they must be summed, not averaged: the factor is
    then the data-parallel size."""
    settings = {"mesh": mesh, "mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype),
                "offload_policy": CPUOffloadPolicy(pin_memory=mesh.device_type == "cuda") if cpu_offload
                else OffloadPolicy()}
    for block in blocks:
        fully_shard(block, reshard_after_forward=reshard_after_forward, **settings)
    # the root reshards too: a forward without backward (EMA sampling, validation) would leave it gathered
    fully_shard(module, reshard_after_forward=reshard_after_forward, **settings)
    if gradient_divide_factor is not None:
        for sub in module.modules():
            if isinstance(sub, FSDPModule):
                sub.set_gradient_divide_factor(float(gradient_divide_factor))
                if mesh.device_type == "cpu":  # gloo has no PREMUL_SUM: sum, then divide
                    sub.set_force_sum_reduction_for_comms(True)

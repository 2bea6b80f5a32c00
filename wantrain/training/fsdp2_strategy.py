"""`trainer=fsdp2`: Lightning's ModelParallelStrategy with wantrain's plan for the trained network and its EMA:
FSDP2 per block over all ranks, sequence parallelism for the DiT, per-block checkpointing and compile."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import ModelParallelStrategy
from torch.distributed.device_mesh import DeviceMesh

from wantrain.errors import WantrainError
from wantrain.parallel.context_parallel import enable_sequence_parallel
from wantrain.parallel.fsdp2 import blocks_of, checkpoint_blocks, compile_blocks, shard
from wantrain.parallel.mesh import build_mesh, data_parallel_rank, sequence_degree, shard_mesh
from wantrain.training.checkpoint_io import TMP_MARK
from wantrain.training.sharding import module_classes


class FSDP2Strategy(ModelParallelStrategy):
    """ModelParallelStrategy whose `parallelize` the LightningModule's `configure_model` calls on each network it
    names (`parallel_networks()`: the trained one and its EMA, sharded alike so the EMA update stays local).

    `blocks`: module classes that become one FSDP unit each (and are checkpointed / compiled); `sequence_parallel`:
    Ulysses degree, `ring_degree`: ring degree (their product is one sequence group, which reads one batch);
    `param_dtype` / `reduce_dtype`: FSDP2's mixed precision (compute, gradient reduction); `cpu_offload`: parameters,
    gradients and optimizer states live on the CPU (FSDP2 CPUOffloadPolicy; the optimizer steps there);
    `attention_backend`: diffusers' attention backend of the sequence-parallel DiT (ring attention needs one that
    returns the log-sum-exp, e.g. flash)."""

    def __init__(self, blocks: list[str], sequence_parallel: int = 1, ring_degree: int = 1,
                 param_dtype: str | None = "bfloat16", reduce_dtype: str | None = "float32",
                 activation_checkpointing: bool = True, compile: bool = False, compile_backend: str = "inductor",
                 cpu_offload: bool = False, reshard_after_forward: bool = True, attention_backend: str | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("save_distributed_checkpoint", False)
        super().__init__(**kwargs)
        self.sharded_checkpoints = bool(kwargs["save_distributed_checkpoint"])
        # diffusers' Wan returns its unpatchified output as a view; nothing here modifies it in place
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
        self.block_classes = module_classes(blocks)
        self.ulysses, self.ring = int(sequence_parallel), int(ring_degree)
        self.param_dtype = getattr(torch, param_dtype) if param_dtype else None
        self.reduce_dtype = getattr(torch, reduce_dtype) if reduce_dtype else None
        self.activation_checkpointing, self.compile, self.compile_backend = activation_checkpointing, compile, \
            compile_backend
        self.cpu_offload, self.reshard_after_forward = cpu_offload, reshard_after_forward
        self.attention_backend = attention_backend
        self.mesh: DeviceMesh | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: str | os.PathLike,
                        storage_options: Any = None) -> None:
        """Sharded checkpoints (torch distributed checkpoint folders) are written as `NAME.tmp-PID` and renamed when
        every rank has written its shard, as single-file checkpoints are (AtomicCheckpointIO): a kill mid-save never
        leaves a partial `NAME.ckpt` that ckpt_path=auto would pick."""
        if not self.sharded_checkpoints:
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        path = Path(self.broadcast(str(filepath)))
        tmp = path.with_name(f"{path.name}{TMP_MARK}{self.broadcast(os.getpid())}")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        self.barrier()
        if self.global_rank == 0:
            replace_folder(tmp, path)
        self.barrier()
        return None

    def setup_environment(self) -> None:
        """Lightning's process group, then wantrain's (data_parallel, ring, ulysses) mesh."""
        super().setup_environment()
        try:
            self.mesh = build_mesh(self.root_device.type, self.world_size, self.ulysses, self.ring)
        except ValueError as err:
            raise WantrainError(f"trainer.strategy: {err}") from None

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        """Samplers split over the data-parallel ranks only (a sequence group reads one batch)."""
        rank, size = self.data_parallel_rank()
        return {"num_replicas": size, "rank": rank}

    def data_parallel_rank(self) -> tuple[int, int]:
        """(rank, size) along the data-parallel dimension."""
        return data_parallel_rank(self.mesh) if self.mesh is not None else (self.global_rank, self.world_size)

    def parallelize(self, module: pl.LightningModule) -> None:
        """Apply the plan to each of `module.parallel_networks()` once: sequence parallelism, checkpointing, compile,
        FSDP2 (in that order); gradients are summed within a sequence group and averaged over data ranks."""
        networks = getattr(module, "parallel_networks", None)
        if networks is None:
            raise WantrainError(f"trainer=fsdp2 shards the diffusion model's network; {type(module).__name__} "
                                "does not name its networks: use trainer=ddp")
        dp_size = self.data_parallel_rank()[1]
        for net in networks():
            if sequence_degree(self.mesh) > 1:
                try:
                    enable_sequence_parallel(net, self.mesh, self.attention_backend)
                except ValueError as err:
                    raise WantrainError(f"trainer.strategy: {err}") from None
            blocks = blocks_of(net, self.block_classes)
            if not blocks:
                names = sorted(c.__name__ for c in self.block_classes)
                raise WantrainError(f"trainer.strategy.blocks={names}: none in {type(net).__name__}; name the "
                                    "network's block classes (e.g. wantrain.nets.unet.UNetBlock)")
            if self.activation_checkpointing:
                checkpoint_blocks(blocks)
            if self.compile:
                compile_blocks(blocks, self.compile_backend)
            shard(net, blocks, shard_mesh(self.mesh), self.param_dtype, self.reduce_dtype, self.cpu_offload,
                  self.reshard_after_forward, gradient_divide_factor=dp_size)


def replace_folder(new: Path, path: Path) -> None:
    """Put the finished folder `new` at `path`, replacing what is there (a folder or a file)."""
    old = path.with_name(f"{path.name}.old{TMP_MARK}{os.getpid()}")
    if path.exists():
        path.rename(old)
    new.rename(path)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()

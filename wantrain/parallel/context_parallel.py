"""Sequence (context) parallelism of a diffusers DiT: its tokens split over a group of ranks, self-attention by
Ulysses all-to-all over heads (ring attention where heads do not divide), through diffusers' own context-parallel
plan (`_cp_plan`: split at the first block, gathered after `proj_out`)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh


def sequence_parallel_models(module: nn.Module) -> list[nn.Module]:
    """The diffusers models inside `module` that have a context-parallel plan."""
    return [m for m in module.modules() if getattr(m, "_cp_plan", None) and hasattr(m, "enable_parallelism")]


def enable_sequence_parallel(module: nn.Module, mesh: DeviceMesh, attention_backend: str | None = None) -> int:
    """Turn on diffusers' context parallelism over `mesh`'s ring x ulysses dimensions in every DiT inside `module`
    (`attention_backend`: diffusers' name, e.g. flash; None keeps the active one, torch SDPA by default); returns how
    many. Raises ValueError when there is none, the heads do not divide by the Ulysses degree, or ring attention is
    asked of a backend that does not return the log-sum-exp it merges blocks with (torch SDPA)."""
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    models = sequence_parallel_models(module)
    if not models:
        raise ValueError(f"sequence parallelism needs a DiT backbone with a context-parallel plan (model.net: the "
                         f"Wan transformer); {type(module).__name__} has none: set sequence_parallel=1")
    group = mesh["ring", "ulysses"]
    ring, ulysses = mesh["ring"].size(), mesh["ulysses"].size()
    if attention_backend:
        for model in models:
            model.set_attention_backend(attention_backend)
    backend = attention_backend or _AttentionBackendRegistry.get_active_backend()[0].value
    if ring > 1 and backend == "native":
        raise ValueError("ring attention merges blocks by their log-sum-exp, which torch SDPA (diffusers' native "
                         "backend) does not return; use Ulysses (sequence_parallel) or an attention_backend such as "
                         "flash")
    for model in models:
        heads = int(model.config.num_attention_heads)
        if heads % ulysses:
            raise ValueError(f"Ulysses sequence parallelism over {ulysses} ranks splits the {heads} attention heads; "
                             f"use a degree that divides {heads}, or ring attention (trainer.strategy.ring_degree)")
        config = ContextParallelConfig(ulysses_degree=ulysses, ring_degree=ring, mesh=group)

        def resolve(cp: ContextParallelConfig, model: nn.Module = model) -> ParallelConfig:
            # diffusers derives the device as rank % accelerator count, which fails on CPU-only hosts (gloo)
            parallel = ParallelConfig(context_parallel_config=cp)
            parallel.setup(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                           torch.device(mesh.device_type), mesh=group)
            model._parallel_config = parallel
            return parallel

        model._resolve_parallel_config = resolve
        try:
            model.enable_parallelism(config=config)
        finally:
            del model._resolve_parallel_config
        model.register_forward_pre_hook(_check_tokens(ring * ulysses), with_kwargs=True)
    return len(models)


def _check_tokens(degree: int):  # noqa: ANN202
    """A pre-hook: one clear error when the clip's tokens do not split evenly over the sequence group."""
    def check(model: nn.Module, args: tuple, kwargs: dict) -> None:
        x = kwargs.get("hidden_states", args[0] if args else None)
        patch = model.config.patch_size
        tokens = math.prod(s // p for s, p in zip(x.shape[2:], patch))
        if tokens % degree:
            grid = "x".join(str(s // p) for s, p in zip(x.shape[2:], patch))
            raise ValueError(f"sequence parallelism over {degree} ranks: the clip's {tokens} tokens ({grid} latent "
                             f"patches) do not split evenly; choose data.num_frames / data.resolution whose token "
                             f"count divides by {degree}, or another degree")
    return check

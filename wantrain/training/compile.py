"""CompileModules: `torch.compile` the trained networks (UNet, upsampler generator) when a run asks for it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.strategies import FSDPStrategy

from wantrain.errors import WantrainError


class CompileModules(pl.Callback):
    """At setup, compiles the named submodules of the LightningModule in place (`nn.Module.compile`), so their
    `state_dict` keys stay as they are and checkpoints load into uncompiled modules (sampling, export).

    `modules` are attribute names; the ones a module does not have (or has as None) are ignored (`denoiser` - the
    UNet or the DiT - for the diffusion stage, `generator` for the upsampler). The EMA copies are not compiled: they
    only run in validation.
    """

    def __init__(self, enabled: bool = False, modules: Sequence[str] = ("denoiser", "generator"),
                 mode: str | None = None, backend: str = "inductor", dynamic: bool | None = None,
                 fullgraph: bool = False) -> None:
        self.enabled, self.modules = bool(enabled), tuple(modules)
        self.options: dict[str, Any] = {"mode": mode, "backend": backend, "dynamic": dynamic, "fullgraph": fullgraph}
        self.compiled: list[str] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self.enabled or stage != "fit" or self.compiled:
            return
        if isinstance(trainer.strategy, FSDPStrategy):
            raise WantrainError("callbacks.compile.enabled=true is not supported with trainer=fsdp "
                                "(compiled modules under FSDP1 wrapping are untested here); use one of them")
        found = [name for name in self.modules if getattr(pl_module, name, None) is not None]
        if not found:
            raise WantrainError(f"callbacks.compile.modules={list(self.modules)}: {type(pl_module).__name__} "
                                "has none of them")
        for name in found:
            getattr(pl_module, name).compile(**self.options)
        self.compiled = found
